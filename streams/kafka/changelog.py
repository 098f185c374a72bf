"""State-store changelogs on compacted topics: write a stage's state changes, restore them.

A stateful stage keeps a `processors.enrich.state.PartitionedState`. After each batch the
runtime writes `state.changes()` to the changelog (streams/runtime/state.py: key = state key,
value = JSON, null = delete; changelog partition = source partition, so the changelog needs at
least as many partitions as the source topic) before committing the source offsets. On
assignment it calls `restore_state(state, ..., partitions)`; on revocation `state.drop(p)`.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from processors.enrich.state import PartitionedState
from streams.kafka.read import partitions_of, read_to_end


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
                         timeout: float = 60.0) -> dict[int, dict[str, Any]]:
    """The latest value per key for each partition (deleted keys absent)."""
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

        def apply(records):
            for rec in records:
                table = result[rec.partition]
                key = rec.key.decode()
                if rec.value is None:
                    table.pop(key, None)
                else:
                    table[key] = orjson.loads(rec.value)

        await read_to_end(consumer, tps, apply, timeout)
    finally:
        await consumer.stop()
    return result


async def restore_state(state: PartitionedState, bootstrap_servers: str, topic: str,
                        partitions: Iterable[int], timeout: float = 60.0) -> None:
    for partition, entries in (await read_changelog(bootstrap_servers, topic, partitions, timeout)).items():
        state.restore(partition, entries)
