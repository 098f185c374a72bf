"""Crash safety, SIGTERM and rebalances on the real broker: no event is lost."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter

import orjson
import pytest
import yaml

from streams.config import parse_config
from streams.runtime.worker import Worker
from tests.integration.kafka_helpers import committed_offsets, create_topics, produce, read_all, unique, wait_for

pytestmark = pytest.mark.broker
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BATCH = 500


def write_config(tmp_path, bootstrap, src, out, dlq, group) -> str:
    config = {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": group},
        "consumer": {"max_batch_records": BATCH, "commit_interval_ms": 200, "fetch_timeout_ms": 50},
        "http": {"host": "127.0.0.1", "port": 0},
        "runtime": {"shutdown_grace_s": 10},
        "dead_letter": {"topic": dlq},
        "sources": [{"topic": src}],
        "rules": [{"name": "all", "targets": [{"id": "out", "type": "kafka", "topic": out}]}],
    }
    path = tmp_path / "worker.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def spawn_worker(config_path: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "run", "-c", config_path, "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def numbers(messages) -> list[int]:
    return [orjson.loads(m.value)["n"] for m in messages]


async def test_kill_9_mid_stream_loses_nothing_and_duplicates_stay_bounded(bootstrap_servers, tmp_path):
    src, out, dlq, group = unique("in"), unique("out"), unique("dlq"), unique("g")
    await create_topics(bootstrap_servers, src, out, dlq, partitions=3)
    total, chunk = 60_000, 2_000
    events = [{"n": i, "pad": "x" * 100} for i in range(total)]
    await produce(bootstrap_servers, src, events[:chunk])
    cfg = write_config(tmp_path, bootstrap_servers, src, out, dlq, group)

    # Input keeps arriving while the worker runs, so the kill always lands mid-stream, with
    # outputs in flight, however fast the worker is on this machine.
    first = spawn_worker(cfg)
    produced = chunk
    try:
        async def progressed():
            return sum(o or 0 for o in (await committed_offsets(bootstrap_servers, group, src)).values()) > 0
        await wait_for(progressed, timeout=60, interval=0.05, message="the first worker to commit")
        while produced < total // 2:
            await produce(bootstrap_servers, src, events[produced:produced + chunk])
            produced += chunk
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    await produce(bootstrap_servers, src, events[produced:])
    before_restart = await committed_offsets(bootstrap_servers, group, src)
    committed_before = sum(o or 0 for o in before_restart.values())
    assert 0 < committed_before < total
    output_before = len(await read_all(bootstrap_servers, out, idle=0.5))

    second = spawn_worker(cfg)
    try:
        async def all_there():
            return len(set(numbers(await read_all(bootstrap_servers, out, idle=0.3, timeout=10)))) == total
        await wait_for(all_there, timeout=90, interval=0.5, message="every event to reach the output")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, second.stderr.read().decode()

    counts = Counter(numbers(await read_all(bootstrap_servers, out, idle=1)))
    assert set(counts) == set(range(total)), "no input event may be lost"
    duplicates = sum(n - 1 for n in counts.values())
    print(f"kill -9 with {committed_before} of {total} committed and {output_before} output: "
          f"{duplicates} duplicates after restart")
    # at-least-once: the only duplicates are outputs written after the last commit, replayed once
    assert duplicates <= output_before - committed_before
    assert sum((await committed_offsets(bootstrap_servers, group, src)).values()) == total


async def test_sigterm_drains_commits_and_exits_zero(bootstrap_servers, tmp_path):
    src, out, dlq, group = unique("in"), unique("out"), unique("dlq"), unique("g")
    await create_topics(bootstrap_servers, src, out, dlq, partitions=2)
    await produce(bootstrap_servers, src, [{"n": i} for i in range(3000)])
    worker = spawn_worker(write_config(tmp_path, bootstrap_servers, src, out, dlq, group))
    try:
        await wait_for(lambda: _has_output(bootstrap_servers, out, 3000), timeout=60, interval=0.3,
                       message="all outputs")
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(30)
    assert code == 0, worker.stderr.read().decode()
    assert sum((await committed_offsets(bootstrap_servers, group, src)).values()) == 3000


async def _has_output(bootstrap, topic, n):
    return len(await read_all(bootstrap, topic, idle=0.3, timeout=5)) >= n


async def test_rebalance_between_two_workers_loses_nothing(bootstrap_servers):
    src, out, dlq, group = unique("in"), unique("out"), unique("dlq"), unique("g")
    await create_topics(bootstrap_servers, src, out, dlq, partitions=4)
    config = parse_config({
        "kafka": {"bootstrap_servers": bootstrap_servers, "group_id": group},
        "consumer": {"max_batch_records": 200, "commit_interval_ms": 100, "fetch_timeout_ms": 50,
                     "session_timeout_ms": 6000, "heartbeat_interval_ms": 500},
        "dead_letter": {"topic": dlq},
        "sources": [{"topic": src}],
        "rules": [{"name": "all", "targets": [{"id": "out", "type": "kafka", "topic": out}]}],
    }, environ={})
    total, step = 6000, 500
    a, b = Worker(config), Worker(config)
    task_a = asyncio.create_task(a.run())
    await wait_for(lambda: a.joined, message="worker a to join")
    sent = 0

    async def produce_some():
        nonlocal sent
        await produce(bootstrap_servers, src, [{"n": i} for i in range(sent, sent + step)])
        sent += step

    await produce_some()
    task_b = asyncio.create_task(b.run())
    await wait_for(lambda: b.joined and a.assigned and b.assigned, timeout=30, message="both workers to share partitions")
    assert not (a.assigned & b.assigned)
    for _ in range(5):
        await produce_some()
        await asyncio.sleep(0.2)
    b.request_stop()
    await asyncio.wait_for(task_b, 30)
    await wait_for(lambda: len(a.assigned) == 4, timeout=30, message="worker a to take every partition back")
    while sent < total:
        await produce_some()
    got = numbers(await read_all(bootstrap_servers, out, expect=None, idle=2, timeout=60))
    a.request_stop()
    await asyncio.wait_for(task_a, 30)
    got += numbers(await read_all(bootstrap_servers, out, idle=1))[len(got):]
    assert set(got) == set(range(total))
    assert a.stats.consumed + b.stats.consumed >= total
    assert sum((await committed_offsets(bootstrap_servers, group, src)).values()) == total
