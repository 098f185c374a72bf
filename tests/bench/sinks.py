"""Benchmark: the s3 lake sink (JSON lines gzip, Parquet) and the timestream sink against moto.

Peer: writing the same objects (same keys, same encoding) with plain boto3 put_object in a loop.
Both sides run in this process against the same moto server, alternating, medians of repeats.

    python tests/bench/sinks.py [--quick]

Last line: {"bench": "sinks", "figures": {...}, "ratios": {...}}
"""
from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
import orjson  # noqa: E402

from processors.core import Delivery, SourceRecord  # noqa: E402
from streams.devtools.broker import free_port, wait_for_port  # noqa: E402
from streams.runtime.offsets import Ticket  # noqa: E402
from streams.targets.s3.target import S3Settings, S3Target  # noqa: E402
from streams.targets.timestream import TimestreamSettings, TimestreamTarget  # noqa: E402

PARTITIONS = 4
SCHEMA = {"type": "object", "properties": {
    "version": {"type": "string"}, "id": {"type": "string"}, "detail-type": {"type": "string"},
    "source": {"type": "string"}, "time": {"type": "string", "format": "date-time"},
    "detail": {"type": "object", "properties": {"device_id": {"type": "string"}, "temp": {"type": "number"},
                                                "humidity": {"type": "number"}, "seq": {"type": "integer"}}}}}


class NullDeadLetters:
    def write_failures(self, failures, on_done=None):
        raise AssertionError(f"benchmark data should never be dead-lettered: {failures[0][0]}")


def make_events(n: int) -> list[bytes]:
    return [orjson.dumps({
        "version": "0", "id": str(uuid.UUID(int=i)), "detail-type": "Telemetry", "source": "iot",
        "account": "123456789012", "time": f"2026-11-22T13:{(i // 60) % 60:02d}:{i % 60:02d}Z", "region": "eu-west-1",
        "resources": [], "detail": {"device_id": f"dev-{i % 500}", "temp": 20 + (i % 100) / 10,
                                    "humidity": 40 + (i % 37) / 3, "seq": i},
    }) for i in range(n)]


def items_for(target: str, payloads: list[bytes]):
    tickets = [Ticket(0) for _ in range(PARTITIONS)]
    items = []
    for i, payload in enumerate(payloads):
        p = i % PARTITIONS
        items.append((Delivery(target, SourceRecord("iot.telemetry", p, i // PARTITIONS, 0, None, None), payload),
                      tickets[p]))
    return items


async def run_sink(endpoint: str, fmt: str, payloads: list[bytes], flush_size: int) -> tuple[float, str]:
    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    settings = S3Settings(bucket=bucket, endpoint_url=endpoint, region="us-east-1", format=fmt,
                          schema=SCHEMA if fmt == "parquet" else None, prefix="bench/!{timestamp:yyyy/MM/dd}/",
                          flush_size=flush_size, flush_interval_s=None)
    target = S3Target("bench/lake", settings, len(payloads) * 2, NullDeadLetters())
    await target.start()
    items = items_for("bench/lake", payloads)
    t0 = time.perf_counter()
    for i in range(0, len(items), 5000):  # the worker hands batches like this
        target.submit(items[i:i + 5000])
        await asyncio.sleep(0)
    assert await target.flush(600)
    elapsed = time.perf_counter() - t0
    await target.close()
    return elapsed, bucket


def run_peer(endpoint: str, fmt: str, payloads: list[bytes], flush_size: int, sink_bucket: str) -> float:
    """The same objects (keys, records, encoding) from the same record stream, with put_object in a loop.

    The straightforward script: parse each record, work out its object from the layout (partition,
    day prefix, count-based segment), then encode and put each object in turn.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from streams.targets.s3.formats import _conform, arrow_schema

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    bucket = f"peer-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    schema = arrow_schema(SCHEMA)
    ext = "jsonl.gz" if fmt == "jsonl" else "parquet"
    t0 = time.perf_counter()
    objects: dict[str, list[bytes]] = {}
    for i, payload in enumerate(payloads):
        partition, offset = i % PARTITIONS, i // PARTITIONS
        when = datetime.fromisoformat(orjson.loads(payload)["time"])
        first = offset - offset % flush_size
        key = f"bench/{when:%Y/%m/%d}/"
        group = objects.setdefault((key, partition, first), [])
        if not group:
            group.append(offset)
        group.append(payload)
    for (prefix, partition, _), group in objects.items():
        key = f"{prefix}iot.telemetry+{partition}+{group[0]:020d}.{ext}"
        lines = group[1:]
        if fmt == "jsonl":
            body = gzip.compress(b"\n".join(lines) + b"\n", compresslevel=6, mtime=0)
        else:
            rows = [orjson.loads(line) for line in lines]
            rows = [{f.name: _conform(r.get(f.name), f.type) for f in schema} for r in rows]
            sink = io.BytesIO()
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), sink, compression="zstd")
            body = sink.getvalue()
        client.put_object(Bucket=bucket, Key=key, Body=body, ServerSideEncryption="AES256")
    elapsed = time.perf_counter() - t0
    listed = [{o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=b, Prefix="bench/")
               for o in page.get("Contents", [])} for b in (bucket, sink_bucket)]
    assert listed[0] == listed[1], "the peer must write the same objects as the sink"
    return elapsed


def timestream_settings(db: str, endpoint: str) -> TimestreamSettings:
    return TimestreamSettings(
        database=db, table="readings", endpoint_url=endpoint, region="us-east-1",
        dimensions={"device_id": "$.detail.device_id", "source": "$.source"},
        measures=[{"name": "temp", "path": "$.detail.temp"}, {"name": "humidity", "path": "$.detail.humidity"},
                  {"name": "seq", "path": "$.detail.seq", "type": "BIGINT"}])


def restamp(payloads: list[bytes]) -> list[bytes]:
    now = time.time()
    fresh = []
    for i, p in enumerate(payloads):  # Timestream needs recent times: restamp within the last hour
        event = orjson.loads(p)
        event["time"] = int((now - 3000 + i % 3000) * 1000)
        fresh.append(orjson.dumps(event))
    return fresh


def run_timestream_peer(endpoint: str, payloads: list[bytes]) -> float:
    """The same records, mapped the same way, sent 100 at a time with write_records in a loop."""
    from streams.targets.timestream import RecordMapper, common_attributes

    client = boto3.client("timestream-write", endpoint_url=endpoint, region_name="us-east-1")
    db = f"peer{uuid.uuid4().hex[:6]}"
    client.create_database(DatabaseName=db)
    client.create_table(DatabaseName=db, TableName="readings")
    mapper = RecordMapper(timestream_settings(db, endpoint))
    fresh = restamp(payloads)
    t0 = time.perf_counter()
    now = time.time()
    records = [r for p in fresh for r in mapper.records(orjson.loads(p), now)]
    for i in range(0, len(records), 100):
        common, chunk = common_attributes(records[i:i + 100], "MILLISECONDS")
        client.write_records(DatabaseName=db, TableName="readings", CommonAttributes=common, Records=chunk)
    return time.perf_counter() - t0


async def run_timestream(endpoint: str, payloads: list[bytes]) -> float:
    client = boto3.client("timestream-write", endpoint_url=endpoint, region_name="us-east-1")
    db = f"bench{uuid.uuid4().hex[:6]}"
    client.create_database(DatabaseName=db)
    client.create_table(DatabaseName=db, TableName="readings")
    fresh = restamp(payloads)
    settings = timestream_settings(db, endpoint)
    target = TimestreamTarget("bench/ts", settings, len(fresh) * 2, NullDeadLetters())
    await target.start()
    items = items_for("bench/ts", fresh)
    t0 = time.perf_counter()
    for i in range(0, len(items), 5000):
        target.submit(items[i:i + 5000])
        await asyncio.sleep(0)
    assert await target.flush(600)
    elapsed = time.perf_counter() - t0
    await target.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small run (for development)")
    args = parser.parse_args()
    n, repeats, flush_size, ts_n = (20_000, 3, 2_500, 3_000) if args.quick else (100_000, 3, 10_000, 20_000)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port("127.0.0.1", port, 30)
        endpoint = f"http://127.0.0.1:{port}"
        payloads = make_events(n)
        mb = sum(len(p) for p in payloads) / 1e6
        figures, ratios = {}, {}
        rows = []
        for fmt in ("jsonl", "parquet"):
            sink_t, peer_t = [], []
            for _ in range(repeats):
                elapsed, bucket = asyncio.run(run_sink(endpoint, fmt, payloads, flush_size))
                sink_t.append(elapsed)
                peer_t.append(run_peer(endpoint, fmt, payloads, flush_size, bucket))
            s, p = statistics.median(sink_t), statistics.median(peer_t)
            name = "s3_jsonl_gz" if fmt == "jsonl" else "s3_parquet"
            figures[f"{name}_events_per_s"] = round(n / s)
            figures[f"{name}_mb_per_s"] = round(mb / s, 2)
            figures[f"{name}_boto3_loop_events_per_s"] = round(n / p)
            figures[f"{name}_boto3_loop_mb_per_s"] = round(mb / p, 2)
            ratios[f"s3_{fmt}_vs_boto3_loop"] = round(p / s, 2)
            rows.append((name, n / s, mb / s, n / p, mb / p, p / s))
        ts_times, ts_peer = [], []
        for _ in range(repeats):
            ts_times.append(asyncio.run(run_timestream(endpoint, payloads[:ts_n])))
            ts_peer.append(run_timestream_peer(endpoint, payloads[:ts_n]))
        figures["timestream_records_per_s"] = round(ts_n / statistics.median(ts_times))
        figures["timestream_boto3_loop_records_per_s"] = round(ts_n / statistics.median(ts_peer))
        ratios["timestream_vs_boto3_loop"] = round(statistics.median(ts_peer) / statistics.median(ts_times), 2)
    finally:
        moto.terminate()
        moto.wait(10)
    print(f"{n} events ({mb:.1f} MB of JSON), {PARTITIONS} partitions, flush_size {flush_size}, "
          f"median of {repeats}, moto server on localhost")
    print(f"{'sink':<14}{'events/s':>12}{'MB/s':>9}{'boto3 loop ev/s':>17}{'loop MB/s':>11}{'ratio':>8}")
    for name, eps, mbs, peps, pmbs, ratio in rows:
        print(f"{name:<14}{eps:>12,.0f}{mbs:>9.2f}{peps:>17,.0f}{pmbs:>11.2f}{ratio:>8.2f}")
    print(f"{'timestream':<14}{figures['timestream_records_per_s']:>12,}{'':>9}"
          f"{figures['timestream_boto3_loop_records_per_s']:>17,}{'':>11}{ratios['timestream_vs_boto3_loop']:>8.2f}"
          f"   (MULTI records/s, {ts_n} records)")
    print(orjson.dumps({"bench": "sinks", "figures": figures, "ratios": ratios}).decode())


if __name__ == "__main__":
    main()
