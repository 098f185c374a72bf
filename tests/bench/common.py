"""What the benchmarks share: a broker, pre-produced data, the raw-consume floor, the summary line."""
from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from streams.devtools.broker import start_tansu  # noqa: E402
from streams.kafka.admin import ensure_topics  # noqa: E402
from streams.kafka.fastpath.fetch_records import as_shipped  # noqa: E402
from streams.kafka.producer import BatchProducer  # noqa: E402
from streams.runtime.tuning import tune_malloc  # noqa: E402


class Broker:
    """Tansu on a free port, or the cluster in $KAFKA_BOOTSTRAP_SERVERS."""

    def __enter__(self):
        self.embedded = None
        self.bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not self.bootstrap:
            self.embedded = start_tansu()
            self.bootstrap = self.embedded.bootstrap_servers
        return self

    def __exit__(self, *exc):
        if self.embedded:
            self.embedded.stop()


def unique(name: str) -> str:
    return f"bench-{name}-{uuid.uuid4().hex[:6]}"


async def preproduce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]], partitions: int = 4) -> None:
    await ensure_topics(bootstrap, {topic: partitions})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20,
                                max_request_size=8 << 20)
    await producer.start()
    try:
        batches = BatchProducer(producer)
        for start in range(0, len(records), 5000):
            sent, _ = await batches.send(topic, [(k, v, None) for k, v in records[start:start + 5000]])
            await asyncio.gather(*(f for f, _ in sent))
    finally:
        await producer.stop()


async def floor_run(bootstrap: str, topic: str, total: int, max_records: int = 5000) -> float:
    """events/s of raw `getmany()` + `orjson.loads`, no processing: the ceiling any pipeline has.
    It runs with the memory settings the worker gives its process (multi-megabyte fetch responses
    then reuse freed memory), so that a worker run before it does not leave it an advantage or a
    handicap. Its fetches are read by aiokafka as shipped, whatever the worker installed
    (streams.kafka.fastpath.fetch_records)."""
    tune_malloc()
    with as_shipped():
        return await _floor_run(bootstrap, topic, total, max_records)


async def _floor_run(bootstrap: str, topic: str, total: int, max_records: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=unique("floor"),
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 << 20, fetch_max_bytes=32 << 20)
    await consumer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.005)
        seen, started = 0, time.perf_counter()
        loads = orjson.loads
        while seen < total:
            batch = await consumer.getmany(timeout_ms=200, max_records=max_records)
            for messages in batch.values():
                for m in messages:
                    loads(m.value)
                seen += sum(len(m) for m in batch.values())
        return total / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def median(values: list[float]) -> float:
    return statistics.median(values)


def summary(bench: str, figures: dict, ratios: dict) -> None:
    """The last line of every benchmark: one JSON object with the headline numbers."""
    print(orjson.dumps({"bench": bench, "figures": figures, "ratios": ratios}).decode())
