"""The s3 target against a real S3 API (moto server) and a local file:// lake."""
from __future__ import annotations

import gzip
import io
import os
import time
import uuid

import boto3
import orjson
import pyarrow.parquet as pq
import pytest

from streams.config import ConfigError, parse_config
from streams.targets import check_targets
from streams.targets.s3.target import S3Settings, S3Target
from tests.integration.sink_helpers import DeadLetterRecorder, deliveries


def s3_client(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def new_bucket(endpoint) -> str:
    name = f"lake-{uuid.uuid4().hex[:10]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return name


def lake_objects(endpoint, bucket, prefix="") -> dict[str, bytes]:
    client = s3_client(endpoint)
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if not obj["Key"].startswith("_eventweir/"):
                out[obj["Key"]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def jsonl(body: bytes, key: str) -> list[dict]:
    if key.endswith(".gz"):
        body = gzip.decompress(body)
    elif key.endswith(".zst"):
        import zstandard

        body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
    return [orjson.loads(line) for line in body.splitlines() if line]


def event(n: int, source: str | None = "iot", hour: int = 13) -> dict:
    e = {"id": str(n), "time": f"2026-11-22T{hour:02d}:05:00Z", "detail": {"n": n, "device_id": f"d/{n % 2}"}}
    if source is not None:
        e["source"] = source
    return e


async def run_target(settings: S3Settings, events, **kw):
    dead = DeadLetterRecorder()
    created = []
    target = S3Target("lake-rule/lake", settings, 10_000, dead, on_object=lambda event, hops: created.append(event))
    await target.start()
    items, ticket = deliveries("lake-rule/lake", events, **kw)
    target.submit(items)
    ticket.release()
    assert await target.flush(20)
    await target.close()
    return dead, created, ticket


async def test_layout_keys_error_prefix_and_jsonl_content(s3_endpoint):
    bucket = new_bucket(s3_endpoint)
    events = [event(i, "iot" if i % 3 else "web") for i in range(10)]
    events[4] = event(4, source=None)  # no `source`: goes to the error prefix, not dropped
    settings = S3Settings(bucket=bucket, endpoint_url=s3_endpoint, region="us-east-1", flush_size=4,
                          flush_interval_s=None, timezone="Europe/Paris")
    dead, created, ticket = await run_target(settings, events)

    objects = lake_objects(s3_endpoint, bucket)
    hive = "year=2026/month=11/day=22/hour=14"  # 13:05Z is 14:05 in Paris
    # segments [0..3] [4..7] [8..9]; one object per prefix per segment, keyed by its first offset
    assert sorted(objects) == sorted([
        f"source=web/{hive}/t+0+00000000000000000000.jsonl.gz",
        f"source=iot/{hive}/t+0+00000000000000000001.jsonl.gz",
        "errors/MissingPartitionField/2025/11/24/t+0+00000000000000000004.jsonl.gz",
        f"source=iot/{hive}/t+0+00000000000000000005.jsonl.gz",
        f"source=web/{hive}/t+0+00000000000000000006.jsonl.gz",
        f"source=iot/{hive}/t+0+00000000000000000008.jsonl.gz",
        f"source=web/{hive}/t+0+00000000000000000009.jsonl.gz",
    ])
    got = sorted((r for key, body in objects.items() for r in jsonl(body, key)), key=lambda r: r["detail"]["n"])
    assert got == events
    assert ticket.pending == 0 and not dead.failures
    head = s3_client(s3_endpoint).head_object(Bucket=bucket, Key=f"source=iot/{hive}/t+0+00000000000000000001.jsonl.gz")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"]["eventweir-segment-start"] == "0" and head["Metadata"]["eventweir-segment-end"] == "3"
    # one "Object Created" event per object, with its size, record count and offsets
    assert sorted(e["detail"]["object"]["key"] for e in created) == sorted(objects)
    by_key = {e["detail"]["object"]["key"]: e for e in created}
    first = by_key[f"source=iot/{hive}/t+0+00000000000000000001.jsonl.gz"]
    assert first["detail-type"] == "Object Created" and first["detail"]["bucket"]["name"] == bucket
    assert first["detail"]["record-count"] == 2  # offsets 1 and 2 are iot, 3 is web
    assert first["detail"]["offsets"] == {"topic": "t", "partition": 0, "first": 1, "last": 2}
    assert first["detail"]["object"]["size"] == len(objects[f"source=iot/{hive}/t+0+00000000000000000001.jsonl.gz"])


async def test_firehose_timestamp_and_field_template_with_zstd(s3_endpoint):
    bucket = new_bucket(s3_endpoint)
    events = [event(i, hour=23) for i in range(6)]
    settings = S3Settings(bucket=bucket, endpoint_url=s3_endpoint, region="us-east-1", compression="zstd",
                          prefix="lake/!{timestamp:yyyy/MM/dd}/{detail.device_id}/", flush_size=100,
                          flush_interval_s=None)
    await run_target(settings, events, topic="iot.telemetry", partition=2, first_offset=1000)
    objects = lake_objects(s3_endpoint, bucket)
    # `/` in a field value is sanitised, so it cannot add a path level
    assert sorted(objects) == ["lake/2026/11/22/d_0/iot.telemetry+2+00000000000000001000.jsonl.zst",
                               "lake/2026/11/22/d_1/iot.telemetry+2+00000000000000001001.jsonl.zst"]
    assert sorted(r["detail"]["n"] for k, b in objects.items() for r in jsonl(b, k)) == list(range(6))


SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "source": {"type": "string"},
        "time": {"type": "string", "format": "date-time"},
        "detail": {"type": "object", "properties": {"n": {"type": "integer"}, "device_id": {"type": "string"}}},
    },
}


async def test_parquet_schema_columns_and_mismatches_dead_lettered(s3_endpoint):
    bucket = new_bucket(s3_endpoint)
    events = [event(i) for i in range(50)]
    events[7]["detail"]["n"] = "seven"  # not an integer: cannot go in the column
    settings = S3Settings(bucket=bucket, endpoint_url=s3_endpoint, region="us-east-1", format="parquet",
                          schema=SCHEMA, prefix="p/", flush_size=1000, flush_interval_s=None)
    dead, created, ticket = await run_target(settings, events)
    objects = lake_objects(s3_endpoint, bucket)
    assert list(objects) == ["p/t+0+00000000000000000000.parquet"]
    table = pq.read_table(io.BytesIO(objects["p/t+0+00000000000000000000.parquet"]))
    assert str(table.schema.field("time").type) == "timestamp[ms, tz=UTC]"
    assert str(table.schema.field("detail").type) == "struct<n: int64, device_id: string>"
    rows = table.to_pylist()
    assert [r["detail"]["n"] for r in rows] == [i for i in range(50) if i != 7]
    assert dead.errors == {7: "SchemaMismatch"}
    assert ticket.pending == 0
    assert created[0]["detail"]["record-count"] == 49


async def test_large_objects_use_multipart_upload(s3_endpoint):
    bucket = new_bucket(s3_endpoint)
    blob = os.urandom(3000).hex()  # incompressible-ish: 6 KB per record
    events = [dict(event(i), detail={"n": i, "blob": blob}) for i in range(2000)]  # ~12 MB
    settings = S3Settings(bucket=bucket, endpoint_url=s3_endpoint, region="us-east-1", compression="none",
                          prefix="big/", part_size=5 << 20, flush_size=100_000, flush_interval_s=None)
    await run_target(settings, events)
    client = s3_client(s3_endpoint)
    key = "big/t+0+00000000000000000000.jsonl"
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] > 10 << 20
    assert head["ETag"].strip('"').endswith("-3")  # completed from three parts
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert [r["detail"]["n"] for r in jsonl(lake_objects(s3_endpoint, bucket)[key], key)] == list(range(2000))


def file_lake(root) -> dict[str, list[int]]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.startswith(".") or "_eventweir" in dirpath:
                continue
            path = os.path.join(dirpath, name)
            key = os.path.relpath(path, root)
            out[key] = [r["detail"]["n"] for r in jsonl(open(path, "rb").read(), key)]
    return out


async def test_file_lake_replay_after_early_flush_is_exactly_once(tmp_path):
    """A shutdown flush cut a segment early; a replay with the marker lost splits at the same point."""
    settings = S3Settings(url=f"file://{tmp_path}", flush_size=100, flush_interval_s=None)
    events = [event(i, "iot" if i % 2 else "web") for i in range(80)]
    _, first_announced, _ = await run_target(settings, events[:30])  # flushed at 29 (not a count boundary)
    first_run = file_lake(tmp_path)
    assert sorted(n for ns in first_run.values() for n in ns) == list(range(30))

    # the crash lost the progress marker (or another target held the commit back): replay from 0
    for dirpath, _, files in os.walk(tmp_path / "_eventweir"):
        for name in files:
            os.unlink(os.path.join(dirpath, name))
    dead, created, ticket = await run_target(settings, events)
    lake = file_lake(tmp_path)
    assert sorted(n for ns in lake.values() for n in ns) == list(range(80))  # each record exactly once
    assert {k: v for k, v in lake.items() if k in first_run} == first_run  # earlier objects untouched
    # the earlier objects are announced again with their first ids (at-least-once), the rest are new
    again = [e for e in created if e["detail"]["offsets"]["first"] < 30]
    assert sorted(e["id"] for e in again) == sorted(e["id"] for e in first_announced)
    assert ticket.pending == 0 and not dead.failures


async def test_file_lake_replay_stopped_early_waits_for_the_earlier_segment_end(tmp_path):
    settings = S3Settings(url=f"file://{tmp_path}", flush_size=100, flush_interval_s=None)
    events = [event(i, "iot" if i % 2 else "web") for i in range(80)]
    _, first_announced, _ = await run_target(settings, events)  # one segment 0..79 (flushed at 79)
    before = file_lake(tmp_path)
    for dirpath, _, files in os.walk(tmp_path / "_eventweir"):
        for name in files:
            os.unlink(os.path.join(dirpath, name))

    dead = DeadLetterRecorder()
    created = []
    target = S3Target("lake-rule/lake", settings, 10_000, dead, on_object=lambda event, hops: created.append(event))
    await target.start()
    items, ticket = deliveries("lake-rule/lake", events[:30])
    target.submit(items)
    ticket.release()
    # the earlier attempt's segment ran to 79: ours stays open until then, and is not settled
    assert await target.flush(1.0) is False
    assert ticket.pending == 30
    items, ticket2 = deliveries("lake-rule/lake", events[30:], first_offset=30)
    target.submit(items)
    ticket2.release()
    assert await target.flush(10)
    await target.close()
    assert ticket.pending == 0 and ticket2.pending == 0
    assert file_lake(tmp_path) == before
    # the replay announces the objects again, with the same event ids: at-least-once, de-duplicable
    assert sorted(e["id"] for e in created) == sorted(e["id"] for e in first_announced)


async def test_progress_marker_skips_records_already_in_the_lake(tmp_path):
    settings = S3Settings(url=f"file://{tmp_path}", flush_size=10, flush_interval_s=None)
    events = [event(i) for i in range(40)]
    await run_target(settings, events[:20])
    dead, created, ticket = await run_target(settings, events)  # a replay from offset 0
    assert ticket.pending == 0
    assert sorted(n for ns in file_lake(tmp_path).values() for n in ns) == list(range(40))
    assert sorted(e["detail"]["offsets"]["first"] for e in created) == [20, 30]


async def test_wall_clock_flush_writes_quiet_partitions(tmp_path):
    settings = S3Settings(url=f"file://{tmp_path}", flush_size=1000, flush_interval_s=0.3)
    target = S3Target("r/lake", settings, 10_000, DeadLetterRecorder())
    await target.start()
    items, ticket = deliveries("r/lake", [event(i) for i in range(5)])
    target.submit(items)
    ticket.release()
    import asyncio

    for _ in range(100):
        if ticket.pending == 0:
            break
        await asyncio.sleep(0.05)
    await target.close()
    assert ticket.pending == 0
    assert sorted(n for ns in file_lake(tmp_path).values() for n in ns) == list(range(5))


def test_bad_settings_name_the_key_path():
    def config(target):
        return parse_config({"sources": [{"topic": "in"}],
                             "rules": [{"name": "to-lake", "targets": [dict(id="lake", type="s3", **target)]}]},
                            environ={})

    with pytest.raises(ConfigError) as err:
        check_targets(config({"bucket": "b", "flush_sise": 10}))
    assert "rules[to-lake].targets[lake].flush_sise: unknown key" in str(err.value)
    with pytest.raises(ConfigError) as err:
        check_targets(config({"bucket": "b", "part_size": 1024}))
    assert "rules[to-lake].targets[lake].part_size:" in str(err.value) and "5242880" in str(err.value)
    with pytest.raises(ConfigError) as err:
        check_targets(config({"prefix": "x/"}))
    assert "rules[to-lake].targets[lake]: " in str(err.value) and "exactly one of `bucket` or `url`" in str(err.value)
    with pytest.raises(ConfigError) as err:
        check_targets(config({"bucket": "b", "prefix": "!{timestamp:yyyy-QQ}/"}))
    assert "unsupported letter 'Q'" in str(err.value)


async def test_sse_kms_with_a_key_id(s3_endpoint):
    bucket = new_bucket(s3_endpoint)
    settings = S3Settings(bucket=bucket, endpoint_url=s3_endpoint, region="us-east-1", prefix="k/",
                          sse="aws:kms", kms_key_id="alias/lake", flush_interval_s=None)
    await run_target(settings, [event(i) for i in range(3)])
    head = s3_client(s3_endpoint).head_object(Bucket=bucket, Key="k/t+0+00000000000000000000.jsonl.gz")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"].endswith("alias/lake")
    acl = s3_client(s3_endpoint).get_object_acl(Bucket=bucket, Key="k/t+0+00000000000000000000.jsonl.gz")
    assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]  # the owner only: no ACLs are set


async def test_rotation_by_record_time_and_by_bytes_is_deterministic(tmp_path):
    def timed(i):
        e = event(i)
        e["time"] = f"2026-11-22T{10 + i // 6:02d}:{(i * 10) % 60:02d}:00Z"  # ten minutes apart
        return e

    events = [timed(i) for i in range(12)]
    by_time = S3Settings(url=f"file://{tmp_path}/a", prefix="x/", flush_size=1000, rotate_interval_s=1800,
                         flush_interval_s=None)
    await run_target(by_time, events)
    # a segment closes when a record is 30 minutes past the segment's first: 0-2, 3-5, 6-8, 9-11
    assert sorted(file_lake(tmp_path / "a").values()) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    by_bytes = S3Settings(url=f"file://{tmp_path}/b", prefix="x/", flush_size=1000, max_object_bytes=1024,
                          flush_interval_s=None)
    await run_target(by_bytes, events)
    sizes = [len(orjson.dumps(e)) for e in events]
    expected, current, total = [], [], 0
    for i, size in enumerate(sizes):
        current.append(i)
        total += size
        if total >= 1024:
            expected.append(current)
            current, total = [], 0
    expected.append(current)
    assert sorted(file_lake(tmp_path / "b").values()) == sorted(e for e in expected if e)


async def test_revoked_partitions_release_what_they_held(tmp_path):
    """A segment held open to reproduce an earlier attempt is dropped, uncommitted, when the partition goes."""
    settings = S3Settings(url=f"file://{tmp_path}", flush_size=100, flush_interval_s=None)
    events = [event(i) for i in range(50)]
    await run_target(settings, events)
    for dirpath, _, files in os.walk(tmp_path / "_eventweir"):
        for name in files:
            os.unlink(os.path.join(dirpath, name))
    target = S3Target("lake-rule/lake", settings, 10_000, DeadLetterRecorder())
    await target.start()
    items, ticket = deliveries("lake-rule/lake", events[:20])
    target.submit(items)
    ticket.release()
    started = time.monotonic()
    assert await target.flush(30) is False and target.in_flight == 20
    assert time.monotonic() - started < 5  # it says so at once rather than holding a rebalance up
    target.revoked({("t", 0)})
    assert target.in_flight == 0 and await target.flush(1)
    await target.close()


def test_a_failed_multipart_upload_is_aborted(s3_endpoint):
    """A conditional multipart upload over an existing key fails at completion: its parts are aborted."""
    from streams.targets.s3.objectstore import S3Store

    bucket = new_bucket(s3_endpoint)
    store = S3Store(bucket, endpoint_url=s3_endpoint, region="us-east-1", part_size=5 << 20)
    first = store.put("k/obj", os.urandom(11 << 20), {"eventweir-segment-end": "9"}, if_none_match=True)
    again = store.put("k/obj", os.urandom(11 << 20), {"eventweir-segment-end": "7"}, if_none_match=True)
    store.close()
    assert first.created and not again.created
    assert store.head("k/obj") == {"eventweir-segment-end": "9"}  # the first one stands
    assert not s3_client(s3_endpoint).list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_two_s3_targets_on_the_same_keys_are_refused_at_load():
    # issue 21 item 2: object keys carry topic, partition and offset, not the target
    def lake(prefix=None):
        return {"type": "s3", "bucket": "lake", **({"prefix": prefix} if prefix else {})}

    config = parse_config({"sources": [{"topic": "in"}], "rules": [
        {"name": "a", "targets": [{"id": "raw", **lake()}]},
        {"name": "b", "targets": [{"id": "copy", **lake()}, {"id": "mine", **lake("mine/")}]}]}, environ={})
    with pytest.raises(ConfigError) as err:
        check_targets(config)
    assert str(err.value) == ("rules[b].targets[copy].prefix: rules[a].targets[raw] writes to s3://lake under the "
                              f"same prefix {S3Settings(bucket='lake').prefix!r}; give each s3 target its own prefix")


async def test_an_object_written_by_another_target_is_a_conflict_not_a_success(s3_endpoint):
    # the load-time check aside (two workers with different configs, a reused bucket): the second
    # target must not take the first one's objects for its own and commit records it never wrote
    bucket = new_bucket(s3_endpoint)
    settings = S3Settings(bucket=bucket, endpoint_url=s3_endpoint, region="us-east-1", flush_interval_s=None)
    events = [event(i) for i in range(5)]
    dead, created, _ = await run_target(settings, events)
    assert not dead.failures and len(created) == 1
    other = S3Target("other-rule/lake", settings, 10_000, DeadLetterRecorder())
    await other.start()
    items, ticket = deliveries("other-rule/lake", events)
    other.submit(items)
    ticket.release()
    assert await other.flush(20)
    await other.close()
    assert {f.error for f in other.dead_letters.failures} == {"S3KeyConflict"}
    assert len(other.dead_letters.failures) == 5
    assert "written by target 'lake-rule/lake'" in other.dead_letters.failures[0].message


async def test_object_created_events_are_at_least_once(tmp_path):
    # issue 21 item 4: a failed publish used to be logged and forgotten, the records committed anyway
    settings = S3Settings(url=f"file://{tmp_path}", flush_size=10, flush_interval_s=None, retry_initial_s=0.01)
    calls = []

    async def flaky_bus(event, hops):
        calls.append(event["id"])
        if len(calls) <= 2:
            raise ConnectionError("the bus topic is not reachable")

    dead = DeadLetterRecorder()
    target = S3Target("lake-rule/lake", settings, 10_000, dead, on_object=flaky_bus)
    await target.start()
    items, ticket = deliveries("lake-rule/lake", [event(i) for i in range(10)])
    target.submit(items)
    ticket.release()
    assert await target.flush(10)
    await target.close()
    assert len(calls) == 3 and len(set(calls)) == 1, "retried until the bus took it, the same event each time"
    assert ticket.pending == 0 and not dead.failures, "the records settled once the event was acknowledged"


async def test_records_stay_unsettled_while_the_bus_refuses_their_object_event(tmp_path):
    settings = S3Settings(url=f"file://{tmp_path}", flush_size=10, flush_interval_s=None, retry_initial_s=0.01)

    async def bus_down(event, hops):
        raise ConnectionError("the bus topic is not reachable")

    target = S3Target("lake-rule/lake", settings, 10_000, DeadLetterRecorder(), on_object=bus_down)
    await target.start()
    items, ticket = deliveries("lake-rule/lake", [event(i) for i in range(10)])
    target.submit(items)
    ticket.release()
    assert await target.flush(0.5) is False and ticket.pending == 10
    await target.close()


async def test_random_string_and_query_partitions_land_in_stable_keys(tmp_path):
    from streams.targets.s3.layout import random_string

    settings = S3Settings(url=f"file://{tmp_path}", flush_size=5, flush_interval_s=None,
                          prefix="site=!{partitionKeyFromQuery:site}/!{firehose:random-string}/",
                          partition_keys={"site": ".detail.device_id"})
    dead, created, _ = await run_target(settings, [event(i) for i in range(5)])
    keys = sorted(e["detail"]["object"]["key"] for e in created)
    token = random_string("t", 0)
    assert not dead.failures and keys == [f"site=d_0/{token}/t+0+{0:020d}.jsonl.gz",
                                          f"site=d_1/{token}/t+0+{1:020d}.jsonl.gz"]
    # a replay (the progress marker lost) writes the same keys
    for dirpath, _, files in os.walk(tmp_path / "_eventweir"):
        for name in files:
            os.unlink(os.path.join(dirpath, name))
    _, again, _ = await run_target(settings, [event(i) for i in range(5)])
    assert sorted(e["detail"]["object"]["key"] for e in again) == keys
