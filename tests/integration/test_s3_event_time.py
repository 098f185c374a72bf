"""The s3 target's event_time mode against the suite's S3 endpoint: objects named by key and event-time window,
written once the watermark passes the window + allowed lateness; duplicates and replays land in the same names;
late records under the late prefix."""
from __future__ import annotations

import orjson
import pytest

from processors.core import Delivery, SourceRecord
from streams.config import ConfigError, parse_config
from streams.runtime.offsets import Ticket
from streams.targets import check_targets
from streams.targets.s3.target import S3Settings, build
from tests.integration.sink_helpers import DeadLetterRecorder
from tests.integration.test_s3_sink import jsonl, lake_objects, new_bucket

T0 = 1_794_999_960_000  # 2026-11-18T11:06:00Z
MINUTE = 60_000


def tick(symbol: str, seq: int, at_ms: int) -> dict:
    return {"id": f"{symbol}-{seq}", "time": at_ms, "detail": {"symbol": symbol, "seq": seq}}


def items(events: list[tuple[bytes | None, dict]], first_offset: int = 0, partition: int = 0):
    ticket = Ticket(first_offset + len(events))
    out = []
    for i, (key, body) in enumerate(events):
        at = body["time"] if type(body["time"]) is int else T0
        record = SourceRecord("ticks", partition, first_offset + i, at + 5, key, None,
                              (("trace", b"t-%d" % i),))
        out.append((Delivery("lake", record, orjson.dumps(body)), ticket))
    return out, ticket


def settings(s3_endpoint, bucket, **event_time) -> S3Settings:
    return S3Settings.model_validate({
        "bucket": bucket, "endpoint_url": s3_endpoint, "region": "us-east-1",
        "prefix": "ticks/dt=!{timestamp:yyyy-MM-dd}/", "flush_interval_s": None,
        "event_time": {"window": "1m", "allowed_lateness": "30s", **event_time}})


class Context:
    def __init__(self):
        self.max_in_flight, self.dead_letters = 10_000, DeadLetterRecorder()


async def run(s: S3Settings, events, first_offset=0):
    context = Context()
    target = build(context, "lake", s)
    created = []
    target.on_object = created.append
    await target.start()
    batch, ticket = items(events, first_offset)
    target.submit(batch)
    ticket.release()
    assert await target.flush(20)
    await target.close()
    return target, ticket, created, context.dead_letters


def names(objects) -> list[str]:
    return sorted(objects)


async def test_objects_are_named_by_key_and_window_and_written_once_the_watermark_passes(s3_endpoint):
    bucket = new_bucket(s3_endpoint)
    events = [(b"ES", tick("ES", 1, T0 + 1_000)), (b"NQ", tick("NQ", 1, T0 + 2_000)),
              (b"ES", tick("ES", 2, T0 + 61_000)),  # the next minute
              (b"ES", tick("ES", 3, T0 + 30_000)),  # out of order, within its window: joins it
              (b"ES", tick("ES", 4, T0 + 2 * MINUTE + 10_000))]  # 11:08:10 passes 11:06 + 1m + 30 s: 11:06 closes
    s = settings(s3_endpoint, bucket, kafka_fields=["key", "headers", "topic", "partition", "offset", "timestamp"])
    target, ticket, created, dead = await run(s, events)
    objects = lake_objects(s3_endpoint, bucket)
    day = "ticks/dt=2026-11-18"
    assert names(objects) == [f"{day}/ES/20261118T110600Z+ticks+0.jsonl.gz", f"{day}/NQ/20261118T110600Z+ticks+0.jsonl.gz"]
    es = jsonl(objects[f"{day}/ES/20261118T110600Z+ticks+0.jsonl.gz"], "x.gz")
    assert [r["detail"]["seq"] for r in es] == [1, 3]
    assert es[1]["kafka"] == {"key": "ES", "headers": {"trace": "t-3"}, "topic": "ticks", "partition": 0, "offset": 3,
                              "timestamp": T0 + 30_005}
    assert {k: v for k, v in es[1].items() if k != "kafka"} == events[3][1]
    assert ticket.pending == 2 and not dead.failures  # 11:07 (seq 2) and 11:08 (seq 4) are open: their offsets wait
    assert [e["detail"]["object"]["key"] for e in created] and all(e["detail"]["record-count"] for e in created)


async def test_a_duplicate_delivery_and_a_replay_land_in_the_same_object_name(s3_endpoint):
    bucket = new_bucket(s3_endpoint)
    first = tick("ES", 7, T0 + 5_000)
    events = [(b"ES", first), (b"ES", tick("ES", 8, T0 + 9_000)), (b"ES", first),  # delivered twice upstream
              (b"NQ", tick("NQ", 1, T0 + 5 * MINUTE))]  # closes 11:06
    s = settings(s3_endpoint, bucket)
    _, ticket, _, _ = await run(s, events)
    objects = lake_objects(s3_endpoint, bucket)
    name = "ticks/dt=2026-11-18/ES/20261118T110600Z+ticks+0.jsonl.gz"
    assert names(objects) == [name]
    assert [r["id"] for r in jsonl(objects[name], name)] == ["ES-7", "ES-8"]  # the duplicate is written once
    assert ticket.pending == 1  # NQ's open window

    # a replay of the same input (a crash before the commit): the same object name, found written, not rewritten
    replayed, ticket, created, dead = await run(s, events)
    assert lake_objects(s3_endpoint, bucket) == objects
    assert ticket.pending == 1 and not dead.failures and [e["detail"]["object"]["key"] for e in created] == [name]


async def test_a_record_past_the_allowed_lateness_is_written_under_the_late_prefix(s3_endpoint):
    bucket = new_bucket(s3_endpoint)
    events = [(b"ES", tick("ES", 1, T0 + 1_000)), (b"ES", tick("ES", 3, T0 + 95_000)),  # 11:07:35: 11:06 closes
              (b"ES", tick("ES", 2, T0 + 20_000))]  # for 11:06, already written: late
    s = settings(s3_endpoint, bucket, late_prefix="late")
    _, ticket, _, dead = await run(s, events)
    objects = lake_objects(s3_endpoint, bucket)
    late = "late/ticks/dt=2026-11-18/ES/20261118T110600Z+ticks+0+00000000000000000002.jsonl.gz"
    assert names(objects) == [late, "ticks/dt=2026-11-18/ES/20261118T110600Z+ticks+0.jsonl.gz"]
    assert [r["detail"]["seq"] for r in jsonl(objects[late], late)] == [2]  # never lost
    assert ticket.pending == 1 and not dead.failures  # ES 11:08 is open


async def test_partition_by_kafka_timestamp_and_a_key_field(s3_endpoint):
    bucket = new_bucket(s3_endpoint)
    events = [(None, {**tick("ES", 1, T0), "time": "not a time"}), (None, tick("NQ", 2, T0 + 3 * MINUTE))]
    s = settings(s3_endpoint, bucket, timestamp="kafka", key="$.detail.symbol")
    _, ticket, _, _ = await run(s, events)
    # the Kafka timestamp (time + 5 ms in items()) picks the window; the symbol names the object
    assert names(lake_objects(s3_endpoint, bucket)) == ["ticks/dt=2026-11-18/ES/20261118T110600Z+ticks+0.jsonl.gz"]
    assert ticket.pending == 1


def test_the_event_time_mode_is_configured_on_an_s3_target():
    config = parse_config({"sources": [{"topic": "t"}], "rules": [{"name": "lake", "targets": [{
        "id": "l", "type": "s3", "bucket": "b", "event_time": {"window": "1m", "allowed_lateness": "20m",
                                                               "kafka_fields": ["key", "offset"]}}]}]}, environ={})
    check_targets(config)
    bad = {"sources": [{"topic": "t"}], "rules": [{"name": "lake", "targets": [{
        "id": "l", "type": "s3", "bucket": "b", "event_time": {"window": "1m", "kafka_fields": ["partitions"]}}]}]}
    with pytest.raises(ConfigError, match=r"rules\[lake\]\.targets\[l\]\.event_time\.kafka_fields"):
        check_targets(parse_config(bad, environ={}))
