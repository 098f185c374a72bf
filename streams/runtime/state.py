"""The state of stateful enrichment stages, kept in compacted changelog topics.

Each batch's state changes are written to the changelog of their store, holding their partition's
ticket, so an offset is committed only once the state it produced is durable. On assignment a
partition's state is read back from its changelog before any of its records is processed; on
revocation it is dropped (the changelog holds it for the next owner).
"""
from __future__ import annotations

import asyncio
import logging
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


class StateStores:
    """(source topic, store, changelog topic) of every stateful stage, and the changelog writer."""

    def __init__(self, config: Config):
        self.config = config
        self.stores: list[tuple[str, PartitionedState, str]] = []
        self._queue: asyncio.Queue = asyncio.Queue()
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
        if self.stores:
            self._producer = batches
            self._writer = asyncio.create_task(self._write(), name="changelogs")

    def __bool__(self) -> bool:
        return bool(self.stores)

    def queue_changes(self, tickets: Mapping) -> None:
        """Hand this batch's state changes to the changelog writer; each holds its partition's ticket."""
        for topic, store, changelog in self.stores:
            by_partition: dict[int, list] = defaultdict(list)
            for partition, key, value in store.changes():
                # orjson's bytes keep its whole 4 KB output buffer; a copy of the exact size does not
                # (the changes wait here for the writer: about 1 KB a window more of peak RSS, NOTES.md)
                by_partition[partition].append((key.encode(), None if value is None else b"%b" % orjson.dumps(value), None))
            for partition, records in by_partition.items():
                ticket = tickets.get(TopicPartition(topic, partition))
                if ticket is not None:
                    ticket.add(1)
                self._queue.put_nowait((changelog, partition, records, ticket, store.name))

    async def _write(self) -> None:
        """One writer, in batch order: a key's changes reach the changelog in the order they happened."""
        assert self._producer is not None
        while True:
            changelog, partition, records, ticket, store = await self._queue.get()
            try:
                sent = await self._producer.send_to_partition(changelog, partition, records)
                await asyncio.gather(*(future for future, _ in sent))
            except Exception:
                # the ticket stays held: this partition's offsets stop advancing, so after a restart
                # its events are processed again and the state rebuilt, rather than lost
                log.exception("could not write %d state changes to %s[%d]; holding the partition's commits "
                              "(restart the worker once the topic is writable)", len(records), changelog, partition)
                metrics.STATE_CHANGES.labels(store, "failed").inc(len(records))
                continue
            metrics.STATE_CHANGES.labels(store, "written").inc(len(records))
            if ticket is not None:
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
