"""The state of stateful enrichment stages, kept in compacted changelog topics.

The state changes of the batches processed in `consumer.changelog_interval_ms` are written to the
changelogs of their stores together, the latest value of each key once, and the batches' tickets are
held until then, so an offset is committed only once the state it produced is durable. On assignment a
partition's state is read back from its changelog before any of its records is processed; on
revocation it is dropped (the changelog holds it for the next owner).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import orjson
from aiokafka import TopicPartition

from processors.enrich.state import PartitionedState
from streams import metrics
from streams.config import Config
from streams.kafka.changelog import ensure_changelog_topic, restore_state
from streams.kafka.producer import BatchProducer
from streams.runtime.enrichment import changelog_name, state_stores

log = logging.getLogger(__name__)

# keys changed since the last flush past which the changes are written at once, however recent the
# flush: bounds the flush's own pause (about 1 µs a key) and what a restart replays
MAX_PENDING_KEYS = 100_000


class StateStores:
    """(source topic, store, changelog topic) of every stateful stage, and the changelog writer."""

    def __init__(self, config: Config):
        self.config = config
        self.stores: list[tuple[str, PartitionedState, str]] = []
        self._queue: asyncio.Queue = asyncio.Queue()
        self.interval = config.consumer.changelog_interval_ms / 1000
        self._held: list = []  # tickets of the batches processed since the last flush
        self._flushed = time.monotonic()
        self._topics: set[str] = set()
        self._producer: BatchProducer | None = None
        self._writer: asyncio.Task | None = None

    async def start(self, pipeline: Any, producer: Any, batches: BatchProducer) -> None:
        """Find the pipeline's stateful stages and make their changelog topics (as many
        partitions as their source topic), then start the writer."""
        bootstrap = self.config.kafka.bootstrap_servers
        for topic, chain in getattr(pipeline, "chains", {}).items():
            for store in state_stores(chain.stages):
                changelog = changelog_name(self.config, topic, store.name)
                partitions = await producer.partitions_for(topic)
                await ensure_changelog_topic(bootstrap, changelog, max(1, len(partitions or ())))
                await batches.partitions(changelog)
                self.stores.append((topic, store, changelog))
                self._topics.add(topic)
        if self.stores:
            self._producer = batches
            self._writer = asyncio.create_task(self._write(), name="changelogs")

    def __bool__(self) -> bool:
        return bool(self.stores)

    def hold(self, tickets: Mapping) -> None:
        """A batch was processed: its stateful partitions' offsets wait for the next `flush`, whose
        changelog writes carry the state this batch changed."""
        topics = self._topics
        for tp, ticket in tickets.items():
            if tp.topic in topics:
                ticket.add(1)
                self._held.append(ticket)

    def due(self, caught_up: bool) -> bool:
        """Time to write the changes gathered since the last flush: the interval has passed, the worker
        has caught up with its input (nothing to coalesce with: commit promptly), or many keys wait."""
        if not self._held:
            return False
        if caught_up or time.monotonic() - self._flushed >= self.interval:
            return True
        return sum(store.pending() for _, store, _ in self.stores) >= MAX_PENDING_KEYS

    def flush(self) -> None:
        """Hand every store's changes since the last flush (the latest value of each key changed, however
        often it changed) to the changelog writer, with the batches' held tickets: their offsets are
        committed once all of it is written. Writing a key once per interval instead of once per batch
        is what Kafka Streams' record cache does; a crash loses nothing, since no offset whose changes
        are unwritten is committed."""
        held, self._held = self._held, []
        self._flushed = time.monotonic()
        writes = []
        for _, store, changelog in self.stores:
            by_partition: dict[int, list] = defaultdict(list)
            for partition, key, value in store.changes():
                # orjson's bytes keep its whole 4 KB output buffer; a copy of the exact size does not
                # (the changes wait here for the writer: about 1 KB a window more of peak RSS, NOTES.md)
                by_partition[partition].append((key.encode(), None if value is None else b"%b" % orjson.dumps(value), None))
            writes += [(changelog, partition, records, store.name) for partition, records in by_partition.items()]
        if writes or held:
            self._queue.put_nowait((writes, held))

    async def _write(self) -> None:
        """One writer, in flush order: a key's changes reach the changelog in the order they happened."""
        assert self._producer is not None
        while True:
            writes, held = await self._queue.get()
            try:
                sent = [await self._producer.send_to_partition(changelog, partition, records)
                        for changelog, partition, records, _ in writes]
                await asyncio.gather(*(future for batch in sent for future, _ in batch))
            except Exception:
                # the tickets stay held: these partitions' offsets stop advancing, so after a restart
                # their events are processed again and the state rebuilt, rather than lost
                log.exception("could not write %d state changes to %s; holding the partitions' commits "
                              "(restart the worker once the topics are writable)",
                              sum(len(w[2]) for w in writes), sorted({w[0] for w in writes}))
                for _, _, records, store in writes:
                    metrics.STATE_CHANGES.labels(store, "failed").inc(len(records))
                continue
            for _, _, records, store in writes:
                metrics.STATE_CHANGES.labels(store, "written").inc(len(records))
            for ticket in held:
                ticket.done(1)

    async def restore(self, assigned: set[TopicPartition]) -> None:
        """Read the state of newly assigned partitions back from their changelogs."""
        for topic, store, changelog in self.stores:
            partitions = sorted(tp.partition for tp in assigned if tp.topic == topic)
            if partitions:
                await restore_state(store, self.config.kafka.bootstrap_servers, changelog, partitions)
                log.info("restored %s state of %s%s from %s", store.name, topic, partitions, changelog)

    def committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Tell the stores what was committed: state kept until its outputs were safe may go."""
        for topic, store, _ in self.stores:
            for tp, offset in offsets.items():
                if tp.topic == topic:
                    store.committed(tp.partition, offset)

    def drop(self, revoked: set[TopicPartition]) -> None:
        for topic, store, _ in self.stores:
            for tp in revoked:
                if tp.topic == topic:
                    store.drop(tp.partition)  # its changelog holds it for the next owner

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
