"""Enrichment configured in YAML, on the real broker: a reference table joined from a compacted
topic, IoT alerts, and sessions that continue across a worker restart (state changelog)."""
from __future__ import annotations

import asyncio

import orjson
import pytest

from streams.config import ConfigError, parse_config
from streams.devtools.generator import iso_ms
from streams.runtime.topology import build_pipeline
from streams.runtime.worker import Worker
from tests.integration.kafka_helpers import create_topics, produce, read_all, unique, wait_for

pytestmark = pytest.mark.broker
BASE_MS = 1732530000000


def config(bootstrap, source: dict, out, dlq, group, **extra):
    return parse_config({
        "kafka": {"bootstrap_servers": bootstrap, "group_id": group},
        "consumer": {"commit_interval_ms": 100, "fetch_timeout_ms": 50},
        "dead_letter": {"topic": dlq},
        "sources": [source],
        "rules": [{"name": "all", "targets": [{"id": "out", "type": "kafka", "topic": out}]}],
        **extra,
    }, environ={})


async def run_until(worker: Worker, done, message: str) -> None:
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(done, timeout=60, interval=0.2, message=message)
    finally:
        worker.request_stop()
        await task


def iot(device: str, ts: int, temperature: float) -> bytes:
    return orjson.dumps({"device_id": device, "thing_type": "EnvSensorV2", "timestamp": ts, "seq": ts - BASE_MS,
                         "measurements": {"temperature": {"value": temperature, "unit": "C"}, "humidity": 50}})


async def test_join_from_a_compacted_table_topic_and_threshold_alerts(bootstrap_servers):
    src, out, dlq, registry = unique("iot"), unique("out"), unique("dlq"), unique("registry")
    await create_topics(bootstrap_servers, src, out, dlq, registry, partitions=1)
    # the table topic as a CDC feed would fill it: a plain row, a Debezium row, a row later deleted
    await produce(bootstrap_servers, registry, [
        {"site": "greenhouse-1", "owner": "ops"},
        {"op": "c", "source": {"table": "devices"}, "before": None, "after": {"site": "greenhouse-2", "owner": "lab"}},
        {"site": "gone", "owner": "nobody"},
        None,
    ], keys=[b"sensor-1", b'{"id": "sensor-2"}', b"sensor-3", b"sensor-3"])
    await produce(bootstrap_servers, src, [iot("sensor-1", BASE_MS, 21.0), iot("sensor-2", BASE_MS + 1, 39.5),
                                           iot("sensor-3", BASE_MS + 2, 22.0)])
    cfg = config(bootstrap_servers, {"topic": src, "kind": "iot", "enrich": [
        {"type": "join", "table": "devices", "key": "detail.device_id", "fields": ["site"], "into": "detail.device"},
        {"type": "units"},  # readings as numbers in canonical units, which alerts compare
        {"type": "alerts", "rules": [{"name": "hot", "measurement": "temperature", "op": ">", "value": 37.5}]},
    ]}, out, dlq, unique("g"), tables={"devices": {"topic": registry}})

    async def outputs():
        return [orjson.loads(m.value) for m in await read_all(bootstrap_servers, out, idle=0.3, timeout=5)]
    await run_until(Worker(cfg), lambda: _count(outputs, 4), "3 readings and 1 alert")

    events = await outputs()
    readings = {e["detail"]["device_id"]: e for e in events if e["detail-type"] == "IoT Telemetry"}
    assert readings["sensor-1"]["detail"]["device"] == {"site": "greenhouse-1"}
    assert readings["sensor-2"]["detail"]["device"] == {"site": "greenhouse-2"}, "a Debezium row's `after` is the row"
    assert "device" not in readings["sensor-3"]["detail"], "a tombstone removed the row: on_missing pass"
    [alert] = [e for e in events if e["detail-type"] != "IoT Telemetry"]
    assert alert["detail"]["device_id"] == "sensor-2"


async def _count(outputs, n: int) -> bool:
    return len(await outputs()) >= n


def click(user: str, ts: int, n: int) -> bytes:
    return orjson.dumps({"event_id": f"evt-{n}", "event_name": "page_view", "anonymous_id": f"anon-{user}",
                         "user_id": user, "platform": "web", "timestamp": iso_ms(ts),
                         "page": {"url": "https://shop.example.com/", "path": "/"}, "properties": {},
                         "user_agent": "Mozilla/5.0", "ip": "203.0.113.9"})


async def test_sessions_continue_across_a_worker_restart(bootstrap_servers):
    src, out, dlq, group = unique("clicks"), unique("out"), unique("dlq"), unique("g")
    await create_topics(bootstrap_servers, src, out, dlq, partitions=2)
    cfg = config(bootstrap_servers, {"topic": src, "kind": "clickstream", "enrich": [
        {"type": "sessions", "gap_minutes": 30}]}, out, dlq, group)

    async def pages():
        return [e for e in (orjson.loads(m.value) for m in await read_all(bootstrap_servers, out, idle=0.3, timeout=5))
                if "session" in e["detail"]]

    from streams import metrics

    written = metrics.STATE_CHANGES.labels("sessions", "written")
    before = written._value.get()
    await produce(bootstrap_servers, src, [click("ann", BASE_MS + i * 1000, i) for i in range(3)], keys=[b"ann"] * 3)
    await run_until(Worker(cfg), lambda: _count(pages, 3), "the first three page views")
    assert written._value.get() > before, "the session's changes were written to its changelog"
    # a new worker process (same group): the session state comes back from its changelog topic
    await produce(bootstrap_servers, src, [click("ann", BASE_MS + (3 + i) * 1000, 3 + i) for i in range(2)],
                  keys=[b"ann"] * 2)
    await run_until(Worker(cfg), lambda: _count(pages, 5), "two more page views after the restart")

    sessions = [e["detail"]["session"] for e in await pages()]
    assert [s["sequence"] for s in sessions] == [1, 2, 3, 4, 5]
    assert len({s["id"] for s in sessions}) == 1, "the same session continues after the restart"


def test_enrichment_config_errors_name_the_entry():
    base = {"kafka": {"bootstrap_servers": "x:9092", "group_id": "g"}, "dead_letter": {"topic": "d"}}
    with pytest.raises(ConfigError, match=r"sources\[0\]\.enrich\[0\] \(join\): table: expected the name of a table"):
        build_pipeline(parse_config({**base, "sources": [{"topic": "t", "kind": "iot", "enrich": [
            {"type": "join", "table": "nope", "key": "detail.device_id"}]}]}, environ={}))
    # a stage's keys are checked when the config is parsed, each named by its path
    with pytest.raises(ConfigError) as err:
        parse_config({**base, "sources": [{"topic": "t", "kind": "clickstream", "enrich": [
            {"type": "user_agent"}, {"type": "sessions", "gap": 5}, {"type": "order_check", "window": "lots"}]}]},
            environ={})
    assert str(err.value).splitlines() == [
        "sources[0].enrich[1].gap: unknown key (check the spelling; see the configuration reference in README.md)",
        "sources[0].enrich[2].window: Input should be a valid integer, unable to parse string as an integer, "
        "got 'lots'"]
    with pytest.raises(ConfigError, match=r"sources\.0\.enrich\.0\.type|sources\[0\]\.enrich\[0\]\.type"):
        parse_config({**base, "sources": [{"topic": "t", "enrich": [{"type": "teleport"}]}]}, environ={})


async def test_a_configured_http_lookup_enriches_on_the_worker(bootstrap_servers):
    from tests.integration.http_endpoint import LookupService

    src, out, dlq = unique("clicks"), unique("out"), unique("dlq")
    await create_topics(bootstrap_servers, src, out, dlq, partitions=1)
    await produce(bootstrap_servers, src, [click(user, BASE_MS + i, i) for i, user in enumerate(["ann", "bob", "ann"])])
    async with LookupService({"ann": {"tier": "gold", "secret": "x"}}) as profiles:
        cfg = config(bootstrap_servers, {"topic": src, "kind": "clickstream", "enrich": [
            {"type": "lookup", "name": "profiles", "url": profiles.url, "key": "detail.user_id", "fields": ["tier"]},
        ]}, out, dlq, unique("g"))

        async def outputs():
            return [orjson.loads(m.value) for m in await read_all(bootstrap_servers, out, idle=0.3, timeout=5)]
        await run_until(Worker(cfg), lambda: _count(outputs, 3), "three enriched page views")
        assert profiles.requests == {"ann": 1, "bob": 1}, "one request per key: the second ann is a cache hit"

    looked_up = [e["detail"].get("profiles") for e in await outputs()]
    assert looked_up == [{"tier": "gold"}, None, {"tier": "gold"}], "bob is unknown (404): on_missing pass"
