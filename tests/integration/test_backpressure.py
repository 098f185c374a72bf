"""Back-pressure: a target that falls behind pauses only the partitions feeding it, memory stays
bounded, and everything flows once it catches up."""
from __future__ import annotations

import asyncio

import pytest

from streams.config import parse_config
from streams.runtime.worker import Worker
from streams.targets.base import Target
from tests.integration.kafka_helpers import committed_offsets, create_topics, produce, unique, wait_for

pytestmark = pytest.mark.broker
BOUND = 200


class StalledDestination(Target):
    """Stands in for a destination that stops acknowledging (an S3 outage, a stuck API) until released."""

    def __init__(self, *args):
        super().__init__(*args)
        self.held: list = []
        self.peak = 0
        self.open = asyncio.Event()

    def write(self, items):
        self.held += items
        self.peak = max(self.peak, self.in_flight)
        if self.open.is_set():
            self.release()

    def release(self):
        held, self.held = self.held, []
        self.settle(held)


async def test_a_stalled_target_pauses_its_partitions_and_memory_stays_bounded(bootstrap_servers):
    slow_src, fast_src, slow_out, fast_out, dlq, group = (unique(n) for n in ("slow", "fast", "so", "fo", "dlq", "g"))
    await create_topics(bootstrap_servers, slow_src, fast_src, slow_out, fast_out, dlq, partitions=2)
    config = parse_config({
        "kafka": {"bootstrap_servers": bootstrap_servers, "group_id": group},
        "consumer": {"max_batch_records": 50, "commit_interval_ms": 100, "fetch_timeout_ms": 50},
        "runtime": {"max_in_flight": BOUND},
        "dead_letter": {"topic": dlq},
        "sources": [{"topic": slow_src}, {"topic": fast_src}],
        "rules": [
            {"name": "slow", "event_pattern": {"lane": ["slow"]},
             "targets": [{"id": "out", "type": "kafka", "topic": slow_out}]},
            {"name": "fast", "event_pattern": {"lane": ["fast"]},
             "targets": [{"id": "out", "type": "kafka", "topic": fast_out}]},
        ],
    }, environ={})

    class WorkerWithStalledTarget(Worker):
        async def start(self):
            await super().start()
            self.stalled = self.targets["slow/out"] = StalledDestination("slow/out", BOUND, self.dead_letters)

    worker = WorkerWithStalledTarget(config)
    task = asyncio.create_task(worker.run())
    await produce(bootstrap_servers, slow_src, [{"lane": "slow", "n": i} for i in range(3000)])
    await wait_for(lambda: worker.paused, message="the slow lane's partitions to pause")
    assert {tp.topic for tp in worker.paused} == {slow_src}, "only the partitions feeding the stalled target pause"

    await produce(bootstrap_servers, fast_src, [{"lane": "fast", "n": i} for i in range(1000)])
    await wait_for(lambda: worker.stats.matched.get("fast", 0) == 1000, message="the fast lane to keep flowing")
    await asyncio.sleep(0.5)
    assert worker.stalled.peak < BOUND + 2 * 50, "in flight stays within the bound plus the batch that crossed it"
    slow_committed = sum(o or 0 for o in (await committed_offsets(bootstrap_servers, group, slow_src)).values())
    assert slow_committed == 0, "nothing unacknowledged is committed"

    worker.stalled.open.set()
    worker.stalled.release()
    await wait_for(lambda: worker.stats.matched.get("slow", 0) == 3000, timeout=30, message="the slow lane to drain")
    await wait_for(lambda: not worker.paused, message="its partitions to resume")
    worker.request_stop()
    await asyncio.wait_for(task, 30)
    assert sum((await committed_offsets(bootstrap_servers, group, slow_src)).values()) == 3000
    assert sum((await committed_offsets(bootstrap_servers, group, fast_src)).values()) == 1000


async def test_many_targets_together_are_held_to_the_workers_in_flight_bound(bootstrap_servers):
    """Each target under its own bound, but all of them together over the worker's: every
    partition pauses, so memory does not grow with the number of targets."""
    src, dlq, group = unique("many"), unique("dlq"), unique("g")
    outs = [unique(f"o{i}") for i in range(3)]
    await create_topics(bootstrap_servers, src, dlq, *outs, partitions=2)
    total = 300
    config = parse_config({
        "kafka": {"bootstrap_servers": bootstrap_servers, "group_id": group},
        "consumer": {"max_batch_records": 50, "commit_interval_ms": 100, "fetch_timeout_ms": 50},
        "runtime": {"max_in_flight": 10_000, "max_in_flight_total": total},
        "dead_letter": {"topic": dlq},
        "sources": [{"topic": src}],
        "rules": [{"name": f"r{i}", "event_pattern": {"lane": ["any"]},
                   "targets": [{"id": "out", "type": "kafka", "topic": out}]} for i, out in enumerate(outs)],
    }, environ={})

    class WorkerWithStalledTargets(Worker):
        async def start(self):
            await super().start()
            self.stalled = [StalledDestination(f"r{i}/out", 10_000, self.dead_letters) for i in range(3)]
            for target in self.stalled:
                self.targets[target.id] = target

    worker = WorkerWithStalledTargets(config)
    task = asyncio.create_task(worker.run())
    await produce(bootstrap_servers, src, [{"lane": "any", "n": i} for i in range(2000)])
    await wait_for(lambda: worker.paused, message="the partitions to pause")
    await asyncio.sleep(0.5)
    assert worker.paused == worker.assigned, "every partition pauses"
    held = sum(t.in_flight for t in worker.stalled)
    # each batch (up to 50 records) makes 3 deliveries; the one that crossed the bound is taken whole
    assert total <= held < total + 3 * 50, f"{held} deliveries held, for a worker bound of {total}"
    assert worker.stats.consumed < 2000, "fetching stopped at the bound"

    for target in worker.stalled:
        target.open.set()
        target.release()
    await wait_for(lambda: all(worker.stats.matched.get(f"r{i}", 0) == 2000 for i in range(3)), timeout=30,
                   message="everything to flow once the targets acknowledge")
    await wait_for(lambda: not worker.paused, message="the partitions to resume")
    worker.request_stop()
    await asyncio.wait_for(task, 30)
    assert sum((await committed_offsets(bootstrap_servers, group, src)).values()) == 2000
