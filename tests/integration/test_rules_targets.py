"""Rules and targets on the real broker, with real HTTP endpoints: fan-out, retries and dead
letters per target, redrive, and no loss across a worker restart."""
from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.cli import main as cli_main
from streams.config import parse_config
from streams.runtime.worker import Worker
from streams.service import run_worker
from tests.integration.http_endpoint import Endpoint
from tests.integration.kafka_helpers import committed_offsets, create_topics, produce, read_all, unique, wait_for

pytestmark = pytest.mark.broker


def config_for(bootstrap, source, dlq, group, rules, **extra):
    data = {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": group},
        "consumer": {"commit_interval_ms": 100, "fetch_timeout_ms": 50},
        "http": {"host": "127.0.0.1", "port": 0},
        "dead_letter": {"topic": dlq},
        "sources": [{"topic": source}],
        "rules": rules,
    }
    # the test endpoints listen on loopback, which http targets may only call when listed
    routing = {"retry_base_delay_ms": 5, "retry_max_delay_ms": 20, "http_allow_networks": ["127.0.0.0/8"]}
    data["routing"] = {**routing, **extra.pop("routing", {})}
    data.update(extra)
    return parse_config(data, environ={})


async def start_worker(config) -> tuple[Worker, asyncio.Task, dict]:
    worker = Worker(config)
    info: dict = {}
    task = asyncio.create_task(run_worker(config, worker, on_started=lambda w, port: info.update(port=port)))
    await wait_for(lambda: worker.joined or task.done(), message="the worker to join its group")
    if task.done():
        task.result()
    return worker, task, info


async def stop_worker(worker, task):
    worker.request_stop()
    assert await asyncio.wait_for(task, 30) == 0


def headers_of(record) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


async def test_one_event_fans_out_to_five_targets_each_in_partition_order(bootstrap_servers):
    src, dlq, out_a, out_b, group = unique("in"), unique("dlq"), unique("a"), unique("b"), unique("g")
    await create_topics(bootstrap_servers, src, dlq, out_a, out_b)
    n = 60
    async with Endpoint() as h1, Endpoint() as h2, Endpoint(delay=0.005) as h3:
        rules = [{"name": "fan", "EventPattern": {"kind": ["order"]}, "targets": [
            {"id": "k1", "type": "kafka", "topic": out_a},
            {"id": "k2", "type": "kafka", "topic": out_b, "InputPath": "$.n"},
            {"id": "h1", "type": "http", "url": h1.url},
            {"id": "h2", "type": "http", "url": h2.url, "Input": '{"constant": true}'},
            {"id": "h3", "type": "http", "url": h3.url, "auth": {"type": "api_key", "name": "X-Key", "value": "s3cret"}},
        ]}]
        worker, task, _ = await start_worker(config_for(bootstrap_servers, src, dlq, group, rules))
        events = [{"kind": "order" if i % 4 else "noise", "n": i, "device": f"d{i % 5}"} for i in range(n)]
        await produce(bootstrap_servers, src, events, keys=[f"d{i % 5}".encode() for i in range(n)])
        matching = [e["n"] for e in events if e["kind"] == "order"]
        await wait_for(lambda: len(h3.received) >= len(matching), message="the slow endpoint to get every event")
        got_a = await read_all(bootstrap_servers, out_a, expect=len(matching))
        got_b = await read_all(bootstrap_servers, out_b, expect=len(matching))
        await wait_for(lambda: sum(worker.stats.committed.values()) == n, message="every offset committed")
        await stop_worker(worker, task)

    assert sorted(orjson.loads(m.value)["n"] for m in got_a) == matching
    assert sorted(orjson.loads(m.value) for m in got_b) == matching  # InputPath delivered the number alone
    assert sorted(e["n"] for e in h1.received) == matching
    assert h2.received == [{"constant": True}] * len(matching)
    assert sorted(e["n"] for e in h3.received) == matching
    assert all(h.get("X-Key") == "s3cret" for h in h3.headers)
    # one key lives on one partition, and each target keeps each partition's order
    for endpoint in (h1, h3):
        by_device: dict[str, list[int]] = {}
        for e in endpoint.received:
            by_device.setdefault(e["device"], []).append(e["n"])
        assert all(ns == sorted(ns) for ns in by_device.values())
    assert worker.stats.matched == {"fan": len(matching)}
    assert await read_all(bootstrap_servers, dlq, idle=0.5) == []


async def test_failing_targets_are_retried_then_dead_lettered_while_others_deliver(bootstrap_servers):
    src, dlq, own_dlq, group = unique("in"), unique("dlq"), unique("dlq-bad"), unique("g")
    await create_topics(bootstrap_servers, src, dlq, own_dlq)
    n = 20
    async with Endpoint() as good, Endpoint(status=503) as down, Endpoint(status=400) as rejects, \
            Endpoint(throttle_first=5) as throttles:
        rules = [{"name": "orders", "targets": [
            {"id": "good", "type": "http", "url": good.url},
            {"id": "down", "type": "http", "url": down.url, "dead_letter_topic": own_dlq,
             "RetryPolicy": {"MaximumRetryAttempts": 2}},
            {"id": "rejects", "type": "http", "url": rejects.url},
            {"id": "throttles", "type": "http", "url": throttles.url, "concurrency": 1},
        ]}]
        worker, task, _ = await start_worker(config_for(bootstrap_servers, src, dlq, group, rules))
        await produce(bootstrap_servers, src, [{"n": i} for i in range(n)])
        own = await read_all(bootstrap_servers, own_dlq, expect=n)
        shared = await read_all(bootstrap_servers, dlq, expect=n)
        await wait_for(lambda: len(good.received) == n and len(throttles.received) == n, message="deliveries")
        await wait_for(lambda: sum(worker.stats.committed.values()) == n, message="every offset committed")
        await stop_worker(worker, task)

    assert sorted(e["n"] for e in good.received) == list(range(n))
    # 429 is retryable: every event got through in the end, after the throttled attempts
    assert sorted(e["n"] for e in throttles.received) == list(range(n))
    assert throttles.requests == n + 5
    # 503 is retryable: 1 attempt + MaximumRetryAttempts 2, then this target's own dead-letter topic
    assert down.requests == 3 * n
    assert sorted(orjson.loads(m.value)["n"] for m in own) == list(range(n))
    h = headers_of(own[0])
    assert h["eventweir-rule"] == "orders" and h["eventweir-target"] == "orders/down"
    assert h["eventweir-error"] == "HttpStatus503" and "returned 503" in h["eventweir-message"]
    assert h["eventweir-attempts"] == "3" and h["eventweir-exhausted"] == "MaximumRetryAttempts"
    assert h["eventweir-source-topic"] == src and h["eventweir-stage"] == "deliver"
    # 400 is not retryable: one attempt, then the worker's dead-letter topic
    assert rejects.requests == n
    assert sorted(orjson.loads(m.value)["n"] for m in shared) == list(range(n))
    h = headers_of(shared[0])
    assert h["eventweir-target"] == "orders/rejects" and h["eventweir-error"] == "HttpStatus400"
    assert h["eventweir-attempts"] == "1" and "eventweir-exhausted" not in h
    assert sum((await committed_offsets(bootstrap_servers, group, src)).values()) == n
    # per-target metrics tell the same story
    from prometheus_client import REGISTRY

    def deliveries(target, outcome):
        return REGISTRY.get_sample_value("eventweir_target_deliveries_total",
                                         {"target": f"orders/{target}", "outcome": outcome}) or 0

    assert (deliveries("down", "retried"), deliveries("down", "dead_lettered")) == (2 * n, n)
    assert (deliveries("rejects", "retried"), deliveries("rejects", "dead_lettered")) == (0, n)
    assert (deliveries("throttles", "retried"), deliveries("throttles", "delivered")) == (5, n)
    assert deliveries("good", "delivered") == n
    assert REGISTRY.get_sample_value("eventweir_delivery_latency_seconds_count", {"target": "orders/good"}) >= 1


async def test_dead_letters_redriven_after_the_fix_are_delivered(bootstrap_servers):
    src, dlq, group = unique("in"), unique("dlq"), unique("g")
    await create_topics(bootstrap_servers, src, dlq)
    n = 15
    async with Endpoint(status=404) as endpoint:
        rules = [{"name": "hook", "targets": [{"id": "web", "type": "http", "url": endpoint.url}]},
                 {"name": "other", "EventPattern": {"never": ["x"]}, "targets": [{"id": "l", "type": "log"}]}]
        worker, task, _ = await start_worker(config_for(bootstrap_servers, src, dlq, group, rules))
        await produce(bootstrap_servers, src, [{"n": i} for i in range(n)], keys=[b"k"] * n)
        await read_all(bootstrap_servers, dlq, expect=n)
        assert endpoint.received == []
        endpoint.status = 200  # the endpoint is fixed
        # a filter that matches nothing sends nothing
        code = await asyncio.to_thread(cli_main, ["dlq", "redrive", "--topic", dlq, "--rule", "other",
                                                  "--bootstrap-servers", bootstrap_servers])
        assert code == 0
        code = await asyncio.to_thread(cli_main, ["dlq", "redrive", "--topic", dlq, "--rule", "hook", "--since", "1h",
                                                  "--bootstrap-servers", bootstrap_servers])
        assert code == 0
        await wait_for(lambda: len(endpoint.received) == n, message="the redriven events to arrive")
        await stop_worker(worker, task)
    # same key, same partition, same order as the first time
    assert [e["n"] for e in endpoint.received] == list(range(n))
    redriven = await read_all(bootstrap_servers, src, expect=2 * n)
    assert len(redriven) == 2 * n and all(m.key == b"k" for m in redriven)


async def test_nothing_is_lost_when_the_worker_restarts_mid_delivery(bootstrap_servers):
    src, dlq, group = unique("in"), unique("dlq"), unique("g")
    await create_topics(bootstrap_servers, src, dlq)
    n = 120
    async with Endpoint(delay=0.05) as endpoint:
        rules = [{"name": "hook", "targets": [{"id": "web", "type": "http", "url": endpoint.url, "concurrency": 1}]}]
        config = config_for(bootstrap_servers, src, dlq, group, rules, runtime={"shutdown_grace_s": 0.5})
        worker, task, _ = await start_worker(config)
        await produce(bootstrap_servers, src, [{"n": i} for i in range(n)])
        await wait_for(lambda: len(endpoint.received) >= 10, message="some deliveries")
        await stop_worker(worker, task)  # the grace period runs out with deliveries still in flight
        first = len(endpoint.received)
        assert first < n
        endpoint.delay = 0
        worker, task, _ = await start_worker(config)
        await wait_for(lambda: {e["n"] for e in endpoint.received} == set(range(n)), message="every event delivered")
        await wait_for(lambda: sum(worker.stats.committed.values()) == n, message="every offset committed")
        await stop_worker(worker, task)
    assert {e["n"] for e in endpoint.received} == set(range(n))
    assert sum((await committed_offsets(bootstrap_servers, group, src)).values()) == n


async def test_a_rule_change_swaps_targets_without_dropping_in_flight_deliveries(bootstrap_servers):
    from streams.config import RuleSettings

    src, dlq, control, group = unique("in"), unique("dlq"), unique("rules"), unique("g")
    await create_topics(bootstrap_servers, src, dlq)
    async with Endpoint(delay=0.03) as old, Endpoint() as new:
        config = config_for(bootstrap_servers, src, dlq, group, rules=[],
                            routing={"control_topic": control, "retry_base_delay_ms": 5})
        worker, task, _ = await start_worker(config)
        store = worker.control.store
        await store.put(RuleSettings.model_validate(
            {"name": "hook", "targets": [{"id": "web", "type": "http", "url": old.url, "concurrency": 1}]}))
        await wait_for(lambda: "hook/web" in worker.targets, message="the first rule set")
        first = 40
        await produce(bootstrap_servers, src, [{"n": i} for i in range(first)])
        await wait_for(lambda: worker.stats.consumed == first and 0 < len(old.received) < first,
                       message="deliveries in flight to the slow endpoint")
        retiring = worker.targets["hook/web"]
        await store.put(RuleSettings.model_validate(
            {"name": "hook", "targets": [{"id": "web", "type": "http", "url": new.url}]}))
        await wait_for(lambda: worker.targets["hook/web"] is not retiring, message="the swap")
        assert retiring.in_flight > 0  # the swap did not wait for, or drop, what the old target held
        await produce(bootstrap_servers, src, [{"n": i} for i in range(first, first + 10)])
        await wait_for(lambda: len(old.received) == first and len(new.received) == 10, message="both endpoints")
        await wait_for(lambda: sum(worker.stats.committed.values()) == first + 10, message="every offset committed")
        await stop_worker(worker, task)
    assert sorted(e["n"] for e in old.received) == list(range(first))
    assert sorted(e["n"] for e in new.received) == list(range(first, first + 10))


async def test_a_stored_rule_that_no_longer_builds_is_left_out_and_the_others_load(bootstrap_servers):
    # a rule an older version stored on the control topic (an input template placeholder missing
    # from InputPathsMap, refused since issue 21 item 11) used to fail every reload and the start
    from prometheus_client import REGISTRY

    from streams.config import RuleSettings
    from streams.runtime.reload import rule_to_json

    src, dlq, control, group = unique("in"), unique("dlq"), unique("rules"), unique("g")
    await create_topics(bootstrap_servers, src, dlq, control)
    stale = RuleSettings.model_validate({"name": "stale", "targets": [{"id": "web", "type": "log", "InputTransformer": {
        "InputPathsMap": {"a": "$.a"}, "InputTemplate": '{"a": <a>, "b": <b>}'}}]})
    good = RuleSettings.model_validate({"name": "good", "targets": [{"id": "out", "type": "log"}]})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
    await producer.start()
    try:
        for rule in (stale, good):
            await producer.send_and_wait(control, rule_to_json(rule), key=rule.name.encode())
    finally:
        await producer.stop()
    before = REGISTRY.get_sample_value("eventweir_control_rules_invalid_total") or 0
    config = config_for(bootstrap_servers, src, dlq, group, rules=[], routing={"control_topic": control})
    worker, task, _ = await start_worker(config)
    try:
        assert set(worker.targets) == {"good/out"}
        assert REGISTRY.get_sample_value("eventweir_control_rules_invalid_total") == before + 1
    finally:
        await stop_worker(worker, task)
