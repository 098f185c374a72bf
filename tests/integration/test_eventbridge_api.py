"""The EventBridge-compatible API, driven by boto3's own `events` client against a running worker:
rules changed through the API take effect on the worker without a restart."""
from __future__ import annotations

import asyncio
import json

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from streams.runtime.reload import ControlTopic
from tests.integration.http_endpoint import Endpoint
from tests.integration.kafka_helpers import create_topics, unique, wait_for
from tests.integration.test_rules_targets import config_for, start_worker, stop_worker

pytestmark = pytest.mark.broker
KEY, SECRET = "AKIAEVENTWEIRTEST01", "verysecretsecretverysecretsecret0123456"


def client(port: int, key: str = KEY, secret: str = SECRET):
    return boto3.client("events", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=BotoConfig(retries={"max_attempts": 1}))


def call(events, operation: str, **params):
    return asyncio.to_thread(getattr(events, operation), **params)


async def error_of(coro) -> tuple[str, str]:
    with pytest.raises(ClientError) as err:
        await coro
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


def entry(source: str, n: int, **extra) -> dict:
    return {"Source": source, "DetailType": "order placed", "Detail": json.dumps({"n": n}), **extra}


@pytest.fixture
async def running(bootstrap_servers):
    bus, dlq, control, group = unique("bus"), unique("dlq"), unique("rules"), unique("g")
    await create_topics(bootstrap_servers, bus, dlq)
    config = config_for(
        bootstrap_servers, bus, dlq, group,
        rules=[{"name": "from-config", "EventPattern": {"source": ["never"]}, "targets": [{"id": "l", "type": "log"}]}],
        sources=[{"topic": bus, "kind": "envelope"}],
        routing={"control_topic": control, "retry_base_delay_ms": 5, "retry_max_delay_ms": 20},
        api={"access_keys": {KEY: SECRET}, "bearer_tokens": ["tok-123"], "signing_regions": ["us-east-1"]},
    )
    worker, task, info = await start_worker(config)
    yield worker, info["port"], control
    await stop_worker(worker, task)


async def test_rules_managed_with_boto3_take_effect_on_the_running_worker(running, bootstrap_servers):
    worker, port, control = running
    events = client(port)
    async with Endpoint() as hook:
        arn = (await call(events, "put_rule", Name="orders", EventPattern=json.dumps({"source": ["shop"]}),
                          Description="orders to the hook"))["RuleArn"]
        assert arn == "arn:aws:events:local:000000000000:rule/orders"
        await call(events, "put_targets", Rule="orders", Targets=[
            {"Id": "hook", "Arn": hook.url, "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 60}}])
        # the two writes may be applied as one rule set (changes arriving together coalesce)
        await wait_for(lambda: "orders/hook" in worker.targets, message="the worker to apply the rule")

        put = await call(events, "put_events", Entries=[
            entry("shop", 1), entry("elsewhere", 2), entry("shop", 3),
            {"Source": "shop", "DetailType": "x", "Detail": "not json"}, {"Source": "shop", "Detail": "{}"}])
        assert put["FailedEntryCount"] == 2
        assert [e.get("ErrorCode") for e in put["Entries"]] == [None, None, None, "MalformedDetail", "InvalidArgument"]
        assert put["Entries"][4]["ErrorMessage"] == (
            "Parameter DetailType is not valid. Reason: DetailType is a required argument.")
        assert all(len(e["EventId"]) == 36 for e in put["Entries"][:3])
        await wait_for(lambda: len(hook.received) == 2, message="the matching events at the hook")
        assert sorted(e["detail"]["n"] for e in hook.received) == [1, 3]
        assert {e["id"] for e in hook.received} == {put["Entries"][0]["EventId"], put["Entries"][2]["EventId"]}
        assert hook.received[0]["source"] == "shop" and hook.received[0]["detail-type"] == "order placed"

        described = await call(events, "describe_rule", Name="orders")
        assert (described["State"], described["Description"], json.loads(described["EventPattern"])) == \
            ("ENABLED", "orders to the hook", {"source": ["shop"]})
        listed = await call(events, "list_rules")
        assert sorted(r["Name"] for r in listed["Rules"]) == ["from-config", "orders"]
        assert next(r for r in listed["Rules"] if r["Name"] == "from-config")["ManagedBy"] == "eventweir.config"
        targets = (await call(events, "list_targets_by_rule", Rule="orders"))["Targets"]
        assert targets == [{"Id": "hook", "Arn": hook.url,
                            "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 60}}]

        # the change went through the control topic: a fresh reader sees it
        reader = ControlTopic(worker.config, control)
        await reader.start()
        await reader.close()
        assert reader.rules["orders"].targets[0].url == hook.url

        # disabled: the worker stops delivering; enabled again: it resumes
        version = worker.control.version
        await call(events, "disable_rule", Name="orders")
        await wait_for(lambda: worker.control.version > version, message="the disable to apply")
        consumed = worker.stats.consumed
        await call(events, "put_events", Entries=[entry("shop", 4)])
        await wait_for(lambda: worker.stats.consumed > consumed, message="the event sent while disabled")
        await call(events, "enable_rule", Name="orders")
        await call(events, "put_events", Entries=[entry("shop", 5)])
        await wait_for(lambda: len(hook.received) == 3, message="the event after re-enabling")
        await asyncio.sleep(0.3)
        assert sorted(e["detail"]["n"] for e in hook.received) == [1, 3, 5]

        assert await error_of(call(events, "delete_rule", Name="orders")) == \
            ("ValidationException", "Rule can't be deleted since it has targets.")
        await call(events, "remove_targets", Rule="orders", Ids=["hook"])
        await call(events, "delete_rule", Name="orders")
        assert (await error_of(call(events, "describe_rule", Name="orders")))[0] == "ResourceNotFoundException"
        await wait_for(lambda: "orders/hook" not in worker.targets, message="the target to be removed")


async def test_api_validates_as_aws_does(running):
    worker, port, _ = running
    events = client(port)
    code, message = await error_of(call(events, "put_rule", Name="bad", EventPattern='{"source": "shop"}'))
    assert code == "InvalidEventPatternException" and message.startswith("Event pattern is not valid. Reason: ")
    assert (await call(events, "test_event_pattern", EventPattern='{"source": ["shop"]}', Event=json.dumps({
        "id": "1", "account": "1", "source": "shop", "time": "2026-01-01T00:00:00Z", "region": "x",
        "detail-type": "d", "detail": {}})))["Result"] is True
    assert await error_of(call(events, "test_event_pattern", EventPattern='{"source": ["shop"]}', Event="{}")) == \
        ("ValidationException", "Parameter Event is not valid.")
    assert (await error_of(call(events, "put_rule", Name="from-config", EventPattern='{"a": [1]}')))[0] == \
        "ManagedRuleException"
    await call(events, "put_rule", Name="two", EventPattern='{"a": [1]}')
    assert await error_of(call(events, "put_targets", Rule="two", Targets=[
        {"Id": "t", "Arn": "log://t", "Input": "{}", "InputPath": "$.detail"}])) == \
        ("ValidationException", "Only one of Input, InputPath, or InputTransformer must be provided for target t.")
    assert (await error_of(call(events, "put_targets", Rule="two", Targets=[
        {"Id": f"t{i}", "Arn": f"log://t{i}"} for i in range(6)])))[0] == "LimitExceededException"
    assert (await error_of(call(events, "put_targets", Rule="two", Targets=[
        {"Id": "t", "Arn": "arn:aws:lambda:us-east-1:1:function:f"}])))[0] == "ValidationException"
    big = [entry("shop", 0, Detail=json.dumps({"pad": "x" * 60_000}))] * 5
    assert await error_of(call(events, "put_events", Entries=big)) == \
        ("ValidationException", "Total size of the entries in the request is over the limit.")


async def test_requests_without_valid_credentials_are_refused(running):
    worker, port, _ = running
    assert (await error_of(call(client(port, key="AKIAUNKNOWN"), "list_rules")))[0] == "UnrecognizedClientException"
    assert (await error_of(call(client(port, secret="wrong"), "list_rules")))[0] == "InvalidSignatureException"
    import aiohttp

    headers = {"X-Amz-Target": "AWSEvents.ListRules", "Content-Type": "application/x-amz-json-1.1"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}/", data=b"{}", headers=headers) as resp:
            assert resp.status == 403
            assert (await resp.json(content_type=None))["__type"] == "MissingAuthenticationTokenException"
        async with session.post(f"http://127.0.0.1:{port}/", data=b"{}",
                                headers={**headers, "Authorization": "Bearer tok-123"}) as resp:
            assert resp.status == 200 and "Rules" in await resp.json(content_type=None)
        async with session.post(f"http://127.0.0.1:{port}/", data=b"{}",
                                headers={**headers, "Authorization": "Bearer nope"}) as resp:
            assert resp.status == 403


async def test_put_events_checks_every_entry_before_writing_any(running, bootstrap_servers):
    # issue 21 item 7: a bad entry used to fail the call with a 500 after the entries before it were
    # on the bus, and boto3's retries then wrote those again
    import aiohttp

    from tests.integration.kafka_helpers import read_all

    worker, port, _ = running
    bus = worker.config.sources[0].topic
    deep: dict = {}
    node = deep
    for _ in range(300):
        node["a"] = {}
        node = node["a"]
    entries = [entry("shop", 1), {**entry("shop", 2), "Detail": json.dumps(deep)},
               entry("shop", 3, Time=1e20), entry("shop", 4, Time=1733500000000), entry("shop", 6, Time=1733500000)]
    headers = {"X-Amz-Target": "AWSEvents.PutEvents", "Content-Type": "application/x-amz-json-1.1",
               "Authorization": "Bearer tok-123"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}/", data=json.dumps({"Entries": entries}),
                                headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            put = await resp.json(content_type=None)
        # a Time that is not a number at all is a type error of the request, as on AWS: nothing is written
        async with session.post(f"http://127.0.0.1:{port}/", headers=headers,
                                data=json.dumps({"Entries": [entry("shop", 5), entry("shop", 5, Time=True)]})) as resp:
            assert resp.status == 400 and (await resp.json(content_type=None))["__type"] == "SerializationException"
    assert put["FailedEntryCount"] == 3
    codes = [e.get("ErrorCode") for e in put["Entries"]]
    assert codes == [None, "MalformedDetail", "InvalidArgument", "InvalidArgument", None]
    assert "nested deeper than 253 levels" in put["Entries"][1]["ErrorMessage"]
    assert "Parameter Time is not valid" in put["Entries"][2]["ErrorMessage"]
    written = [json.loads(r.value) for r in await read_all(bootstrap_servers, bus, idle=2.0)]
    assert sorted(e["detail"]["n"] for e in written if e["source"] == "shop") == [1, 6]
    assert [e["time"] for e in written if e["detail"]["n"] == 6] == ["2024-12-06T15:46:40Z"]


async def test_put_events_to_a_bus_that_does_not_exist_is_answered_as_aws_does(running, bootstrap_servers):
    # issue 21 item 17: such entries used to land on the default bus. AWS gives them an EventId and
    # delivers them nowhere (LocalStack's AWS-validated test_put_events_nonexistent_event_bus)
    from prometheus_client import REGISTRY

    from tests.integration.kafka_helpers import read_all

    worker, port, _ = running
    bus = worker.config.sources[0].topic
    before = REGISTRY.get_sample_value("eventweir_put_events_entries_total", {"result": "unknown_bus"}) or 0
    this_bus_arn = "arn:aws:events:local:000000000000:event-bus/default"
    put = await call(client(port), "put_events", Entries=[
        entry("shop", 1), entry("shop", 2, EventBusName="no-such-bus"), entry("shop", 3, EventBusName="default"),
        entry("shop", 4, EventBusName=this_bus_arn),
        entry("shop", 5, EventBusName="arn:aws:events:us-east-1:000000000000:event-bus/default")])
    assert put["FailedEntryCount"] == 0 and all(len(e["EventId"]) == 36 for e in put["Entries"])
    written = [json.loads(r.value) for r in await read_all(bootstrap_servers, bus, idle=2.0)]
    assert sorted(e["detail"]["n"] for e in written) == [1, 3, 4]
    after = REGISTRY.get_sample_value("eventweir_put_events_entries_total", {"result": "unknown_bus"})
    assert after == before + 2


async def test_unknown_operations_cannot_grow_the_metrics_and_bearer_is_case_insensitive(running):
    # issue 21 items 12 and 17: every distinct X-Amz-Target used to make a new series, even unauthenticated
    import aiohttp
    from prometheus_client import REGISTRY

    worker, port, _ = running

    def operations() -> set[str]:
        return {s.labels["operation"] for m in REGISTRY.collect() if m.name == "eventweir_api_requests"
                for s in m.samples}

    async with aiohttp.ClientSession() as session:
        for i in range(50):
            headers = {"X-Amz-Target": f"AWSEvents.Probe{i}", "Content-Type": "application/x-amz-json-1.1"}
            async with session.post(f"http://127.0.0.1:{port}/", data=b"{}", headers=headers) as resp:
                assert resp.status in (400, 403)
        headers = {"X-Amz-Target": "AWSEvents.ListRules", "Content-Type": "application/x-amz-json-1.1",
                   "Authorization": "bearer tok-123"}
        async with session.post(f"http://127.0.0.1:{port}/", data=b"{}", headers=headers) as resp:
            assert resp.status == 200, await resp.text()
    from streams.http.eventbridge.api import EventBridgeApi

    known = {name.removeprefix("op_") for name in dir(EventBridgeApi) if name.startswith("op_")}
    assert operations() <= known | {"unknown"} and not any(op.startswith("Probe") for op in operations())


async def test_any_json_body_to_any_operation_is_answered_2xx_or_a_4xx_json_error(running):
    # issue 21 item 8: malformed but authenticated requests used to get 500 text/plain, which boto3 retries
    import urllib.error
    import urllib.request

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from streams.http.eventbridge import shapes
    from streams.http.eventbridge.api import EventBridgeApi

    _, port, _ = running
    operations = sorted(name.removeprefix("op_") for name in dir(EventBridgeApi) if name.startswith("op_"))
    members = sorted({m for op in operations for m in shapes.input_shape(op).members})
    scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(members) | st.text(max_size=8), inner, max_size=4), max_leaves=12)
    bodies = st.dictionaries(st.sampled_from(members), values, max_size=5) | values

    def post(operation: str, body) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/", data=json.dumps(body).encode(), method="POST",
            headers={"X-Amz-Target": f"AWSEvents.{operation}", "Content-Type": "application/x-amz-json-1.1",
                     "Authorization": "Bearer tok-123"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(operations), bodies)
    def never_a_server_error(operation, body):
        status, answer = post(operation, body)
        assert status < 500, (operation, body, answer)
        if status >= 400:
            assert set(answer) == {"__type", "message"} and answer["__type"].endswith("Exception")

    await asyncio.to_thread(never_a_server_error)


@pytest.mark.parametrize("operation, body, expected", [
    ("TestEventPattern", {"EventPattern": '{"a":' * 1000 + '["x"]' + "}" * 1000, "Event": "{}"},
     "ValidationException"),  # past AWS's 4096 characters
    ("TestEventPattern", {"EventPattern": '{"a":' * 150 + '["x"]' + "}" * 150, "Event": "{}"},
     "InvalidEventPatternException"),  # nested deeper than the compiler takes
    ("PutRule", {"Name": "deep", "EventPattern": '{"a":' * 150 + '["x"]' + "}" * 150},
     "InvalidEventPatternException"),
    ("PutRule", {"Name": "big", "EventPattern": json.dumps({"source": ["x" * 3000]})},
     "LimitExceededException"),  # past the bus's quota (routing.max_pattern_chars, 2048 by default)
    ("PutRule", {"Name": "obj", "EventPattern": {"source": ["x"]}}, "SerializationException"),
    ("ListRules", {"NextToken": "abc"}, "ValidationException"),
    ("ListRules", {"Limit": "x"}, "SerializationException"),
    ("ListRules", {"Limit": 1000}, "ValidationException"),
    ("DeleteRule", {"Name": []}, "SerializationException"),
    ("PutTargets", {"Rule": "from-config", "Targets": [5]}, "SerializationException"),
    ("PutTargets", {"Rule": "from-config", "Targets": [{"Id": "t", "Arn": "kafka://x", "DeadLetterConfig": {"Arn": 5}}]},
     "SerializationException"),
    ("PutEvents", {"Entries": [{"Source": "s", "DetailType": "d", "Detail": "{}", "Resources": 5}]},
     "SerializationException"),
])
async def test_the_malformed_requests_that_got_a_500_get_aws_errors(running, operation, body, expected):
    import aiohttp

    _, port, _ = running
    headers = {"X-Amz-Target": f"AWSEvents.{operation}", "Content-Type": "application/x-amz-json-1.1",
               "Authorization": "Bearer tok-123"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}/", data=json.dumps(body), headers=headers) as resp:
            answer = await resp.json(content_type=None)
            assert (resp.status, answer["__type"]) == (400, expected), answer


async def test_put_targets_checks_input_transformers_as_aws_does(running, conformance_dir):
    """LocalStack's AWS-validated cases (tests/data/conformance): PutTargets' errors word for word,
    naming the target, and every template AWS accepted, delivered or not, accepted."""
    _, port, _ = running
    events = client(port)
    await call(events, "put_rule", Name="transformed", EventPattern='{"source": ["never"]}')
    localstack = json.loads((conformance_dir / "eventbridge-input-transformer-localstack-cases.json").read_text())
    for c in localstack["put_targets_errors"]:
        target = {"Id": c["target_id"], "Arn": f"log://{c['target_id']}", "InputTransformer": {
            "InputPathsMap": c["input_paths_map"], "InputTemplate": c["input_template"]}}
        if "input_path" in c:
            target["InputPath"] = c["input_path"]
        with pytest.raises(ClientError) as err:
            await call(events, "put_targets", Rule="transformed", Targets=[target])
        got = err.value.response
        assert (got["Error"]["Code"], got["ResponseMetadata"]["HTTPStatusCode"], got["Error"]["Message"]) == \
            (c["expected"]["code"], c["expected"]["status"], c["expected"]["message"]), c["name"]
    shared = json.loads((conformance_dir / "eventbridge-input-transformer-cases.json").read_text())
    for c in localstack["cases"] + shared["cases"]:
        transformer = {"InputTemplate": c["input_template"]}
        if "input_paths_map" in c:
            transformer["InputPathsMap"] = c["input_paths_map"]
        answer = await call(events, "put_targets", Rule="transformed",
                            Targets=[{"Id": "t", "Arn": "log://t", "InputTransformer": transformer}])
        assert answer["FailedEntryCount"] == 0, c["name"]


async def test_create_event_bus_refuses_what_it_cannot_make_with_a_4xx(running):
    _, port, _ = running
    events = client(port)
    assert await error_of(call(events, "create_event_bus", Name="a b")) == ("ValidationException",
        "1 validation error detected: Value 'a b' at 'name' failed to satisfy constraint: Member must satisfy "
        "regular expression pattern: [/\\.\\-_A-Za-z0-9]+")
    assert await error_of(call(events, "create_event_bus", Name="aws.partner/x/y")) == ("ValidationException",
        "Event bus aws.partner/x/y: partner event buses (names with /) are not supported by eventweir.")
    assert (await error_of(call(events, "create_event_bus", Name="default")))[0] == "ResourceAlreadyExistsException"
    assert await error_of(call(events, "update_event_bus", Description="x")) == \
        ("ValidationException", "Event bus default is defined in the config file; change it there.")
    assert [b["Name"] for b in (await call(events, "list_event_buses"))["EventBuses"]] == ["default"]
