"""Worker throughput with a pass-through pipeline (decode, one catch-all rule, produce to a topic)
against the floor of raw `getmany()` + `orjson.loads` on the same broker and data, side by side.

    python tests/bench/throughput.py [--events N] [--repeats R] [--quick]

Figures are medians of R runs, alternating floor and worker so machine noise hits both alike.
Timing starts once partitions are assigned (group join time is excluded from both) and, for the
worker, ends when every output is acknowledged by the broker (offsets are committed after that,
on the worker's commit interval: latency, not throughput; the run checks they all are).
"""
from __future__ import annotations

import argparse
import asyncio
import time

from common import Broker, floor_run, median, preproduce, summary, unique

from streams.config import parse_config
from streams.devtools.generator import TrafficGenerator
from streams.runtime import eventloop
from streams.runtime.worker import Worker


async def worker_run(bootstrap: str, source: str, out: str, dlq: str, total: int) -> float:
    config = parse_config({
        "kafka": {"bootstrap_servers": bootstrap, "group_id": unique("worker")},
        "consumer": {"max_batch_records": 5000, "fetch_timeout_ms": 20},
        "producer": {"linger_ms": 5},
        "dead_letter": {"topic": dlq},
        "sources": [{"topic": source, "kind": "json"}],
        "rules": [{"name": "passthrough", "targets": [{"id": "out", "type": "kafka", "topic": out}]}],
    }, environ={})
    worker = Worker(config)
    task = asyncio.create_task(worker.run())
    while not worker.assigned:
        if task.done():
            task.result()
        await asyncio.sleep(0.002)
    started = time.perf_counter()
    target = worker.targets["passthrough/out"]
    while worker.stats.consumed < total or target.in_flight:
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    worker.request_stop()
    await task
    committed = sum(worker.stats.committed.values())
    assert committed == total, f"only {committed} of {total} offsets committed at shutdown"
    return total / elapsed


async def main(events: int, repeats: int) -> None:
    gen = TrafficGenerator(seed=1)
    records = [gen.iot(1732530000000 + i) for i in range(events)]
    size = sum(len(v) for _, v in records) / len(records)
    with Broker() as broker:
        source, out, dlq = unique("in"), unique("out"), unique("dlq")
        await preproduce(broker.bootstrap, source, records)
        from streams.kafka.admin import ensure_topics

        await ensure_topics(broker.bootstrap, {out: 4, dlq: 1})
        floors, workers = [], []
        for i in range(repeats):
            floors.append(await floor_run(broker.bootstrap, source, events))
            workers.append(await worker_run(broker.bootstrap, source, out, dlq, events))
            print(f"run {i + 1}/{repeats}: floor {floors[-1]:,.0f}/s  worker {workers[-1]:,.0f}/s", flush=True)
    floor, worker = median(floors), median(workers)
    print()
    print(f"{events:,} IoT events of {size:.0f} bytes, 4 partitions, medians of {repeats} runs, {eventloop.loop_name()} loop")
    print(f"{'contender':<46}{'events/s':>12}{'vs floor':>10}")
    print(f"{'floor: getmany + orjson.loads':<46}{floor:>12,.0f}{1.0:>10.2f}")
    print(f"{'eventweir worker, pass-through (route+produce)':<46}{worker:>12,.0f}{worker / floor:>10.2f}")
    summary("throughput", {"floor_events_per_s": round(floor), "passthrough_events_per_s": round(worker),
                           "events": events, "repeats": repeats},
            {"passthrough_vs_floor": round(worker / floor, 3)})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="50,000 events, 3 repeats")
    args = parser.parse_args()
    eventloop.run(main(50_000 if args.quick else args.events, args.repeats))
