"""event_time lake objects inside a real worker, on the real broker and the suite's S3 endpoint: a kill -9
mid-run, then a restart, loses no record, writes the window objects of a run without the crash under the same
names, and writes a record twice only in the rare case the README describes."""
from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.integration.kafka_helpers import create_topics, produce, unique
from tests.integration.test_s3_sink import jsonl, lake_objects, new_bucket
from tests.integration.test_s3_worker import start_process, worker_config

pytestmark = pytest.mark.broker

T0 = 1_794_999_960_000  # 2026-11-18T11:06:00Z
SYMBOLS = 5
TOTAL = 6_000


def tick(i: int) -> dict:
    # 50 ms of event time per tick, out of order by up to 2 s; every 499th is 5 minutes late (past the lateness)
    at = T0 + i * 50 - (i * 7919) % 2_000 - (300_000 if i % 499 == 498 else 0)
    return {"id": f"t{i}", "time": at, "detail": {"symbol": f"S{i % SYMBOLS}", "n": i}}


def closer(symbol: int) -> dict:  # moves every partition's watermark past the last window
    return {"id": f"end{symbol}", "time": T0 + 3_600_000, "detail": {"symbol": f"S{symbol}", "n": -1}}


def ids_in(objects: dict[str, bytes]) -> list[str]:
    return sorted(r["id"] for key, body in objects.items() for r in jsonl(body, key))


async def wait_all(endpoint, bucket, expected: set[str], timeout: float, proc) -> dict[str, bytes]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        objects = lake_objects(endpoint, bucket)
        if expected <= set(ids_in(objects)):
            return objects
        assert proc.poll() is None, f"worker exited with {proc.returncode}"
        await asyncio.sleep(0.3)
    raise AssertionError(f"not every record reached the lake in {timeout}s")


async def test_kill_9_then_restart_loses_no_record_and_names_the_same_window_objects(
        bootstrap_servers, s3_endpoint, tmp_path):
    src, dlq = unique("ticks"), unique("dlq")
    await create_topics(bootstrap_servers, src, dlq, partitions=2)
    ticks = [tick(i) for i in range(TOTAL)] + [closer(s) for s in range(SYMBOLS)]
    half = TOTAL // 2
    await produce(bootstrap_servers, src, ticks[:half], [t["detail"]["symbol"].encode() for t in ticks[:half]])
    expected = {t["id"] for t in ticks if not t["id"].startswith("end")}
    s3 = {"endpoint_url": s3_endpoint, "region": "us-east-1", "prefix": "ticks/dt=!{timestamp:yyyy-MM-dd}/",
          "event_time": {"window": "10s", "allowed_lateness": "5s", "kafka_fields": ["offset"]}}
    sections = {"runtime": {"shutdown_grace_s": 2}}

    # the crash: killed as soon as the first objects land, with half of the input in the topic
    crash_bucket = new_bucket(s3_endpoint)
    config = worker_config(bootstrap_servers, src, dlq, unique("g"), dict(s3, bucket=crash_bucket), **sections)
    proc = start_process(config, tmp_path, "crash")
    deadline = time.monotonic() + 60
    while not lake_objects(s3_endpoint, crash_bucket) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    proc.kill()
    proc.wait(10)
    at_kill = ids_in(lake_objects(s3_endpoint, crash_bucket))
    assert 0 < len(at_kill) < len(expected), "the kill must land mid-run"
    await produce(bootstrap_servers, src, ticks[half:], [t["detail"]["symbol"].encode() for t in ticks[half:]])

    clean_bucket = new_bucket(s3_endpoint)
    proc = start_process(worker_config(bootstrap_servers, src, dlq, unique("g"), dict(s3, bucket=clean_bucket),
                                       **sections), tmp_path, "clean")
    try:
        clean = await wait_all(s3_endpoint, clean_bucket, expected, 90, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert sorted(ids_in(clean)) == sorted(expected)  # each once: in its window's object, or late
    late = [k for k in clean if k.startswith("late/")]
    assert len(late) == TOTAL // 499

    proc = start_process(config, tmp_path, "crash")
    try:
        crashed = await wait_all(s3_endpoint, crash_bucket, expected, 90, proc)
        await asyncio.sleep(1.0)
        crashed = lake_objects(s3_endpoint, crash_bucket)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    windows = {k for k in clean if not k.startswith("late/")}
    assert windows <= set(crashed), "every window object of the clean run, under the same name"
    assert all(crashed[k] == clean[k] for k in windows if k in crashed and ids_in({k: crashed[k]}) == ids_in({k: clean[k]}))
    twice = len(ids_in(crashed)) - len(expected)
    # a record twice only if it was late before the crash and, read again with the watermark starting lower,
    # fell in a window that had nothing else written: at most the late records
    assert twice <= TOTAL // 499
    print(f"kill -9 with {len(at_kill)} records in the lake: {len(crashed)} objects, {twice} records written twice")
