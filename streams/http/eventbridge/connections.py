"""Connections and API destinations in the EventBridge API: CreateConnection, DescribeConnection,
UpdateConnection, DeauthorizeConnection, DeleteConnection, ListConnections, CreateApiDestination,
DescribeApiDestination, UpdateApiDestination, DeleteApiDestination, ListApiDestinations, and the
mapping of an API destination ARN in PutTargets to an `apidestination` target.

Both are stored on the control topic (keys connection/<name>, api-destination/<name>), where every
worker reads them (streams/targets/connections.py). A secret is stored sealed: encrypted under
routing.secrets_key when given by value, or as the name of the environment variable when given as
`${VAR}`; Describe and List never return one. Errors are AWS's, word for word where LocalStack's
AWS-validated recordings have them.
"""
from __future__ import annotations

import re
import time
import uuid
from typing import Any

from streams.http.eventbridge.api import ApiError, _validation
from streams.targets.apidestination import ARN as DESTINATION_ARN
from streams.targets.connections import (
    CONNECTION_PREFIX,
    DESTINATION_PREFIX,
    ApiDestinations,
    Connection,
    Destination,
    SecretError,
    map_secrets,
)
from streams.targets.http import AddressPolicy

NAME = r"[\.\-_A-Za-z0-9]+"
AUTH_TYPES = ("BASIC", "OAUTH_CLIENT_CREDENTIALS", "API_KEY")  # AWS's order, as its message lists them
METHODS = ("HEAD", "POST", "PATCH", "DELETE", "PUT", "GET", "OPTIONS")
AUTH_MEMBER = {"API_KEY": "ApiKeyAuthParameters", "BASIC": "BasicAuthParameters",
               "OAUTH_CLIENT_CREDENTIALS": "OAuthParameters"}
REQUIRED = {"API_KEY": ("ApiKeyName", "ApiKeyValue"), "BASIC": ("Username", "Password"),
            "OAUTH_CLIENT_CREDENTIALS": ("AuthorizationEndpoint", "ClientParameters", "HttpMethod")}
CONNECTION_ARN = r"^arn:aws([a-z]|\-)*:events:([a-z]|\d|\-)*:([0-9]{12})?:connection\/[\.\-_A-Za-z0-9]+\/[\-A-Za-z0-9]+$"
ENDPOINT = r"^((%[0-9A-Fa-f]{2}|[-()_.!~*';/?:@&=+$,A-Za-z0-9])+)([).!';/?:,])?$"
DEFAULT_RATE = 300


def _constraint(value: Any, member: str, rule: str) -> str:
    return f"Value '{value}' at '{member}' failed to satisfy constraint: Member must {rule}"


def _raise_all(errors: list[str]) -> None:
    if errors:
        n = len(errors)
        raise _validation(f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(errors))


def _name_errors(name: Any) -> list[str]:
    if not isinstance(name, str) or not name:
        raise _validation("Parameter Name is required.")
    errors = []
    if not re.fullmatch(NAME, name):
        errors.append(_constraint(name, "name", "satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+"))
    if len(name) > 64:
        errors.append(_constraint(name, "name", "have length less than or equal to 64"))
    return errors


def _unsupported(params: dict) -> None:
    for name in ("InvocationConnectivityParameters", "KmsKeyIdentifier"):
        if params.get(name) is not None:
            raise _validation(f"{name} is not supported by eventweir's connections.")


def _connection_not_found(name: Any) -> ApiError:
    return ApiError("ResourceNotFoundException", f"Failed to describe the connection(s). Connection '{name}' does not exist.")


def _destination_not_found(name: Any) -> ApiError:
    return ApiError("ResourceNotFoundException",
                    f"Failed to describe the api-destination(s). An api-destination '{name}' does not exist.")


def _public(auth: dict) -> dict:
    """AuthParameters as Describe shows them: no secret, nor a sign of how it is stored."""
    def drop(value, path):
        return None

    def strip(node):
        if isinstance(node, list):
            return [strip(n) for n in node]
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if v is not None}
        return node

    return strip(map_secrets(auth, drop))


def _merge(old: dict, new: dict) -> dict:
    """UpdateConnection's AuthParameters: members given replace those stored, the rest stay."""
    out = dict(old)
    for key, value in new.items():
        out[key] = _merge(old[key], value) if isinstance(value, dict) and isinstance(old.get(key), dict) else value
    return out


class ConnectionsApi:
    """The operations, attached to EventBridgeApi by `register` (methods use its config and store)."""

    # -- helpers --
    def _registry(self: Any) -> ApiDestinations:
        control = self.worker.control
        return control.store.api_destinations if control is not None else ApiDestinations(None)

    def _arn_with_id(self: Any, kind: str, name: str, uid: str) -> str:
        return f"arn:aws:events:{self.config.bus.region}:{self.config.bus.account}:{kind}/{name}/{uid}"

    def _connection(self: Any, name: Any) -> Connection:
        if not isinstance(name, str) or not name:
            raise _validation("Parameter Name is required.")
        found = self._registry().connections.get(name)
        if found is None:
            raise _connection_not_found(name)
        return found

    def _destination(self: Any, name: Any) -> Destination:
        if not isinstance(name, str) or not name:
            raise _validation("Parameter Name is required.")
        found = self._registry().destinations.get(name)
        if found is None:
            raise _destination_not_found(name)
        return found

    def _check_url(self: Any, url: Any, member: str) -> str:
        if not isinstance(url, str) or not re.fullmatch(ENDPOINT, url):
            _raise_all([_constraint(url, member, f"satisfy regular expression pattern: {ENDPOINT}")])
        if not url.startswith(("http://", "https://")):
            raise _validation(f"{member} {url!r}: expected an http:// or https:// URL.")
        refusal = AddressPolicy(tuple(self.config.routing.http_allow_networks)).check_url(url.replace("*", "x"))
        if refusal is not None:
            raise _validation(f"{member}: {refusal}")
        return url

    def _auth(self: Any, name: str, auth_type: str, auth: Any, old: dict | None = None) -> dict:
        """AuthParameters to store: checked, merged into `old` (an update), every new secret sealed."""
        if not isinstance(auth, dict):
            raise _validation("Parameter AuthParameters is required.")
        sealer = self._registry().sealer

        def seal(value, path):
            if isinstance(value, dict):  # already sealed (kept from the stored connection)
                return value
            if not isinstance(value, str) or not value:
                raise _validation(f"AuthParameters.{path} is required.")
            try:
                sealed = sealer.seal(value, CONNECTION_PREFIX + name)
                sealer.open(sealed, CONNECTION_PREFIX + name)  # a reference must resolve on this worker now
            except SecretError as exc:
                raise _validation(f"AuthParameters.{path}: {str(exc).split(': ', 1)[-1]}") from None
            return sealed

        merged = map_secrets(_merge(old or {}, auth), seal)
        member = AUTH_MEMBER[auth_type]
        params = merged.get(member)
        if not isinstance(params, dict):
            raise _validation(f"The {auth_type} authorization type requires AuthParameters.{member}.")
        missing = [k for k in REQUIRED[auth_type] if k not in params]
        if auth_type == "OAUTH_CLIENT_CREDENTIALS" and isinstance(params.get("ClientParameters"), dict):
            missing += [f"ClientParameters.{k}" for k in ("ClientID", "ClientSecret") if k not in params["ClientParameters"]]
        if missing:
            raise _validation(f"AuthParameters.{member} requires {', '.join(missing)}.")
        if auth_type == "OAUTH_CLIENT_CREDENTIALS":
            self._check_url(params["AuthorizationEndpoint"], "authorizationEndpoint")
            method = str(params["HttpMethod"]).upper()
            if method not in ("GET", "POST", "PUT"):
                _raise_all([_constraint(params["HttpMethod"], "httpMethod", "satisfy enum value set: [GET, POST, PUT]")])
            params["HttpMethod"] = method
        # only the chosen type's parameters are kept (an update that changes the type drops the old ones)
        return {k: v for k, v in merged.items() if k in (member, "InvocationHttpParameters")}

    def _connection_state(self: Any, c: Connection, state: str | None = None) -> dict:
        out = {"ConnectionArn": self._arn_with_id("connection", c.name, c.uuid), "ConnectionState": state or c.state,
               "CreationTime": c.created, "LastModifiedTime": c.modified}
        if c.authorized is not None:
            out["LastAuthorizedTime"] = c.authorized
        return out

    def _describe_connection(self: Any, c: Connection, full: bool) -> dict:
        out = {"Name": c.name, **self._connection_state(c), "AuthorizationType": c.type}
        if c.description:
            out["Description"] = c.description
        if full:
            out["AuthParameters"] = _public(c.auth)
        return out

    async def _put_connection(self: Any, c: Connection) -> None:
        await self._store().put_object(CONNECTION_PREFIX + c.name, c.to_json())

    # -- connections --
    async def op_CreateConnection(self: Any, params: dict) -> dict:
        name: str = params.get("Name")  # type: ignore[assignment]  # checked next
        auth_type: str = params.get("AuthorizationType")  # type: ignore[assignment]
        errors = _name_errors(name)
        if auth_type not in AUTH_TYPES:
            errors.append(_constraint(auth_type, "authorizationType", f"satisfy enum value set: [{', '.join(AUTH_TYPES)}]"))
        _raise_all(errors)
        _unsupported(params)
        self._store()
        if name in self._registry().connections:
            raise ApiError("ResourceAlreadyExistsException", f"Connection {name} already exists.")
        now = time.time()
        auth = self._auth(name, auth_type, params.get("AuthParameters"))
        c = Connection(name, str(uuid.uuid4()), auth_type, "AUTHORIZED", auth, params.get("Description") or "", now, now, now)
        await self._put_connection(c)
        out = self._connection_state(c)
        del out["LastAuthorizedTime"]  # as AWS answers CreateConnection
        return out

    async def op_DescribeConnection(self: Any, params: dict) -> dict:
        return self._describe_connection(self._connection(params.get("Name")), full=True)

    async def op_ListConnections(self: Any, params: dict) -> dict:
        prefix, state = params.get("NamePrefix") or "", params.get("ConnectionState")
        found = [c for n, c in sorted(self._registry().connections.items())
                 if n.startswith(prefix) and (state is None or c.state == state)]
        page, token = self._page(found, params)
        out: dict[str, Any] = {"Connections": [self._describe_connection(c, full=False) for c in page]}
        if token:
            out["NextToken"] = token
        return out

    async def op_UpdateConnection(self: Any, params: dict) -> dict:
        c = self._connection(params.get("Name"))
        _unsupported(params)
        auth_type = params.get("AuthorizationType") or c.type
        if auth_type not in AUTH_TYPES:
            _raise_all([_constraint(auth_type, "authorizationType", f"satisfy enum value set: [{', '.join(AUTH_TYPES)}]")])
        auth, state, authorized = c.auth, c.state, c.authorized
        if params.get("AuthParameters") is not None or auth_type != c.type:
            # new credentials authorize the connection again, a deauthorized one included
            auth = self._auth(c.name, auth_type, params.get("AuthParameters") or {}, c.auth if auth_type == c.type else {})
            state, authorized = "AUTHORIZED", time.time()
        description = params["Description"] if params.get("Description") is not None else c.description
        c = Connection(c.name, c.uuid, auth_type, state, auth, description, c.created, time.time(), authorized)
        await self._put_connection(c)
        return self._connection_state(c)

    async def op_DeauthorizeConnection(self: Any, params: dict) -> dict:
        c = self._connection(params.get("Name"))
        member = AUTH_MEMBER[c.type]
        # the secrets go, the rest stays for Describe; deliveries fail until UpdateConnection authorizes it
        kept = {k: v for k, v in map_secrets(c.auth, lambda value, path: None).items()
                if k in (member, "InvocationHttpParameters")}
        c = Connection(c.name, c.uuid, c.type, "DEAUTHORIZED", _public(kept), c.description, c.created, time.time(),
                       c.authorized)
        await self._put_connection(c)
        return self._connection_state(c, "DEAUTHORIZING")

    async def op_DeleteConnection(self: Any, params: dict) -> dict:
        c = self._connection(params.get("Name"))
        await self._store().put_object(CONNECTION_PREFIX + c.name, None)
        return self._connection_state(c, "DELETING")

    # -- API destinations --
    def _destination_fields(self: Any, params: dict, old: Destination | None) -> dict:
        errors = [] if old is not None else _name_errors(params.get("Name"))
        connection_arn = params.get("ConnectionArn")
        if connection_arn is not None and not re.fullmatch(CONNECTION_ARN, connection_arn):
            errors.append(_constraint(connection_arn, "connectionArn", f"satisfy regular expression pattern: {CONNECTION_ARN}"))
        method = params.get("HttpMethod")
        if method is not None and method not in METHODS:
            errors.append(_constraint(method, "httpMethod", f"satisfy enum value set: [{', '.join(METHODS)}]"))
        endpoint = params.get("InvocationEndpoint")
        if endpoint is not None and not re.fullmatch(ENDPOINT, endpoint):
            errors.append(_constraint(endpoint, "invocationEndpoint", f"satisfy regular expression pattern: {ENDPOINT}"))
        _raise_all(errors)
        if old is None:
            for member in ("ConnectionArn", "InvocationEndpoint", "HttpMethod"):
                if params.get(member) is None:
                    raise _validation(f"Parameter {member} is required.")
        fields: dict[str, Any] = {}
        if connection_arn is not None:
            connection = connection_arn.rsplit("/", 2)[1]
            found = self._registry().connections.get(connection)
            if found is None or self._arn_with_id("connection", connection, found.uuid) != connection_arn:
                raise _connection_not_found(connection)
            fields.update(connection=connection, connection_arn=connection_arn)
        if endpoint is not None:
            fields["endpoint"] = self._check_url(endpoint, "invocationEndpoint")
        if method is not None:
            fields["method"] = method
        if params.get("InvocationRateLimitPerSecond") is not None:
            fields["rate"] = params["InvocationRateLimitPerSecond"]
        if params.get("Description") is not None:
            fields["description"] = params["Description"]
        return fields

    def _destination_state(self: Any, d: Destination) -> dict:
        return {"ApiDestinationArn": self._arn_with_id("api-destination", d.name, d.uuid), "ApiDestinationState": d.state,
                "CreationTime": d.created, "LastModifiedTime": d.modified}

    def _describe_destination(self: Any, d: Destination, full: bool) -> dict:
        out = {"Name": d.name, **self._destination_state(d), "ConnectionArn": d.connection_arn,
               "InvocationEndpoint": d.endpoint, "HttpMethod": d.method, "InvocationRateLimitPerSecond": d.rate}
        if full and d.description:
            out["Description"] = d.description
        return out

    async def op_CreateApiDestination(self: Any, params: dict) -> dict:
        name = params.get("Name")
        self._store()
        if isinstance(name, str) and name in self._registry().destinations:
            raise ApiError("ResourceAlreadyExistsException", f"An api-destination '{name}' already exists.")
        fields = self._destination_fields(params, None)
        now = time.time()
        d = Destination(**{"name": name, "uuid": str(uuid.uuid4()), "rate": DEFAULT_RATE, "created": now,
                           "modified": now, **fields})
        await self._store().put_object(DESTINATION_PREFIX + d.name, d.to_json())
        return self._destination_state(d)

    async def op_DescribeApiDestination(self: Any, params: dict) -> dict:
        return self._describe_destination(self._destination(params.get("Name")), full=True)

    async def op_UpdateApiDestination(self: Any, params: dict) -> dict:
        old = self._destination(params.get("Name"))
        fields = self._destination_fields(params, old)
        d = Destination(**{**old.__dict__, **fields, "modified": time.time()})
        await self._store().put_object(DESTINATION_PREFIX + d.name, d.to_json())
        return self._destination_state(d)

    async def op_DeleteApiDestination(self: Any, params: dict) -> dict:
        d = self._destination(params.get("Name"))
        await self._store().put_object(DESTINATION_PREFIX + d.name, None)
        return {}

    async def op_ListApiDestinations(self: Any, params: dict) -> dict:
        prefix, connection_arn = params.get("NamePrefix") or "", params.get("ConnectionArn")
        found = [d for n, d in sorted(self._registry().destinations.items())
                 if n.startswith(prefix) and (connection_arn is None or d.connection_arn == connection_arn)]
        page, token = self._page(found, params)
        out: dict[str, Any] = {"ApiDestinations": [self._describe_destination(d, full=False) for d in page]}
        if token:
            out["NextToken"] = token
        return out

    @staticmethod
    def _page(items: list, params: dict) -> tuple[list, str | None]:
        token = params.get("NextToken") or "0"
        if not token.isdigit():
            raise _validation("The NextToken is not valid.")
        start, limit = int(token), params.get("Limit") or 100
        return items[start:start + limit], str(start + limit) if start + limit < len(items) else None


def check_target(api: Any, target) -> None:
    """PutTargets: the destination an apidestination target names exists (by name and id)."""
    arn = target.option("arn")
    match = DESTINATION_ARN.match(arn)
    found = api._registry().destinations.get(match.group(1)) if match else None
    if found is None or api._arn_with_id("api-destination", found.name, found.uuid) != arn:
        raise _destination_not_found(match.group(1) if match else arn)


def is_api_destination_arn(arn: str) -> bool:
    return arn.startswith("arn:aws") and ":api-destination/" in arn


def target_settings(spec: dict) -> dict:
    """An apidestination target's own keys from PutTargets' Arn and HttpParameters."""
    http = spec.get("HttpParameters") or {}
    data: dict[str, Any] = {"type": "apidestination", "arn": spec["Arn"]}
    for member, key in (("PathParameterValues", "path_parameter_values"), ("HeaderParameters", "header_parameters"),
                        ("QueryStringParameters", "query_string_parameters")):
        if http.get(member):
            data[key] = http[member]
    return data


def target_to_aws(t) -> dict:
    out: dict[str, Any] = {"Id": t.id, "Arn": t.option("arn")}
    http = {member: t.option(key) for member, key in (
        ("PathParameterValues", "path_parameter_values"), ("HeaderParameters", "header_parameters"),
        ("QueryStringParameters", "query_string_parameters")) if t.option(key)}
    if http:
        out["HttpParameters"] = http
    return out
