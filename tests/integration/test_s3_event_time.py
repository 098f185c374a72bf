"""The s3 target's event_time mode against the suite's S3 endpoint: objects named by key and event-time window,
written once the watermark passes the window + allowed lateness; duplicates and replays land in the same names;
late records under the late prefix."""
from __future__ import annotations

import asyncio
import time

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
    def __init__(self, max_in_flight=10_000):
        self.max_in_flight, self.dead_letters = max_in_flight, DeadLetterRecorder()


async def run(s: S3Settings, events, first_offset=0, max_in_flight=10_000):
    context = Context(max_in_flight)
    target = build(context, "lake", s)
    created = []
    target.on_object = lambda event, hops: created.append(event)
    await target.start()
    batch, ticket = items(events, first_offset)
    for item in batch:  # one at a time, as batches would come
        target.submit([item])
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


async def test_a_replay_that_finds_its_window_written_with_other_records_writes_them_late(s3_endpoint):
    # Before a crash, the window 11:06 of ES was written with seq 1, then seq 2 came late (its late
    # object not yet written when the worker died). The replay starts after the record that had moved the
    # watermark: the watermark starts lower, and seq 2 now falls in its window, whose object exists.
    bucket = new_bucket(s3_endpoint)
    s = settings(s3_endpoint, bucket)
    await run(s, [(b"ES", tick("ES", 1, T0 + 5_000)), (b"NQ", tick("NQ", 1, T0 + 2 * MINUTE))])
    _, ticket, _, dead = await run(s, [(b"ES", tick("ES", 2, T0 + 20_000)), (b"ZZ", tick("ZZ", 1, T0 + 5 * MINUTE))],
                                   first_offset=2)
    objects = lake_objects(s3_endpoint, bucket)
    window = "ticks/dt=2026-11-18/ES/20261118T110600Z+ticks+0.jsonl.gz"
    late = "late/ticks/dt=2026-11-18/ES/20261118T110600Z+ticks+0+00000000000000000002.jsonl.gz"
    assert [r["detail"]["seq"] for r in jsonl(objects[window], window)] == [1]  # the object stays as written
    assert [r["detail"]["seq"] for r in jsonl(objects[late], late)] == [2]  # seq 2 is not lost
    assert ticket.pending == 1 and not dead.failures


async def test_open_windows_holding_most_of_max_in_flight_are_written_early_and_later_records_go_late(s3_endpoint):
    # 8 deliveries in flight pause the partition; open windows may hold 6: the 7th writes the first window early
    bucket = new_bucket(s3_endpoint)
    events = [(f"K{i}".encode(), tick(f"K{i}", 1, T0 + i)) for i in range(7)] + [(b"K0", tick("K0", 2, T0 + 10))]
    _, ticket, _, dead = await run(settings(s3_endpoint, bucket), events, max_in_flight=8)
    assert names(lake_objects(s3_endpoint, bucket)) == [
        "late/ticks/dt=2026-11-18/K0/20261118T110600Z+ticks+0+00000000000000000007.jsonl.gz",
        "ticks/dt=2026-11-18/K0/20261118T110600Z+ticks+0.jsonl.gz"]
    assert ticket.pending == 6 and not dead.failures


async def test_partition_by_arrival_time_closes_windows_on_the_clock(s3_endpoint):
    bucket = new_bucket(s3_endpoint)
    s = settings(s3_endpoint, bucket, window="1s", allowed_lateness=0, timestamp="arrival")
    context = Context()
    target = build(context, "lake", s)
    await target.start()
    days = {time.strftime("%Y-%m-%d", time.gmtime())}
    batch, ticket = items([(b"ES", tick("ES", 1, T0)), (b"ES", tick("ES", 2, T0))])
    target.submit(batch)
    ticket.release()
    deadline = asyncio.get_running_loop().time() + 10
    while ticket.pending and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    await target.close()
    days.add(time.strftime("%Y-%m-%d", time.gmtime()))
    (name,) = lake_objects(s3_endpoint, bucket)
    assert ticket.pending == 0 and [r["detail"]["seq"] for r in jsonl(lake_objects(s3_endpoint, bucket)[name], name)] \
        == [1, 2]
    assert name.split("/")[1] in {f"dt={day}" for day in days}  # the day it arrived, not the event's 2026-11-18


async def test_duckdb_reads_event_time_objects_through_the_view_lake_ddl_prints(tmp_path):
    import duckdb

    from streams.targets.s3.ddl import create_table

    s = S3Settings.model_validate({"url": f"file://{tmp_path}", "prefix": "ticks/dt=!{timestamp:yyyy-MM-dd}/",
                                   "flush_interval_s": None, "event_time": {"window": "1m"}})
    events = [(f"K{i % 3}".encode(), tick(f"K{i % 3}", i, T0 + i * 1_000)) for i in range(9)]
    await run(s, events + [(b"Z", tick("Z", 0, T0 + 5 * MINUTE))])
    con = duckdb.connect()
    for statement in create_table(s, "ticks", "duckdb").split(";\n"):
        if statement.strip():
            con.execute(statement)
    assert con.execute("SELECT count(*) FROM eventweir.ticks").fetchone() == (9,)


async def test_records_it_cannot_write_are_dead_lettered_and_the_rest_written(s3_endpoint):
    bucket = new_bucket(s3_endpoint)
    s = settings(s3_endpoint, bucket, kafka_fields=["headers"], timestamp="kafka")
    context = Context()
    target = build(context, "lake", s)
    await target.start()
    good, ticket = items([(b"ES", tick("ES", 1, T0)), (b"ES", tick("ES", 2, T0)), (b"NQ", tick("NQ", 1, T0 + 5 * MINUTE))])
    (delivery, _), bad_ticket = good[1], ticket
    good[1] = (Delivery("lake", delivery.record, b"[1, 2]"), bad_ticket)  # not an object: nowhere to put `kafka`
    record = good[0][0].record
    good[0] = (Delivery("lake", SourceRecord(record.topic, 0, 0, T0, b"ES", None, (("h", None),)), good[0][0].payload),
               ticket)  # a header without a value
    target.submit(good)
    ticket.release()
    assert await target.flush(20)
    await target.close()
    assert context.dead_letters.errors == {1: "InvalidPayload"}
    (name,) = lake_objects(s3_endpoint, bucket)
    assert [r["kafka"] for r in jsonl(lake_objects(s3_endpoint, bucket)[name], name)] == [{"headers": {"h": None}}]


def test_the_event_time_mode_is_configured_on_an_s3_target():
    config = parse_config({"sources": [{"topic": "t"}], "rules": [{"name": "lake", "targets": [{
        "id": "l", "type": "s3", "bucket": "b", "event_time": {"window": "1m", "allowed_lateness": "20m",
                                                               "kafka_fields": ["key", "offset"]}}]}]}, environ={})
    check_targets(config)
    bad = {"sources": [{"topic": "t"}], "rules": [{"name": "lake", "targets": [{
        "id": "l", "type": "s3", "bucket": "b", "event_time": {"window": "1m", "kafka_fields": ["partitions"]}}]}]}
    with pytest.raises(ConfigError, match=r"rules\[lake\]\.targets\[l\]\.event_time\.kafka_fields"):
        check_targets(parse_config(bad, environ={}))
