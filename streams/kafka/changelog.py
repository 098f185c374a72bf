"""State-store changelogs on compacted topics: write a stage's state changes, restore them.

A stateful stage keeps a `processors.enrich.state.PartitionedState`. Every
`consumer.changelog_interval_ms` the runtime writes `state.changes()` to the changelog (streams/runtime/state.py: key = state key,
value = JSON, null = delete; changelog partition = source partition, so the changelog needs at
least as many partitions as the source topic) before committing the source offsets. On
assignment it calls `restore_state(state, ..., partitions)`; on revocation `state.drop(p)`.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from processors.enrich.state import PartitionedState
from streams.kafka.read import partitions_of, read_to_end

log = logging.getLogger(__name__)


async def ensure_changelog_topic(bootstrap_servers: str, topic: str, partitions: int,
                                 replication_factor: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, replication_factor,
                                            topic_configs={"cleanup.policy": "compact"})])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def read_changelog(bootstrap_servers: str, topic: str, partitions: Iterable[int],
                         timeout: float = 60.0, marker: str | None = None) -> dict[int, dict[str, Any]]:
    """The latest value per key for each partition (deleted keys absent). With a `marker` key
    (PartitionedState.marker), records count only up to a partition's last marker: those after it
    are the start of a write a crash cut short, left out."""
    result: dict[int, dict[str, Any]] = {p: {} for p in partitions}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        available = set(await partitions_of(consumer, topic, timeout))
        missing = sorted(set(result) - available)
        if missing:
            raise ValueError(f"changelog {topic!r} has no partition(s) {missing}: it needs as many partitions "
                             "as the source topic")
        tps = [TopicPartition(topic, p) for p in result]
        consumer.assign(tps)

        unmarked: dict[int, list] = {p: [] for p in result}  # records since the partition's last marker
        marked = None if marker is None else marker.encode()

        def apply(records):
            for rec in records:
                if marker is None:
                    _apply(result[rec.partition], rec)
                    continue
                unmarked[rec.partition].append(rec)
                if rec.key == marked:
                    table = result[rec.partition]
                    for pending in unmarked[rec.partition]:
                        _apply(table, pending)
                    unmarked[rec.partition] = []

        await read_to_end(consumer, tps, apply, timeout)
        for partition, left in unmarked.items():
            if left:
                log.warning("changelog %s[%d]: left out the last %d records, a state write cut short (by a crash); "
                            "the records they came from are processed again", topic, partition, len(left))
    finally:
        await consumer.stop()
    return result


def _apply(table: dict[str, Any], rec: Any) -> None:
    key = rec.key.decode()
    if rec.value is None:
        table.pop(key, None)
    else:
        table[key] = orjson.loads(rec.value)


async def restore_state(state: PartitionedState, bootstrap_servers: str, topic: str,
                        partitions: Iterable[int], timeout: float = 60.0) -> None:
    for partition, entries in (await read_changelog(bootstrap_servers, topic, partitions, timeout,
                                                    state.marker)).items():
        state.restore(partition, entries)
