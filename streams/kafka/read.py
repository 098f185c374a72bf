"""Reading a topic's partitions from the beginning up to their end offsets (bootstrap/restore),
and following them after that.

Shared by the reference-table loader, the changelog restore, the control topic and the
discovered-schema registry: each must have seen every record that existed when it started before
the worker may report ready; the followers then apply what comes next.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)


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


async def follow(consumer: AIOKafkaConsumer, on_batch: Callable[[list], object], what: str,
                 on_error: Callable[[], None] | None = None) -> None:
    """After `read_to_end`: feed each fetched partition's records to `on_batch(records)` until cancelled.
    A failed fetch is logged (naming `what`), counted by `on_error` and retried a second later: a
    follower that stopped would leave its worker on a stale view with nothing to show for it."""
    while True:
        try:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: fetch failed; retrying", what)
            if on_error is not None:
                on_error()
            await asyncio.sleep(1.0)
            continue
        for records in batches.values():
            on_batch(records)
