"""A bus as a rule's target, the hop limit that stops events republished round a loop, and each
bus's topic of events no rule matched: on the real broker, with a running worker."""
from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY

from tests.integration.kafka_helpers import create_topics, produce, read_all, unique, wait_for
from tests.integration.test_event_buses import ARN, n_of, start
from tests.integration.test_eventbridge_api import call, client, entry
from tests.integration.test_rules_targets import config_for, headers_of, start_worker, stop_worker

pytestmark = pytest.mark.broker


def envelope(source: str, n: int) -> dict:
    return {"version": "0", "id": f"id-{n}", "detail-type": "test", "source": source, "account": "000000000000",
            "time": "2026-12-06T10:00:00Z", "region": "local", "resources": [], "detail": {"n": n}}


def hops(record) -> int:
    return int(headers_of(record).get("eventweir-hops", "0"))


async def test_two_rules_that_republish_to_each_others_bus_stop_at_max_hops(bootstrap_servers):
    main, dlq, out, group = unique("main"), unique("dlq"), unique("out"), unique("g")
    a, b = unique("bus-a"), unique("bus-b")
    a_topic, b_topic = f"eventweir.bus.{a}", f"eventweir.bus.{b}"
    await create_topics(bootstrap_servers, main, dlq, out, a_topic, b_topic)
    rules = [
        {"name": "a-to-b", "EventBusName": a, "targets": [{"id": "b", "type": "bus", "bus": b}]},
        {"name": "b-to-a", "EventBusName": b, "EventPattern": {"source": ["loop"]},
         "targets": [{"id": "a", "type": "bus", "bus": f"{ARN}:event-bus/{a}"}]},  # a name or an ARN
        {"name": "b-out", "EventBusName": b, "targets": [{"id": "k", "type": "kafka", "topic": out}]},
    ]
    config = config_for(bootstrap_servers, main, dlq, group, rules, sources=[{"topic": main, "kind": "envelope"}],
                        buses=[{"name": a}, {"name": b}], routing={"max_hops": 3})
    worker, task, _ = await start_worker(config)
    try:
        await produce(bootstrap_servers, a_topic, [envelope("loop", 1)])

        # a -> b (1 hop), b -> a (2), a -> b (3): max_hops republishes, then the dead-letter topic
        [dead] = await read_all(bootstrap_servers, dlq, expect=1)
        why = headers_of(dead)
        assert (why["eventweir-error"], why["eventweir-rule"], why["eventweir-target"]) == \
            ("MaxHopsExceeded", "b-to-a", "b-to-a/a")
        assert "republished to a bus 3 times, and routing.max_hops is 3" in why["eventweir-message"]
        assert "loop of buses" in why["eventweir-message"]
        assert json.loads(dead.value)["id"] == "id-1"
        on_a = await read_all(bootstrap_servers, a_topic, idle=1.0)
        on_b = await read_all(bootstrap_servers, b_topic, idle=0.2)
        assert sorted(map(hops, on_a)) == [0, 2] and sorted(map(hops, on_b)) == [1, 3]
        # the same event each time: the target bus's rules see what the first bus's rule matched
        assert all(json.loads(r.value) == envelope("loop", 1) for r in on_a + on_b)
        assert all("traceparent" in headers_of(r) for r in on_b)
        assert sorted(map(hops, await read_all(bootstrap_servers, out, idle=0.2))) == [1, 3]

        # and the worker goes on: an event the loop's pattern does not match makes one hop, no dead letter
        await produce(bootstrap_servers, a_topic, [envelope("once", 2)])
        assert n_of(await read_all(bootstrap_servers, out, expect=3))[-1] == 2
        assert len(await read_all(bootstrap_servers, dlq, idle=0.5)) == 1
    finally:
        await stop_worker(worker, task)


async def test_put_targets_with_an_event_bus_arn_republishes_to_that_bus(bootstrap_servers):
    worker, task, port = await start(bootstrap_servers)
    try:
        events = client(port)
        source_bus, target_bus, out = unique("orders"), unique("audit"), unique("out")
        await create_topics(bootstrap_servers, out)
        await call(events, "create_event_bus", Name=source_bus)
        target_arn = (await call(events, "create_event_bus", Name=target_bus))["EventBusArn"]
        await call(events, "put_rule", Name="forward", EventBusName=source_bus, EventPattern='{"source": ["shop"]}')
        await call(events, "put_targets", Rule="forward", EventBusName=source_bus,
                   Targets=[{"Id": "audit", "Arn": target_arn}])
        assert (await call(events, "list_targets_by_rule", Rule="forward", EventBusName=source_bus))["Targets"][0][
            "Arn"] == target_arn
        await call(events, "put_rule", Name="audit-all", EventBusName=target_bus, EventPattern='{"source": ["shop"]}')
        await call(events, "put_targets", Rule="audit-all", EventBusName=target_bus,
                   Targets=[{"Id": "k", "Arn": f"kafka://{out}"}])
        await wait_for(lambda: {"forward/audit", "audit-all/k"} <= set(worker.targets), message="the rules to apply")

        put = await call(events, "put_events", Entries=[entry("shop", 1, EventBusName=source_bus),
                                                         entry("shop", 2, EventBusName="default")])
        [record] = await read_all(bootstrap_servers, out, expect=1)
        assert json.loads(record.value)["id"] == put["Entries"][0]["EventId"] and hops(record) == 1
        assert n_of(await read_all(bootstrap_servers, out, idle=1.0)) == [1]  # not the default bus's event
    finally:
        await stop_worker(worker, task)


async def test_an_event_for_a_bus_that_does_not_exist_is_dead_lettered(bootstrap_servers):
    worker, task, port = await start(bootstrap_servers)
    try:
        events = client(port)
        gone = unique("gone")
        await call(events, "put_rule", Name="to-nowhere", EventPattern='{"source": ["shop"]}')
        await call(events, "put_targets", Rule="to-nowhere",
                   Targets=[{"Id": "gone", "Arn": f"arn:aws:events:us-east-1:123456789012:event-bus/{gone}"}])
        await wait_for(lambda: "to-nowhere/gone" in worker.targets, message="the rule to apply")
        await call(events, "put_events", Entries=[entry("shop", 1)])
        [dead] = await read_all(bootstrap_servers, worker.config.dead_letter.topic, expect=1)
        why = headers_of(dead)
        assert why["eventweir-error"] == "EventBusNotFound" and f"Event bus {gone} does not exist" in \
            why["eventweir-message"]
    finally:
        await stop_worker(worker, task)


def unmatched_count(bus: str) -> float:
    return REGISTRY.get_sample_value("eventweir_unmatched_events_total", {"bus": bus}) or 0.0


async def test_each_bus_sends_the_events_no_rule_matched_to_its_unmatched_topic(bootstrap_servers):
    main, dlq, group, out = unique("main"), unique("dlq"), unique("g"), unique("out")
    other, quiet = unique("other"), unique("quiet")
    main_unmatched, other_unmatched = unique("unmatched-main"), unique("unmatched-other")
    await create_topics(bootstrap_servers, main, dlq, out, main_unmatched, other_unmatched)
    rules = [
        {"name": "shop", "EventPattern": {"source": ["shop"]}, "targets": [{"id": "k", "type": "kafka", "topic": out}]},
        {"name": "off", "state": "DISABLED", "targets": [{"id": "k", "type": "kafka", "topic": out}]},
        {"name": "other-shop", "EventBusName": other, "EventPattern": {"source": ["shop"]},
         "targets": [{"id": "k", "type": "kafka", "topic": out}]},
    ]
    config = config_for(bootstrap_servers, main, dlq, group, rules, sources=[{"topic": main, "kind": "envelope"}],
                        bus={"unmatched_topic": main_unmatched},
                        buses=[{"name": other, "unmatched_topic": other_unmatched}, {"name": quiet}])
    before = unmatched_count("default"), unmatched_count(other)
    worker, task, _ = await start_worker(config)
    try:
        await produce(bootstrap_servers, main, [envelope("shop", 1), envelope("other", 2), envelope("other", 3)])
        await produce(bootstrap_servers, f"eventweir.bus.{other}", [envelope("shop", 4), envelope("nope", 5)])
        await produce(bootstrap_servers, f"eventweir.bus.{quiet}", [envelope("nope", 6)])  # no unmatched topic

        assert n_of(await read_all(bootstrap_servers, main_unmatched, expect=2)) == [2, 3]
        assert n_of(await read_all(bootstrap_servers, other_unmatched, expect=1)) == [5]
        assert n_of(await read_all(bootstrap_servers, out, expect=2)) == [1, 4]
        await wait_for(lambda: worker.stats.consumed == 6, message="every event to be routed")
        assert n_of(await read_all(bootstrap_servers, main_unmatched, idle=0.5)) == [2, 3]
        assert n_of(await read_all(bootstrap_servers, other_unmatched, idle=0.2)) == [5]
        assert (unmatched_count("default") - before[0], unmatched_count(other) - before[1]) == (2, 1)
        assert REGISTRY.get_sample_value("eventweir_rule_matches_total", {"rule": "unmatched:default"}) is None
    finally:
        await stop_worker(worker, task)


async def test_the_lakes_object_created_events_count_hops_so_a_rule_archiving_them_stops(bootstrap_servers, tmp_path):
    # a rule that archives every event of the bus, whose lake announces each object on that bus:
    # each announcement is archived, and announced, again; the hop count ends it
    bus, dlq, group = unique("bus"), unique("dlq"), unique("g")
    await create_topics(bootstrap_servers, bus, dlq)
    rules = [{"name": "archive", "targets": [{"id": "lake", "type": "s3", "url": f"file://{tmp_path}",
                                              "flush_size": 1, "flush_interval_s": None}]}]
    config = config_for(bootstrap_servers, bus, dlq, group, rules, sources=[{"topic": bus, "kind": "envelope"}],
                        bus={"topic": bus}, routing={"max_hops": 2})
    worker, task, _ = await start_worker(config)
    try:
        await produce(bootstrap_servers, bus, [envelope("shop", 1)])
        [dead] = await read_all(bootstrap_servers, dlq, expect=1)
        why = headers_of(dead)
        assert (why["eventweir-stage"], why["eventweir-error"]) == ("publish", "MaxHopsExceeded")
        assert "republished to a bus 2 times, and routing.max_hops is 2" in why["eventweir-message"]
        assert json.loads(dead.value)["detail-type"] == "Object Created"
        on_bus = await read_all(bootstrap_servers, bus, idle=1.0)
        assert sorted((hops(r), json.loads(r.value)["detail-type"]) for r in on_bus) == \
            [(0, "test"), (1, "Object Created"), (2, "Object Created")]
        assert why["eventweir-source-topic"] == bus  # the records whose object it announced
    finally:
        await stop_worker(worker, task)
