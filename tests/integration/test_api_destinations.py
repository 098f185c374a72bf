"""Connections and API destinations, driven by boto3 against a running worker, delivering to a
local aiohttp OAuth token server and API that check what they receive."""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import time

import pytest
from aiohttp import web

from streams.http.app import serve
from streams.runtime.reload import ControlTopic
from tests.integration.kafka_helpers import create_topics, read_all, unique, wait_for
from tests.integration.test_eventbridge_api import KEY, SECRET, call, client, entry, error_of
from tests.integration.test_rules_targets import config_for, start_worker, stop_worker

pytestmark = pytest.mark.broker
CLIENT_ID, CLIENT_SECRET = "shop-client", "cs-7f3a9c1e5d2b8a4f"
SECRET_HEADER = "hv-0b9e8d7c6a5f4e3d"
API_KEY_VALUE = "ak-5e4d3c2b1a0f9e8d"
PASSWORD = "pw-1a2b3c4d5e6f7a8b"
SECRETS = (CLIENT_SECRET, SECRET_HEADER, API_KEY_VALUE, PASSWORD)
SECRETS_KEY = base64.b64encode(b"k" * 32).decode()


class Api:
    """POST /oauth/token issues tokens (checking the client credentials and extra parameters);
    /api/... records every call, answers what `script` says first (a status, or (status,
    Retry-After)), and 401 to a token in `revoked`."""

    def __init__(self, expires_in: float = 3600):
        self.expires_in = expires_in
        self.token_fetches = 0
        self.token_errors: list[str] = []
        self.revoked: set[str] = set()
        self.calls: list[dict] = []
        self.script: list = []
        self.base = ""

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        checks = {"client credentials": request.headers.get("Authorization") == expected,
                  "grant_type": form.get("grant_type") == "client_credentials",
                  "body parameter": form.get("audience") == "orders-api",
                  "header parameter": request.headers.get("x-tenant") == "t1",
                  "query parameter": request.query.get("realm") == "shop", "method": request.method == "POST"}
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            self.token_errors += failed
            return web.json_response({"error": "invalid_client"}, status=401)
        self.token_fetches += 1
        return web.json_response({"access_token": f"tok-{self.token_fetches}", "token_type": "Bearer",
                                  "expires_in": self.expires_in})

    async def api(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        self.calls.append({"at": time.monotonic(), "method": request.method, "path": request.raw_path.split("?")[0], "auth": auth,
                           "headers": dict(request.headers), "query": dict(request.query),
                           "body": json.loads(await request.read() or b"null")})
        if auth.removeprefix("Bearer ") in self.revoked:
            return web.Response(status=401, text="token revoked")
        if self.script:
            answer = self.script.pop(0)
            status, retry_after = answer if isinstance(answer, tuple) else (answer, None)
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            return web.Response(status=status, text=f"told to answer {status}, you sent {auth}", headers=headers)
        return web.Response(status=200)

    async def __aenter__(self) -> Api:
        app = web.Application()
        app.router.add_post("/oauth/token", self.token)
        app.router.add_route("*", "/api/{tail:.*}", self.api)
        self._runner, port = await serve(app, "127.0.0.1", 0)
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()


async def start(bootstrap_servers, **routing):
    bus, dlq, control, group = unique("bus"), unique("dlq"), unique("rules"), unique("g")
    await create_topics(bootstrap_servers, bus, dlq)
    config = config_for(bootstrap_servers, bus, dlq, group, rules=[], sources=[{"topic": bus, "kind": "envelope"}],
                        routing={"control_topic": control, **routing},
                        api={"access_keys": {KEY: SECRET}, "signing_regions": ["us-east-1"]})
    worker, task, info = await start_worker(config)
    return worker, task, client(info["port"]), dlq, control


def worker_log(caplog) -> str:
    """Everything the worker logged, at every level (boto3 in the test logs its own requests)."""
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("botocore", "urllib3")))


async def target_rule(events, worker, name: str, destination_arn: str, http: dict, **extra):
    await call(events, "put_rule", Name=name, EventPattern=json.dumps({"source": [name]}))
    await call(events, "put_targets", Rule=name, Targets=[{"Id": "api", "Arn": destination_arn, "HttpParameters": http,
                                                          **extra}])
    await wait_for(lambda: f"{name}/api" in worker.targets, message="the worker to apply the rule")


async def test_oauth_connection_delivers_with_a_cached_token_parameters_and_the_rate_limit(bootstrap_servers, caplog):
    caplog.set_level(logging.DEBUG)
    worker, task, events, dlq, control = await start(bootstrap_servers, secrets_key=SECRETS_KEY)
    try:
        async with Api(expires_in=2) as api:
            oauth = {"AuthorizationEndpoint": f"{api.base}/oauth/token", "HttpMethod": "POST",
                     "ClientParameters": {"ClientID": CLIENT_ID, "ClientSecret": CLIENT_SECRET},
                     "OAuthHttpParameters": {"BodyParameters": [{"Key": "audience", "Value": "orders-api"}],
                                             "HeaderParameters": [{"Key": "x-tenant", "Value": "t1"}],
                                             "QueryStringParameters": [{"Key": "realm", "Value": "shop"}]}}
            invocation = {"HeaderParameters": [{"Key": "x-signature", "Value": SECRET_HEADER, "IsValueSecret": True}],
                          "QueryStringParameters": [{"Key": "v", "Value": "2", "IsValueSecret": False}]}
            made = await call(events, "create_connection", Name="shop-oauth", AuthorizationType="OAUTH_CLIENT_CREDENTIALS",
                              AuthParameters={"OAuthParameters": oauth, "InvocationHttpParameters": invocation})
            assert made["ConnectionState"] == "AUTHORIZED"
            assert made["ConnectionArn"].startswith("arn:aws:events:local:000000000000:connection/shop-oauth/")
            described = await call(events, "describe_connection", Name="shop-oauth")
            # as AWS describes it: everything but the secrets
            assert described["AuthParameters"] == {
                "OAuthParameters": {**oauth, "ClientParameters": {"ClientID": CLIENT_ID}},
                "InvocationHttpParameters": {"HeaderParameters": [{"Key": "x-signature", "IsValueSecret": True}],
                                             "QueryStringParameters": [{"Key": "v", "Value": "2", "IsValueSecret": False}]}}
            assert (described["Name"], described["AuthorizationType"], described["ConnectionState"]) == \
                ("shop-oauth", "OAUTH_CLIENT_CREDENTIALS", "AUTHORIZED")

            destination = await call(events, "create_api_destination", Name="orders", ConnectionArn=made["ConnectionArn"],
                                     InvocationEndpoint=f"{api.base}/api/orders/*/items/*", HttpMethod="PUT",
                                     InvocationRateLimitPerSecond=10)
            arn = destination["ApiDestinationArn"]
            assert arn.startswith("arn:aws:events:local:000000000000:api-destination/orders/")
            await target_rule(events, worker, "shop", arn, {
                "PathParameterValues": ["$.detail.order", "sku 1"],
                "HeaderParameters": {"x-team": "checkout", "x-n": "$.detail.n"},
                "QueryStringParameters": {"src": "$.source"}},
                InputTransformer={"InputPathsMap": {"n": "$.detail.n"}, "InputTemplate": '{"number": <n>}'})
            listed = (await call(events, "list_targets_by_rule", Rule="shop"))["Targets"][0]
            assert listed["Arn"] == arn and listed["HttpParameters"]["PathParameterValues"] == ["$.detail.order", "sku 1"]

            def order(n):
                return {"Source": "shop", "DetailType": "order", "Detail": json.dumps({"n": n, "order": f"o/{n}"})}

            await call(events, "put_events", Entries=[order(1)])
            await wait_for(lambda: len(api.calls) == 1, message="the first call")
            first = api.calls[0]
            assert api.token_errors == [] and api.token_fetches == 1
            assert (first["method"], first["path"], first["auth"]) == ("PUT", "/api/orders/o%2F1/items/sku%201",
                                                                       "Bearer tok-1")
            assert first["query"] == {"v": "2", "src": "shop"}
            assert (first["headers"]["x-signature"], first["headers"]["x-team"], first["headers"]["x-n"]) == \
                (SECRET_HEADER, "checkout", "1")
            assert first["body"] == {"number": 1}

            # the token is cached: more calls, no more fetches
            await call(events, "put_events", Entries=[order(2), order(3)])
            await wait_for(lambda: len(api.calls) == 3, message="two more calls")
            assert api.token_fetches == 1 and {c["auth"] for c in api.calls} == {"Bearer tok-1"}

            # refreshed before it expires (2 s, refreshed a tenth of its life early)
            await asyncio.sleep(2)
            await call(events, "put_events", Entries=[order(4)])
            await wait_for(lambda: len(api.calls) == 4, message="a call after the expiry")
            assert api.token_fetches == 2 and api.calls[-1]["auth"] == "Bearer tok-2"

            # a token the server revokes early: the 401 gets a fresh token and the call is made again
            api.revoked.add("tok-2")
            await call(events, "put_events", Entries=[order(5)])
            await wait_for(lambda: api.calls[-1]["auth"] == "Bearer tok-3" and api.calls[-1]["body"] == {"number": 5},
                           message="the call again with a fresh token")
            assert api.token_fetches == 3

            # a burst is held to InvocationRateLimitPerSecond (10) across both rules targeting the
            # destination: never more than 10 calls (+1 for where a window starts) in any second
            await call(events, "put_rule", Name="shop-copy", EventPattern=json.dumps({"source": ["shop"]}))
            await call(events, "put_targets", Rule="shop-copy", Targets=[{"Id": "api", "Arn": arn, "HttpParameters": {
                "PathParameterValues": ["copy", "copy"]}}])
            await wait_for(lambda: "shop-copy/api" in worker.targets, message="the second rule")
            before = len(api.calls)
            for chunk in range(2):
                await call(events, "put_events", Entries=[order(100 + chunk * 10 + i) for i in range(10)])
            await wait_for(lambda: len(api.calls) >= before + 40, timeout=30, message="the burst delivered")
            stamps = sorted(c["at"] for c in api.calls[before:])
            assert max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps) <= 11
            assert stamps[-1] - stamps[0] >= 3.5  # 40 calls at 10 per second: about 3.9 s
            burst = api.calls[before:]
            assert sorted(c["body"]["number"] for c in burst if c["path"].startswith("/api/orders/o")) == \
                list(range(100, 120))
            assert sorted(c["body"]["detail"]["n"] for c in burst
                          if c["path"] == "/api/orders/copy/items/copy") == list(range(100, 120))
        # another worker (or this one restarted) reads the connection from the control topic and,
        # with the same routing.secrets_key, opens its secret
        reader = ControlTopic(worker.config, control)
        await reader.start()
        await reader.close()
        stored = reader.api_destinations.connections["shop-oauth"]
        sealed = stored.auth["OAuthParameters"]["ClientParameters"]["ClientSecret"]
        assert reader.api_destinations.secret(stored, sealed) == CLIENT_SECRET
        assert reader.api_destinations.destinations["orders"].rate == 10
        # nothing secret on the control topic, nor in the worker's logs
        raw = b"".join((r.key or b"") + (r.value or b"") for r in await read_all(bootstrap_servers, control, idle=0.5))
        assert b"shop-oauth" in raw and not [s for s in SECRETS if s.encode() in raw]
        logged = worker_log(caplog)
        assert "shop-oauth" in logged and not [s for s in SECRETS if s in logged]
        assert not [s for s in ("tok-1", "tok-2", "tok-3") if f"Bearer {s}" in logged]
    finally:
        await stop_worker(worker, task)


async def test_api_key_and_basic_connections_retries_dead_letters_and_aws_errors(bootstrap_servers, caplog,
                                                                                  monkeypatch):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SHOP_API_KEY", API_KEY_VALUE)
    worker, task, events, dlq, control = await start(bootstrap_servers)  # no routing.secrets_key
    try:
        async with Api() as api:
            # without a key, a secret by value is refused, naming the setting; by reference it is taken
            code, message = await error_of(call(events, "create_connection", Name="basic", AuthorizationType="BASIC",
                                                AuthParameters={"BasicAuthParameters": {"Username": "u",
                                                                                        "Password": PASSWORD}}))
            assert code == "ValidationException" and "routing.secrets_key" in message and PASSWORD not in message
            assert await error_of(call(events, "create_connection", Name="k2", AuthorizationType="API_KEY",
                                       AuthParameters={"ApiKeyAuthParameters": {"ApiKeyName": "x-api-key",
                                                                                "ApiKeyValue": "${NO_SUCH_VAR}"}})) == \
                ("ValidationException", "AuthParameters.ApiKeyAuthParameters.ApiKeyValue: environment variable "
                 "NO_SUCH_VAR is not set (set it, or NO_SUCH_VAR_FILE, or write ${NO_SUCH_VAR:-default})")
            made = await call(events, "create_connection", Name="shop-key", AuthorizationType="API_KEY",
                              AuthParameters={"ApiKeyAuthParameters": {"ApiKeyName": "x-api-key",
                                                                       "ApiKeyValue": "${SHOP_API_KEY}"}})
            assert (await call(events, "describe_connection", Name="shop-key"))["AuthParameters"] == \
                {"ApiKeyAuthParameters": {"ApiKeyName": "x-api-key"}}

            # AWS's errors, word for word (LocalStack's AWS-validated recordings)
            assert await error_of(call(events, "create_connection", Name="shop-key", AuthorizationType="API_KEY",
                                       AuthParameters={})) == \
                ("ResourceAlreadyExistsException", "Connection shop-key already exists.")
            assert await error_of(call(events, "create_connection", Name="Invalid Name With Spaces!",
                                       AuthorizationType="API_KEY", AuthParameters={})) == \
                ("ValidationException", "1 validation error detected: Value 'Invalid Name With Spaces!' at 'name' "
                 "failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+")
            assert await error_of(call(events, "create_connection", Name="c", AuthorizationType="INVALID_AUTH_TYPE",
                                       AuthParameters={})) == \
                ("ValidationException", "1 validation error detected: Value 'INVALID_AUTH_TYPE' at 'authorizationType' "
                 "failed to satisfy constraint: Member must satisfy enum value set: [BASIC, OAUTH_CLIENT_CREDENTIALS, "
                 "API_KEY]")
            assert await error_of(call(events, "describe_connection", Name="nope")) == \
                ("ResourceNotFoundException", "Failed to describe the connection(s). Connection 'nope' does not exist.")
            assert await error_of(call(events, "create_api_destination", Name="d", ConnectionArn="invalid-connection-arn",
                                       HttpMethod="INVALID_METHOD", InvocationEndpoint="invalid-endpoint")) == \
                ("ValidationException", "2 validation errors detected: Value 'invalid-connection-arn' at 'connectionArn' "
                 "failed to satisfy constraint: Member must satisfy regular expression pattern: ^arn:aws([a-z]|\\-)*:"
                 "events:([a-z]|\\d|\\-)*:([0-9]{12})?:connection\\/[\\.\\-_A-Za-z0-9]+\\/[\\-A-Za-z0-9]+$; Value "
                 "'INVALID_METHOD' at 'httpMethod' failed to satisfy constraint: Member must satisfy enum value set: "
                 "[HEAD, POST, PATCH, DELETE, PUT, GET, OPTIONS]")
            assert await error_of(call(events, "describe_api_destination", Name="nope")) == \
                ("ResourceNotFoundException",
                 "Failed to describe the api-destination(s). An api-destination 'nope' does not exist.")

            destination = await call(events, "create_api_destination", Name="hook", ConnectionArn=made["ConnectionArn"],
                                     InvocationEndpoint=f"{api.base}/api/hook", HttpMethod="POST")
            assert await error_of(call(events, "create_api_destination", Name="hook", ConnectionArn=made["ConnectionArn"],
                                       InvocationEndpoint=f"{api.base}/api/hook", HttpMethod="POST")) == \
                ("ResourceAlreadyExistsException", "An api-destination 'hook' already exists.")
            described = await call(events, "describe_api_destination", Name="hook")
            assert {k: described[k] for k in ("Name", "ApiDestinationState", "ConnectionArn", "HttpMethod",
                                              "InvocationRateLimitPerSecond")} == \
                {"Name": "hook", "ApiDestinationState": "ACTIVE", "ConnectionArn": made["ConnectionArn"],
                 "HttpMethod": "POST", "InvocationRateLimitPerSecond": 300}
            assert [d["Name"] for d in (await call(events, "list_api_destinations"))["ApiDestinations"]] == ["hook"]
            await target_rule(events, worker, "shop", destination["ApiDestinationArn"], {},
                              RetryPolicy={"MaximumRetryAttempts": 5, "MaximumEventAgeInSeconds": 60})

            # 429 with Retry-After, then 503: retried (no sooner than Retry-After says), then delivered
            api.script = [(429, 1), 503]
            await call(events, "put_events", Entries=[entry("shop", 1)])
            await wait_for(lambda: len(api.calls) == 3, message="two retries")
            assert api.calls[1]["at"] - api.calls[0]["at"] >= 0.95
            assert all(c["headers"]["x-api-key"] == API_KEY_VALUE for c in api.calls)
            # a 400 is not retried: the event goes to the dead-letter topic, with the reason
            api.script = [400]
            await call(events, "put_events", Entries=[entry("shop", 2)])
            dead = await read_all(bootstrap_servers, dlq, expect=1)
            headers = {k: v.decode() for k, v in dead[0].headers}
            assert headers["eventweir-error"] == "HttpStatus400" and headers["eventweir-attempts"] == "1"
            assert API_KEY_VALUE not in headers["eventweir-message"]  # the endpoint echoed it; scrubbed
            assert len(api.calls) == 4

            # UpdateApiDestination and UpdateConnection apply to the running target
            await call(events, "update_api_destination", Name="hook", InvocationEndpoint=f"{api.base}/api/v2")
            await call(events, "update_connection", Name="shop-key", AuthParameters={
                "ApiKeyAuthParameters": {"ApiKeyName": "x-key-2"}})
            await call(events, "put_events", Entries=[entry("shop", 3)])
            await wait_for(lambda: len(api.calls) == 5, message="a call to the new endpoint")
            assert api.calls[-1]["path"] == "/api/v2" and api.calls[-1]["headers"]["x-key-2"] == API_KEY_VALUE

            # deauthorized: the secret is gone, deliveries are dead-lettered until it is authorized again
            deauth = await call(events, "deauthorize_connection", Name="shop-key")
            assert deauth["ConnectionState"] == "DEAUTHORIZING"
            described = await call(events, "describe_connection", Name="shop-key")
            assert described["ConnectionState"] == "DEAUTHORIZED"
            assert [c["Name"] for c in (await call(events, "list_connections", ConnectionState="DEAUTHORIZED"))[
                "Connections"]] == ["shop-key"]
            await call(events, "put_events", Entries=[entry("shop", 4)])
            dead = await read_all(bootstrap_servers, dlq, expect=2)
            assert {k: v.decode() for k, v in dead[1].headers}["eventweir-error"] == "ConnectionNotAuthorized"
            await call(events, "update_connection", Name="shop-key", AuthParameters={
                "ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "${SHOP_API_KEY}"}})
            assert (await call(events, "describe_connection", Name="shop-key"))["ConnectionState"] == "AUTHORIZED"
            await call(events, "put_events", Entries=[entry("shop", 5)])
            await wait_for(lambda: len(api.calls) == 6, message="a call once authorized again")

            await call(events, "delete_api_destination", Name="hook")
            deleted = await call(events, "delete_connection", Name="shop-key")
            assert deleted["ConnectionState"] == "DELETING"
            assert (await call(events, "list_connections"))["Connections"] == []
        raw = b"".join((r.value or b"") for r in await read_all(bootstrap_servers, control, idle=0.5))
        assert b'{"ref":"SHOP_API_KEY"}' in raw and API_KEY_VALUE.encode() not in raw
        logged = worker_log(caplog)
        assert "HttpStatus400" in logged and API_KEY_VALUE not in logged and PASSWORD not in logged
    finally:
        await stop_worker(worker, task)
