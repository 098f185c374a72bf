"""Bootstrap a `ReferenceTable` from a compacted topic and keep it current (stream-table join).

    loader = ReferenceTableLoader(bootstrap, "registry.devices", table)
    await loader.start()       # returns once the table holds everything up to the end offsets
    ...                        # loader keeps following the topic in the background
    await loader.stop()

Every worker reads all partitions of the table topic (a global table): a device registry or a
profile table is small next to the event stream and must be joinable from any partition.
Keys and values are decoded by `decode_key` / `decode_value`; the defaults understand plain
JSON and Debezium output, so a table can be fed straight from a CDC topic: the row is `after`,
a delete or a tombstone removes the key.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from processors.enrich.reference import ReferenceTable
from processors.normalise.cdc import decode_key
from streams.kafka.read import follow, partitions_of, read_to_end

log = logging.getLogger(__name__)


def decode_table_key(key: bytes | None) -> str | None:
    """Text keys as is; a JSON key with one field ({"id": 7}, or Debezium's {schema, payload}) -> "7"."""
    if key is None:
        return None
    value = decode_key(key)  # JSON, Debezium's {schema, payload} unwrapped; raw text if not JSON
    if type(value) is dict and len(value) == 1:
        value = next(iter(value.values()))
    if type(value) is str:
        return value
    if type(value) in (int, float, bool):
        return str(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def decode_table_value(value: bytes | None) -> dict | None:
    """A row dict, or None when the record deletes the key (tombstone, Debezium delete, __deleted)."""
    if value is None:
        return None
    row = orjson.loads(value)
    if row is None:  # a JSON null written where a tombstone was meant
        return None
    if type(row) is not dict:
        raise ValueError(f"expected a JSON object or null, got {type(row).__name__}")
    if "payload" in row and "schema" in row:
        row = row["payload"]
        if row is None:
            return None
    if "op" in row and "source" in row:  # Debezium envelope: the table holds the current row
        return row.get("after") if row["op"] != "d" else None
    if row.get("__deleted") in ("true", True):
        return None
    if any(k.startswith("__") for k in row):
        row = {k: v for k, v in row.items() if not k.startswith("__")}
    return row


class ReferenceTableLoader:
    def __init__(self, bootstrap_servers: str, topic: str, table: ReferenceTable, *,
                 decode_key: Callable[[bytes | None], str | None] = decode_table_key,
                 decode_value: Callable[[bytes | None], Any] = decode_table_value,
                 client_id: str = "eventweir-table", **consumer_options: Any):
        self.topic, self.table = topic, table
        self.decode_key, self.decode_value = decode_key, decode_value
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None,
                                          enable_auto_commit=False, client_id=client_id, **consumer_options)
        self.ready = asyncio.Event()
        self.errors = 0
        self._task: asyncio.Task | None = None

    def _apply(self, records) -> None:
        for rec in records:
            key = self.decode_key(rec.key)
            if key is None:
                self.errors += 1  # a table row without a key cannot be joined on
                continue
            try:
                value = self.decode_value(rec.value)
            except ValueError as exc:
                self.errors += 1
                log.warning("table %s: skipping %s[%d]@%d: %s", self.table.name, rec.topic, rec.partition,
                            rec.offset, exc)
                continue
            self.table.apply(key, value)

    async def start(self, timeout: float = 60.0) -> None:
        await self._consumer.start()
        try:
            parts = await partitions_of(self._consumer, self.topic, timeout)
            tps = [TopicPartition(self.topic, p) for p in parts]
            self._consumer.assign(tps)
            await read_to_end(self._consumer, tps, self._apply, timeout)
        except BaseException:
            await self._consumer.stop()
            raise
        self.ready.set()
        self._task = asyncio.create_task(follow(self._consumer, self._apply, f"table {self.table.name} ({self.topic})",
                                                self._fetch_failed), name=f"table-{self.table.name}")

    def _fetch_failed(self) -> None:
        self.errors += 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._consumer.stop()
