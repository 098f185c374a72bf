"""Event buses, driven by boto3's `events` client against a running worker: a bus is a Kafka topic,
a rule sees only its bus's events, and buses made through the API are consumed without a restart."""
from __future__ import annotations

import json
from datetime import datetime

import pytest

from streams.runtime.reload import ControlTopic
from tests.integration.kafka_helpers import create_topics, read_all, unique, wait_for
from tests.integration.test_eventbridge_api import KEY, SECRET, call, client, entry, error_of
from tests.integration.test_rules_targets import config_for, start_worker, stop_worker

pytestmark = pytest.mark.broker
ARN = "arn:aws:events:local:000000000000"


async def start(bootstrap_servers, **extra):
    bus, dlq, control, group = unique("bus"), unique("dlq"), unique("rules"), unique("g")
    await create_topics(bootstrap_servers, bus, dlq)
    config = config_for(
        bootstrap_servers, bus, dlq, group, rules=extra.pop("rules", []),
        sources=[{"topic": bus, "kind": "envelope"}],
        routing={"control_topic": control, "retry_base_delay_ms": 5, "retry_max_delay_ms": 20, **extra.pop("routing", {})},
        api={"access_keys": {KEY: SECRET}, "signing_regions": ["us-east-1"]}, **extra,
    )
    worker, task, info = await start_worker(config)
    return worker, task, info["port"]


def n_of(records) -> list[int]:
    return sorted(json.loads(r.value)["detail"]["n"] for r in records)


async def test_a_bus_made_through_the_api_routes_its_events_to_its_rules_only(bootstrap_servers):
    worker, task, port = await start(bootstrap_servers)
    try:
        events = client(port)
        name, out_bus, out_default = unique("orders"), unique("out-bus"), unique("out-default")
        await create_topics(bootstrap_servers, out_bus, out_default)

        made = await call(events, "create_event_bus", Name=name, Description="orders bus")
        assert made["EventBusArn"] == f"{ARN}:event-bus/{name}" and made["Description"] == "orders bus"
        assert await error_of(call(events, "create_event_bus", Name=name)) == \
            ("ResourceAlreadyExistsException", f"Event bus {name} already exists.")
        described = await call(events, "describe_event_bus", Name=name)
        assert (described["Name"], described["Arn"], described["Description"]) == (name, made["EventBusArn"], "orders bus")
        assert isinstance(described["CreationTime"], datetime) and isinstance(described["LastModifiedTime"], datetime)
        assert (await call(events, "describe_event_bus"))["Arn"] == f"{ARN}:event-bus/default"
        assert [b["Name"] for b in (await call(events, "list_event_buses"))["EventBuses"]] == sorted(["default", name])
        assert [b["Name"] for b in (await call(events, "list_event_buses", NamePrefix="orders"))["EventBuses"]] == [name]

        # the same pattern on both buses: each rule sees only its own bus's events
        arn = (await call(events, "put_rule", Name="on-bus", EventBusName=name,
                          EventPattern=json.dumps({"source": ["shop"]})))["RuleArn"]
        assert arn == f"{ARN}:rule/{name}/on-bus"
        await call(events, "put_targets", Rule="on-bus", EventBusName=made["EventBusArn"],
                   Targets=[{"Id": "k", "Arn": f"kafka://{out_bus}"}])
        await call(events, "put_rule", Name="on-default", EventPattern=json.dumps({"source": ["shop"]}))
        await call(events, "put_targets", Rule="on-default", Targets=[{"Id": "k", "Arn": f"kafka://{out_default}"}])
        await wait_for(lambda: {"on-bus/k", "on-default/k"} <= set(worker.targets), message="the worker to apply the rules")

        put = await call(events, "put_events", Entries=[
            entry("shop", 1, EventBusName=name), entry("shop", 2), entry("shop", 3, EventBusName=made["EventBusArn"]),
            entry("shop", 4, EventBusName="default"), entry("shop", 5, EventBusName=unique("no-such-bus"))])
        assert put["FailedEntryCount"] == 0
        assert n_of(await read_all(bootstrap_servers, out_bus, expect=2)) == [1, 3]
        assert n_of(await read_all(bootstrap_servers, out_default, expect=2)) == [2, 4]
        assert n_of(await read_all(bootstrap_servers, f"eventweir.bus.{name}", idle=0.5)) == [1, 3]  # the bus's topic
        await wait_for(lambda: worker.stats.matched["on-bus"] == 2 and worker.stats.matched["on-default"] == 2,
                       message="both rules to have matched")
        rule = await call(events, "describe_rule", Name="on-bus", EventBusName=name)
        assert (rule["Arn"], rule["EventBusName"]) == (arn, name)

        # rules are per bus in every operation
        assert await error_of(call(events, "describe_rule", Name="on-bus")) == \
            ("ResourceNotFoundException", "Rule on-bus does not exist on EventBus default.")
        assert [r["Name"] for r in (await call(events, "list_rules", EventBusName=name))["Rules"]] == ["on-bus"]
        assert "on-bus" not in [r["Name"] for r in (await call(events, "list_rules"))["Rules"]]
        assert (await call(events, "list_targets_by_rule", Rule="on-bus", EventBusName=name))["Targets"][0]["Arn"] == \
            f"kafka://{out_bus}"
        assert (await error_of(call(events, "put_rule", Name="on-bus", EventPattern='{"source": ["x"]}')))[0] == \
            "ResourceAlreadyExistsException"  # rule names are unique across buses here
        assert await error_of(call(events, "put_rule", Name="r", EventBusName="nope", EventPattern='{"a": [1]}')) == \
            ("ResourceNotFoundException", "Event bus nope does not exist.")

        updated = await call(events, "update_event_bus", Name=name, Description="all orders")
        assert (updated["Arn"], updated["Name"], updated["Description"]) == (made["EventBusArn"], name, "all orders")
        again = await call(events, "describe_event_bus", Name=made["EventBusArn"])
        assert again["Description"] == "all orders" and again["LastModifiedTime"] >= described["LastModifiedTime"]

        # AWS's errors, word for word (LocalStack's AWS-validated TestEventBus)
        assert await error_of(call(events, "delete_event_bus", Name="default")) == \
            ("ValidationException", "Cannot delete event bus default.")
        assert await error_of(call(events, "describe_event_bus", Name="no-such-bus")) == \
            ("ResourceNotFoundException", "Event bus no-such-bus does not exist.")
        assert await error_of(call(events, "update_event_bus", Name="no-such-bus", Description="x")) == \
            ("ResourceNotFoundException", "Event bus no-such-bus does not exist.")
        await call(events, "delete_event_bus", Name="no-such-bus")  # succeeds, as on AWS

        # the bus is on the control topic: a fresh reader (another worker, a restart) sees it
        reader = ControlTopic(worker.config, worker.config.routing.control_topic)
        await reader.start()
        await reader.close()
        assert reader.buses[name].settings.description == "all orders"

        # deleted: its rules go with it, and its events are delivered nowhere
        version = worker.control.version
        await call(events, "delete_event_bus", Name=name)
        assert await error_of(call(events, "describe_event_bus", Name=name)) == \
            ("ResourceNotFoundException", f"Event bus {name} does not exist.")
        assert [b["Name"] for b in (await call(events, "list_event_buses", NamePrefix=name))["EventBuses"]] == []
        await wait_for(lambda: worker.control.version > version and "on-bus/k" not in worker.targets,
                       message="the bus's rule to be removed")
        assert await error_of(call(events, "list_rules", EventBusName=name)) == \
            ("ResourceNotFoundException", f"Event bus {name} does not exist.")
        await call(events, "put_events", Entries=[entry("shop", 6, EventBusName=name), entry("shop", 7)])
        assert n_of(await read_all(bootstrap_servers, out_default, expect=3)) == [2, 4, 7]
        assert n_of(await read_all(bootstrap_servers, out_bus, idle=1.0)) == [1, 3]
    finally:
        await stop_worker(worker, task)


async def test_a_bus_declared_in_the_config_file(bootstrap_servers):
    name, out_bus, out_default = unique("audit"), unique("out-bus"), unique("out-default")
    topic = unique("audit-topic")  # a topic of its own, created by the worker if missing
    await create_topics(bootstrap_servers, out_bus, out_default)
    rules = [
        {"name": "audit-all", "EventBusName": name, "targets": [{"id": "k", "type": "kafka", "topic": out_bus}]},
        {"name": "default-all", "targets": [{"id": "k", "type": "kafka", "topic": out_default}]},
    ]
    worker, task, port = await start(bootstrap_servers, rules=rules,
                                     buses=[{"name": name, "topic": topic, "description": "audit trail"}])
    try:
        events = client(port)
        described = await call(events, "describe_event_bus", Name=name)
        assert {k: described[k] for k in ("Name", "Arn", "Description")} == \
            {"Name": name, "Arn": f"{ARN}:event-bus/{name}", "Description": "audit trail"}
        rule = await call(events, "describe_rule", Name="audit-all", EventBusName=name)
        assert (rule["Arn"], rule["ManagedBy"]) == (f"{ARN}:rule/{name}/audit-all", "eventweir.config")

        await call(events, "put_events", Entries=[entry("a", 1, EventBusName=name), entry("a", 2)])
        assert n_of(await read_all(bootstrap_servers, out_bus, expect=1)) == [1]
        assert n_of(await read_all(bootstrap_servers, out_default, expect=1)) == [2]
        assert n_of(await read_all(bootstrap_servers, topic, idle=0.5)) == [1]
        assert n_of(await read_all(bootstrap_servers, out_bus, idle=1.0)) == [1]

        assert await error_of(call(events, "delete_event_bus", Name=name)) == \
            ("ValidationException", f"Event bus {name} is defined in the config file; change it there.")
    finally:
        await stop_worker(worker, task)


async def test_a_bus_made_through_the_api_is_consumed_after_a_restart(bootstrap_servers):
    worker, task, port = await start(bootstrap_servers)
    config = worker.config
    name, out = unique("kept"), unique("out")
    await create_topics(bootstrap_servers, out)
    try:
        events = client(port)
        await call(events, "create_event_bus", Name=name)
        await call(events, "put_rule", Name="kept-rule", EventBusName=name, EventPattern='{"source": ["s"]}')
        await call(events, "put_targets", Rule="kept-rule", EventBusName=name, Targets=[{"Id": "k", "Arn": f"kafka://{out}"}])
        await wait_for(lambda: "kept-rule/k" in worker.targets, message="the rule to apply")
    finally:
        await stop_worker(worker, task)
    worker, task, info = await start_worker(config)
    try:
        assert f"eventweir.bus.{name}" in worker.control.bus_topics
        await call(client(info["port"]), "put_events", Entries=[entry("s", 1, EventBusName=name), entry("s", 2)])
        assert n_of(await read_all(bootstrap_servers, out, expect=1)) == [1]
        assert n_of(await read_all(bootstrap_servers, out, idle=1.0)) == [1]
    finally:
        await stop_worker(worker, task)
