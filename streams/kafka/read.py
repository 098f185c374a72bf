"""Reading a topic's partitions from the beginning up to their end offsets (bootstrap/restore).

Shared by the reference-table loader and the changelog restore: both must have seen every
record that existed when they started before the worker may report ready.
"""
from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition


async def partitions_of(consumer: AIOKafkaConsumer, topic: str, timeout: float) -> list[int]:
    # let the group-less consumer's coordinator task start: stopping a consumer before it ran makes
    # aiokafka's stop() raise CancelledError, which would hide our own error
    await asyncio.sleep(0)
    deadline = time.monotonic() + timeout
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic!r} not found on the cluster after {timeout:.0f}s")
        await consumer.topics()  # refreshes metadata
        await asyncio.sleep(0.2)


async def read_to_end(consumer: AIOKafkaConsumer, tps: list[TopicPartition], on_batch, timeout: float) -> None:
    """Seek `tps` (already assigned) to the beginning and feed records to `on_batch(records)` until each
    partition's position reaches the end offset it had when we started."""
    await consumer.seek_to_beginning(*tps)
    end = await consumer.end_offsets(tps)
    pending = {tp for tp in tps if end[tp] > 0}
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            behind = {f"{tp.topic}[{tp.partition}]": end[tp] for tp in pending}
            raise TimeoutError(f"did not reach the end offsets {behind} within {timeout:.0f}s")
        batches = await consumer.getmany(*pending, timeout_ms=200, max_records=5000)
        for records in batches.values():
            on_batch(records)
        for tp in list(pending):
            if await consumer.position(tp) >= end[tp]:
                pending.discard(tp)
