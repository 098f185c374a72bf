"""The discovered-schema registry: a compacted topic, key `<source>/<detail-type>`, value the JSON
{"source", "detail-type", "versions": [{"version", "schema", "created"}, ...]} (oldest first; the
schemas are processors/discovery.py's). The last record of a key is the registry's view of that
type: every worker, the CLI and a restarted worker read the same one.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.kafka.admin import ensure_topics
from streams.kafka.read import follow, partitions_of, read_to_end

log = logging.getLogger(__name__)

TypeKey = tuple[str, str]
Versions = list[dict[str, Any]]


def registry_key(key: TypeKey) -> bytes:
    return f"{key[0]}/{key[1]}".encode()


MAX_RECORD_BYTES = 900_000  # under Kafka's default message.max.bytes (1 MB)


def encode(key: TypeKey, versions: Versions) -> tuple[Versions, bytes]:
    """The record value of a type, and the versions it holds: the oldest are dropped while it is
    larger than MAX_RECORD_BYTES (the latest always stays; processors/discovery.Limits bound it)."""
    while True:
        value = orjson.dumps({"source": key[0], "detail-type": key[1], "versions": versions})
        if len(value) <= MAX_RECORD_BYTES or len(versions) <= 1:
            return versions, value
        versions = versions[1:]


def decode(value: bytes) -> tuple[TypeKey, Versions]:
    doc = orjson.loads(value)
    versions = doc["versions"]
    if not isinstance(versions, list) or not all(isinstance(v.get("schema"), dict) for v in versions):
        raise ValueError("versions: expected a list of {version, schema, created}")
    return (str(doc["source"]), str(doc["detail-type"])), versions


class RegistryTopic:
    """Read the registry to its end, then follow it; `write` a type's versions. `records` is the
    current view, each type's record as it is on the topic (JSON bytes hold a schema in a fraction
    of the memory parsed dicts take; `versions(key)` parses one when it is needed); `on_change(key)`
    is called for each type another writer changed."""

    def __init__(self, client_options: dict[str, Any], topic: str, on_change: Callable[[TypeKey], None] | None = None):
        self.client_options, self.topic, self.on_change = client_options, topic, on_change
        self.records: dict[TypeKey, bytes] = {}
        self._offsets: dict[bytes, int] = {}  # key -> offset last applied (the topic has one partition)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._tail: asyncio.Task | None = None

    async def start(self, timeout: float = 60.0) -> None:
        await ensure_topics(self.client_options["bootstrap_servers"], {self.topic: 1}, compacted={self.topic})
        self._producer = AIOKafkaProducer(**self.client_options, acks="all")
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(**self.client_options, group_id=None, enable_auto_commit=False)
        await self._consumer.start()
        tps = [TopicPartition(self.topic, p) for p in await partitions_of(self._consumer, self.topic, timeout)]
        self._consumer.assign(tps)
        await read_to_end(self._consumer, tps, self._apply, timeout)
        self._tail = asyncio.create_task(follow(self._consumer, self._changed, f"schema registry {self.topic}"),
                                         name="schema-registry")

    async def close(self) -> None:
        if self._tail:
            self._tail.cancel()
            await asyncio.gather(self._tail, return_exceptions=True)
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()

    def _changed(self, records) -> None:
        """Records fetched while following: another writer's changes."""
        for key in self._apply(records):
            if self.on_change is not None:
                self.on_change(key)

    def _apply(self, records) -> list[TypeKey]:
        changed = []
        for rec in records:
            if rec.key is None or rec.value is None:
                continue
            if self._offsets.get(rec.key, -1) >= rec.offset:
                continue  # our own write, applied when it was acknowledged
            self._offsets[rec.key] = rec.offset
            try:
                key, _ = decode(rec.value)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.error("schema registry %s: record at offset %d is not valid, ignored: %s", self.topic, rec.offset, exc)
                continue
            self.records[key] = rec.value
            changed.append(key)
        return changed

    async def write(self, key: TypeKey, versions: Versions) -> None:
        """Write and wait for the ack, then apply at once (this worker reads its own writes)."""
        assert self._producer is not None, "start() first"
        k = registry_key(key)
        versions, value = encode(key, versions)
        meta = await (await self._producer.send(self.topic, key=k, value=value))
        if self._offsets.get(k, -1) < meta.offset:
            self._offsets[k] = meta.offset
            self.records[key] = value

    def versions(self, key: TypeKey) -> Versions:
        """The type's versions, oldest first ([] for a type the registry does not have)."""
        record = self.records.get(key)
        return [] if record is None else decode(record)[1]


async def read_registry(client_options: dict[str, Any], topic: str, timeout: float = 30.0) -> dict[TypeKey, Versions]:
    """The registry as it stands (for `eventweir schemas discovered`)."""
    registry = RegistryTopic(client_options, topic)
    consumer = AIOKafkaConsumer(**client_options, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic, timeout)]
        consumer.assign(tps)
        await read_to_end(consumer, tps, registry._apply, timeout)
    finally:
        await consumer.stop()
    return {key: decode(value)[1] for key, value in registry.records.items()}
