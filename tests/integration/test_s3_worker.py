"""The s3 target inside a real worker: a kill -9 mid-run, and S3 going away and coming back."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from streams.config import parse_config
from streams.devtools.broker import free_port, wait_for_port
from streams.runtime.worker import Worker
from streams.service import run_worker
from tests.integration.kafka_helpers import create_topics, unique, wait_for
from tests.integration.test_s3_sink import event, jsonl, lake_objects, new_bucket

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]


async def produce_partitioned(bootstrap, topic, per_partition: dict[int, list[dict]]) -> None:
    import orjson

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, orjson.dumps(e), partition=p)
                   for p, events in per_partition.items() for e in events]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def worker_config(bootstrap, src, dlq, group, s3: dict, **sections) -> dict:
    data = {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": group},
        "consumer": {"commit_interval_ms": 100, "fetch_timeout_ms": 50, "max_batch_records": 200,
                     "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        "http": {"host": "127.0.0.1", "port": 0},
        "dead_letter": {"topic": dlq},
        "sources": [{"topic": src}],
        "rules": [{"name": "lake", "targets": [dict(id="s3", type="s3", **s3)]}],
    }
    data.update(sections)
    return data


def records_in(objects: dict[str, bytes]) -> list[int]:
    return sorted(r["detail"]["n"] for key, body in objects.items() for r in jsonl(body, key))


def start_process(config: dict, tmp_path: Path, name: str) -> subprocess.Popen:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = open(tmp_path / f"{name}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "streams.cli", "run", "-c", str(path)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True)


async def wait_records(endpoint, bucket, count: int, timeout: float, proc=None) -> dict[str, bytes]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        objects = lake_objects(endpoint, bucket)
        if len(records_in(objects)) >= count:
            return objects
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode}")
        await asyncio.sleep(0.3)
    raise AssertionError(f"lake did not reach {count} records in {timeout}s")


async def test_kill_9_mid_run_then_restart_writes_exactly_the_objects_of_a_clean_run(
        bootstrap_servers, s3_endpoint, tmp_path):
    src, dlq = unique("lake-in"), unique("dlq")
    await create_topics(bootstrap_servers, src, dlq, partitions=2)
    per_partition = {p: [event(p * 100_000 + i, "iot" if i % 3 else "web") for i in range(3000)] for p in (0, 1)}
    await produce_partitioned(bootstrap_servers, src, per_partition)
    expected = sorted(e["detail"]["n"] for events in per_partition.values() for e in events)
    s3 = {"endpoint_url": s3_endpoint, "region": "us-east-1", "prefix": "source={source}/!{timestamp:yyyy/MM/dd}/",
          "flush_size": 300, "flush_interval_s": 600}

    # the reference: one clean run
    clean_bucket = new_bucket(s3_endpoint)
    proc = start_process(worker_config(bootstrap_servers, src, dlq, unique("g"), dict(s3, bucket=clean_bucket)),
                         tmp_path, "clean")
    try:
        clean = await wait_records(s3_endpoint, clean_bucket, len(expected), 90, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

    # the same input, killed with SIGKILL as soon as a few objects have landed, then restarted
    crash_bucket = new_bucket(s3_endpoint)
    config = worker_config(bootstrap_servers, src, dlq, unique("g"), dict(s3, bucket=crash_bucket))
    proc = start_process(config, tmp_path, "crash")
    deadline = time.monotonic() + 180  # a loaded machine can take a minute to start a worker process
    while len(lake_objects(s3_endpoint, crash_bucket)) < 4 and time.monotonic() < deadline and proc.poll() is None:
        await asyncio.sleep(0.02)
    proc.kill()
    proc.wait(10)
    at_kill = records_in(lake_objects(s3_endpoint, crash_bucket))
    assert 0 < len(at_kill) < len(expected), "the kill must land mid-run"
    proc = start_process(config, tmp_path, "crash")
    try:
        crashed = await wait_records(s3_endpoint, crash_bucket, len(expected), 90, proc)
        await asyncio.sleep(1.0)  # anything late (a duplicate) would land now
        crashed = lake_objects(s3_endpoint, crash_bucket)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

    assert records_in(clean) == expected  # nothing lost, nothing duplicated
    assert sorted(crashed) == sorted(clean)  # the same object keys ...
    assert all(crashed[k] == clean[k] for k in clean)  # ... with byte-identical content


async def test_s3_outage_pauses_bounded_and_loses_nothing(bootstrap_servers, s3_endpoint, tmp_path):
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"

    def start_moto():
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_port("127.0.0.1", port, 30)
        return proc

    moto = start_moto()
    bucket = "outage-lake"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    src, dlq, group = unique("lake-in"), unique("dlq"), unique("g")
    await create_topics(bootstrap_servers, src, dlq, partitions=2)
    s3 = {"bucket": bucket, "endpoint_url": endpoint, "region": "us-east-1", "prefix": "o/", "flush_size": 50,
          "flush_interval_s": 0.5, "retry_initial_s": 0.05, "retry_max_s": 0.5}
    config = parse_config(worker_config(bootstrap_servers, src, dlq, group, s3,
                                        runtime={"max_in_flight": 300}), environ={})
    worker = Worker(config)
    task = asyncio.create_task(run_worker(config, worker))
    try:
        await wait_for(lambda: worker.joined, message="join")
        target = worker.targets["lake/s3"]
        before = [event(i) for i in range(200)]
        await produce_partitioned(bootstrap_servers, src, {0: before[:100], 1: before[100:]})
        first = await wait_records(endpoint, bucket, 200, 30)

        moto.terminate()
        moto.wait(10)
        during = [event(i) for i in range(200, 3200)]
        await produce_partitioned(bootstrap_servers, src, {0: during[:1500], 1: during[1500:]})
        peak = 0
        for _ in range(30):  # 3 s of outage: the sink retries, the worker pauses, memory stays bounded
            await asyncio.sleep(0.1)
            peak = max(peak, target.in_flight)
        assert worker.paused, "the partitions feeding the failing sink are paused"
        # the in-flight bound, plus at most one fetched batch per partition before its pause applies
        assert 0 < peak <= 300 + 200 * 2
        from streams import metrics

        assert metrics.SINK_BACKING_OFF.labels("lake/s3")._value.get() == 1

        moto = start_moto()  # moto keeps nothing: the bucket comes back empty
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
        after = await wait_records(endpoint, bucket, 3000, 60)
        assert records_in(first) + records_in(after) == list(range(3200))  # each record exactly once
        await wait_for(lambda: not worker.paused, message="partitions resumed")
        assert metrics.SINK_BACKING_OFF.labels("lake/s3")._value.get() == 0
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 30)
        moto.terminate()
        moto.wait(10)
