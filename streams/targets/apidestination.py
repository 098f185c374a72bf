"""The `apidestination` target: a rule's target naming an API destination by its ARN (PutTargets
with `Arn: arn:aws:events:<region>:<account>:api-destination/<name>/<uuid>`).

Each event is one request to the destination's InvocationEndpoint, `*` in its path replaced by the
target's PathParameterValues in order, with the connection's authorization (an API key header,
basic auth, or an OAuth client-credentials token, fetched once and cached until shortly before it
expires or until a 401), the connection's InvocationHttpParameters and the target's
HttpParameters. A parameter value starting with `$.` is that path of the event. The destination's
InvocationRateLimitPerSecond holds for all of the worker's targets of that destination.

Retries are API destinations': 429 and 5xx (and timeouts, connection errors) are retried by the
target's RetryPolicy, no sooner than a Retry-After says; other statuses are dead-lettered at
once. The connection and destination are looked up for every request, so UpdateConnection and
UpdateApiDestination apply without rebuilding the target. Lanes per partition, the session and
the request itself are the http target's (streams/targets/http.py, HttpLanes).
"""
from __future__ import annotations

import base64
import logging
import re
import time
from urllib.parse import quote

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator
from yarl import URL

from processors.paths import get_path, split_path
from streams.targets.base import Item
from streams.targets.connections import ApiDestinations, Connection, SecretError
from streams.targets.http import AddressPolicy, HttpLanes, retry_after, where
from streams.targets.retry import DeliveryError

log = logging.getLogger(__name__)

ARN = re.compile(r"^arn:aws[a-z-]*:events:[a-z0-9-]*:\d{12}:api-destination/([\.\-_A-Za-z0-9]+)/[\-A-Za-z0-9]+$")
PREPARED_FOR_S = 60.0  # how long a call's prepared URL, headers and opened secrets are reused


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    arn: str = Field(description="apidestination: the API destination's ARN (CreateApiDestination).")
    path_parameter_values: list[str] = Field(default_factory=list, description="apidestination: values for the "
                                             "endpoint's `*`s, in order (`$.detail.id`: from the event).")
    header_parameters: dict[str, str] = Field(default_factory=dict, description="apidestination: request headers.")
    query_string_parameters: dict[str, str] = Field(default_factory=dict,
                                                    description="apidestination: query string parameters.")
    timeout_s: float = Field(5.0, gt=0, description="apidestination: per-request timeout (AWS's is 5 s).")

    @field_validator("arn")
    @classmethod
    def _arn(cls, value: str) -> str:
        if not ARN.match(value):
            raise ValueError("expected an API destination ARN, arn:aws:events:<region>:<account>:api-destination/"
                             "<name>/<uuid>")
        return value

    @property
    def destination(self) -> str:
        match = ARN.match(self.arn)
        assert match is not None, "validated"
        return match.group(1)


def _value(value: str, event: dict | None) -> str:
    """A parameter's value: static, or the event's value at a `$.` path."""
    if not value.startswith("$.") or event is None:
        return value
    found = get_path(event, split_path(value[2:]))
    return found if isinstance(found, str) else orjson.dumps(found).decode()


def _pairs(params: list[dict] | None) -> dict[str, dict]:
    return {p["Key"]: p for p in params or [] if isinstance(p, dict) and "Key" in p}


class ApiDestinationTarget(HttpLanes):
    kind = "apidestination"

    def __init__(self, target_id: str, settings: Settings, max_in_flight: int, dead_letters,
                 registry: ApiDestinations, policy: AddressPolicy):
        super().__init__(target_id, max_in_flight, dead_letters, policy, settings.timeout_s)
        self.settings = settings
        self._name = settings.destination
        self.registry = registry
        self._dynamic = any(v.startswith("$.") for v in (*settings.path_parameter_values,
                                                          *settings.header_parameters.values(),
                                                          *settings.query_string_parameters.values()))
        self._prepared: tuple | None = None  # (destination, connection, when, url, headers, body params, secrets)

    # -- one request --
    async def _send(self, items: list[Item]) -> None:
        delivery = items[0][0]
        name = self._name
        destination = self.registry.destinations.get(name)
        if destination is None:
            raise DeliveryError("ApiDestinationNotFound", f"API destination {name} does not exist", False)
        connection = self.registry.connections.get(destination.connection)
        if connection is None:
            raise DeliveryError("ConnectionNotFound", f"connection {destination.connection} does not exist", False)
        if connection.state != "AUTHORIZED":
            raise DeliveryError("ConnectionNotAuthorized", f"connection {connection.name} is {connection.state}", False)
        secrets: list[str] = []  # values to keep out of every error message
        try:
            url, headers, body = self._request(destination, connection, delivery, secrets)
            limiter = self.registry.limiter(destination)
            await limiter.acquire()
            token = None
            if connection.type == "OAUTH_CLIENT_CREDENTIALS":
                token = await self._token(connection, secrets)
                headers["Authorization"] = f"Bearer {token}"
            status, text, wait = await self._call(destination.method, url, headers, body)
            if status == 401 and token is not None:  # the token may have been revoked early: one fresh one
                self.registry.drop_token(connection.name, token)
                headers["Authorization"] = f"Bearer {await self._token(connection, secrets)}"
                await limiter.acquire()  # a second request: within the rate too
                status, text, wait = await self._call(destination.method, url, headers, body)
        except SecretError as exc:
            raise DeliveryError("ConnectionSecretUnavailable", str(exc), False) from None
        if status < 300:
            return
        raise DeliveryError(f"HttpStatus{status}", _scrub(f"{where(destination.method, url)} returned {status}: {text}",
                                                          secrets),
                            retryable=status == 429 or status >= 500, retry_after=wait)

    def _request(self, destination, connection: Connection, delivery, secrets: list[str]):
        """URL, headers and body of one call. What does not depend on the event is prepared once
        per destination and connection (and again after PREPARED_FOR_S, so a rotated ${VAR} file
        is read again): opening secrets and building the URL on every call would cost more than
        the call's own Python work."""
        prepared = self._prepared
        now = time.monotonic()
        if (prepared is None or prepared[0] is not destination or prepared[1] is not connection
                or now - prepared[2] > PREPARED_FOR_S or self._dynamic):
            event = orjson.loads(delivery.record.value) if self._dynamic and delivery.record.value else None
            prepared = (destination, connection, now, *self._prepare(destination, connection, event))
            self._prepared = None if self._dynamic else prepared
        url, headers, body_params, opened = prepared[3:]
        secrets += opened
        payload = delivery.payload
        if body_params:  # added to a JSON object body, as AWS does
            doc = orjson.loads(payload)
            if isinstance(doc, dict):
                payload = orjson.dumps({**doc, **body_params})
        return url, dict(headers), payload

    def _prepare(self, destination, connection: Connection, event) -> tuple[str, dict, dict, list[str]]:
        """The destination's endpoint, the connection's invocation parameters and authorization
        (but an OAuth token), then the target's HttpParameters (which win, as on AWS)."""
        secrets: list[str] = []
        parts = destination.endpoint.split("*")
        values = [quote(_value(v, event), safe="") for v in self.settings.path_parameter_values]
        if len(values) < len(parts) - 1:
            raise DeliveryError("PathParameters", f"the endpoint has {len(parts) - 1} path parameters (*), the target "
                                f"gives {len(values)} PathParameterValues", False)
        url = parts[0] + "".join(v + p for v, p in zip(values, parts[1:], strict=False))
        headers = {"Content-Type": "application/json; charset=utf-8"}
        query: dict[str, str] = {}
        invocation = connection.auth.get("InvocationHttpParameters") or {}
        for target, params in ((headers, invocation.get("HeaderParameters")),
                               (query, invocation.get("QueryStringParameters"))):
            for key, p in _pairs(params).items():
                target[key] = self._param(connection, p, secrets)
        body_params = {k: self._param(connection, p, secrets) for k, p in
                       _pairs(invocation.get("BodyParameters")).items()}
        headers.update({k: _value(v, event) for k, v in self.settings.header_parameters.items()})
        query.update({k: _value(v, event) for k, v in self.settings.query_string_parameters.items()})
        if query:
            url = str(URL(url).update_query(query))
        if connection.type == "API_KEY":
            p = connection.auth["ApiKeyAuthParameters"]
            value = self.registry.secret(connection, p["ApiKeyValue"])
            secrets.append(value)
            headers[p["ApiKeyName"]] = value
        elif connection.type == "BASIC":
            p = connection.auth["BasicAuthParameters"]
            password = self.registry.secret(connection, p["Password"])
            secrets.append(password)
            headers["Authorization"] = "Basic " + base64.b64encode(f"{p['Username']}:{password}".encode()).decode()
        return url, headers, body_params, secrets

    def _param(self, connection: Connection, p: dict, secrets: list[str]) -> str:
        if p.get("IsValueSecret") and isinstance(p.get("Value"), dict):
            value = self.registry.secret(connection, p["Value"])
            secrets.append(value)
            return value
        return str(p.get("Value", ""))

    async def _token(self, connection: Connection, secrets: list[str]) -> str:
        """The connection's OAuth token: cached, or fetched once for every request waiting for it."""
        cached = self.registry.cached_token(connection.name)
        if cached is not None:
            secrets.append(cached.value)
            return cached.value
        async with self.registry.token_lock(connection.name):  # one fetch for all waiting requests
            cached = self.registry.cached_token(connection.name)
            if cached is not None:
                secrets.append(cached.value)
                return cached.value
            value, expires_in = await self._fetch_token(connection, secrets)
            self.registry.store_token(connection.name, value, expires_in)
            secrets.append(value)
            return value

    async def _fetch_token(self, connection: Connection, secrets: list[str]) -> tuple[str, float | None]:
        """RFC 6749 client credentials: the client id and secret as basic auth, grant_type in a
        form body with the connection's OAuthHttpParameters."""
        p = connection.auth["OAuthParameters"]
        client = p["ClientParameters"]
        secret = self.registry.secret(connection, client["ClientSecret"])
        secrets.append(secret)
        extra = p.get("OAuthHttpParameters") or {}
        form = {"grant_type": "client_credentials"}
        headers = {"Authorization": "Basic " + base64.b64encode(f"{client['ClientID']}:{secret}".encode()).decode()}
        query: dict[str, str] = {}
        for target, params in ((form, extra.get("BodyParameters")), (headers, extra.get("HeaderParameters")),
                               (query, extra.get("QueryStringParameters"))):
            for key, param in _pairs(params).items():
                target[key] = self._param(connection, param, secrets)
        url = URL(p["AuthorizationEndpoint"]).update_query(query) if query else URL(p["AuthorizationEndpoint"])
        session = self._session
        assert session is not None, "start() opens the session"
        where = f"connection {connection.name}: token endpoint {URL(p['AuthorizationEndpoint']).with_query(None)}"
        try:
            async with session.request(p.get("HttpMethod", "POST").upper(), url, data=form, headers=headers) as resp:
                if resp.status >= 300:
                    retry = resp.status == 429 or resp.status >= 500
                    raise DeliveryError("OAuthTokenFailed", f"{where} returned {resp.status}", retry,
                                        retry_after=retry_after(resp.headers.get("Retry-After")))
                doc = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise DeliveryError("OAuthTokenFailed", f"{where}: {type(exc).__name__}", True) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("access_token"), str):
            raise DeliveryError("OAuthTokenFailed", f"{where} answered without an access_token", True)
        expires_in = doc.get("expires_in")
        return doc["access_token"], float(expires_in) if isinstance(expires_in, (int, float)) else None

    async def _call(self, method: str, url: str, headers: dict, body: bytes):
        return await self.request(method, url, headers, body if method not in ("GET", "HEAD") else None)


def _scrub(text: str, secrets: list[str]) -> str:
    """An endpoint may echo what it got: no secret goes on to a dead letter or a log line."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def build(context, name: str, settings: Settings) -> ApiDestinationTarget:
    if context.api_destinations is None:
        raise ValueError("an apidestination target needs routing.control_topic (API destinations are made with "
                         "CreateApiDestination and kept there)")
    return ApiDestinationTarget(name, settings, context.max_in_flight, context.dead_letters,
                                context.api_destinations, AddressPolicy(context.allow_networks))
