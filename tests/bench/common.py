"""What the benchmarks share: a broker, pre-produced data, the raw-consume floor, a timed reader
(the floor and a pipeline over the same records, wall clock and CPU), the summary line."""
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
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from processors.chain import Chain  # noqa: E402
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


class Reader:
    """One group-less consumer of partition 0 of a topic; each pass seeks to the beginning and reads
    `n` records, timed by the wall clock and by this process's CPU time."""

    def __init__(self, bootstrap: str, topic: str, n: int, max_records: int = 1000):
        self.tp, self.n, self.max_records = TopicPartition(topic, 0), n, max_records
        # fetch_max_wait_ms small: at the end of a pass the consumer long-polls past the last record,
        # and the next pass's seek would wait out that poll (500 ms by default) inside its timing
        # fetch sizes stay at aiokafka's defaults, as a worker's would
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                         fetch_max_wait_ms=5)

    async def start(self):
        from streams.kafka.fastpath import consumer_record

        consumer_record.install()  # consumed records carry the `timestamp_ms` processors read, as in the worker
        await self.consumer.start()
        self.consumer.assign([self.tp])

    async def stop(self):
        await self.consumer.stop()

    async def batches(self):
        self.consumer.seek(self.tp, 0)
        seen = 0
        while seen < self.n:
            got = await self.consumer.getmany(self.tp, timeout_ms=1000, max_records=self.max_records)
            for records in got.values():
                seen += len(records)
                yield records

    async def floor(self) -> tuple[float, float]:
        """(events/s by the wall clock, events per CPU-second of this process) of `orjson.loads` alone."""
        loads = orjson.loads
        t0, c0 = time.perf_counter(), time.process_time()
        count = 0
        async for records in self.batches():
            for r in records:
                loads(r.value)
            count += len(records)
        return count / (time.perf_counter() - t0), count / (time.process_time() - c0)

    async def pipeline(self, stages, after_batch=None) -> tuple[float, float, int]:
        """(events/s, events per CPU-second, failures) of `stages` run as the worker runs them;
        `after_batch()` is timed too (what the worker does per batch besides the stages)."""
        chain = Chain(stages[0], stages[1:])
        failures: list = []
        t0, c0 = time.perf_counter(), time.process_time()
        count = 0
        async for records in self.batches():
            # consumed records go in as they are, as the worker hands them over (streams.runtime.worker
            # aliases ConsumerRecord.timestamp as timestamp_ms): no copy per record
            await chain.run_async(records, failures)  # yields between sub-batches: the next fetch overlaps
            if after_batch is not None:
                after_batch()
            count += len(records)
        return count / (time.perf_counter() - t0), count / (time.process_time() - c0), len(failures)


def median(values: list[float]) -> float:
    return statistics.median(values)


def summary(bench: str, figures: dict, ratios: dict) -> None:
    """The last line of every benchmark: one JSON object with the headline numbers."""
    print(orjson.dumps({"bench": bench, "figures": figures, "ratios": ratios}).decode())
