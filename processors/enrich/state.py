"""Keyed state kept per Kafka partition, exportable for a compacted changelog topic.

Stages that remember things across batches (sessions, last reading per device, CDC positions,
SCD2 current rows) keep them here. The runtime persists `changes()` every so often (key ->
latest value, None = delete: exactly a compacted topic's semantics), and on rebalance calls
`drop(p)` for revoked partitions and `restore(p, entries)` for assigned ones, so a key's state
lives with the partition its events arrive on; after each commit it calls `committed(p, offset)`.
Values must be JSON-serialisable.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class PartitionedState:
    # The key of an entry saying how far the state goes (the last offset applied: replay.py), for stages
    # that have one. A partition's changes end with it, so a write cut short by a crash (its first
    # records in the changelog, not the rest) is recognised on restore and left out (read_changelog):
    # the state restored is the one of the last complete write, never newer in some keys than others.
    marker: str | None = None

    def __init__(self, name: str):
        self.name = name
        self._parts: dict[int, dict[str, Any]] = {}
        self._dirty: dict[int, dict[str, Any]] = {}

    def table(self, partition: int) -> dict[str, Any]:
        """The live dict for a partition: read freely, write through `put`/`delete`."""
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = {}
        return part

    def tables(self, partition: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """(live dict, dirty dict) for hot loops: write a key to both instead of calling `put`."""
        dirty = self._dirty.get(partition)
        if dirty is None:
            dirty = self._dirty[partition] = {}
        return self.table(partition), dirty

    def put(self, partition: int, key: str, value: Any) -> None:
        self.table(partition)[key] = value
        self._dirty.setdefault(partition, {})[key] = value

    def delete(self, partition: int, key: str) -> None:
        if self.table(partition).pop(key, None) is not None:
            self._dirty.setdefault(partition, {})[key] = None

    def pending(self) -> int:
        """How many keys changed since the last `changes()`."""
        return sum(map(len, self._dirty.values()))

    def changes(self) -> list[tuple[int, str, Any]]:
        """(partition, key, value or None for deleted) since the last call, latest value per key; with
        a `marker`, each partition's changes end with it. The values are the live ones, which a stage
        may change in place later: serialise them before it processes anything else."""
        marker = self.marker
        if marker is None:
            out = [(p, k, v) for p, keys in self._dirty.items() for k, v in keys.items()]
        else:
            out = []
            for p, keys in self._dirty.items():
                if not keys:
                    continue
                keys.pop(marker, None)
                out += [(p, k, v) for k, v in keys.items()]
                value = self._parts.get(p, {}).get(marker)
                if value is not None:
                    out.append((p, marker, value))
        self._dirty = {}
        return out

    def snapshot(self, partition: int) -> dict[str, Any]:
        return dict(self._parts.get(partition, {}))

    def restore(self, partition: int, entries: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """Replace a partition's state; entries in changelog order, a None value deletes the key."""
        items = entries.items() if isinstance(entries, Mapping) else entries
        part: dict[str, Any] = {}
        for key, value in items:
            if value is None:
                part.pop(key, None)
            else:
                part[key] = value
        self._parts[partition] = part
        self._dirty.pop(partition, None)
        self._restored(partition)

    def drop(self, partition: int) -> None:
        """Forget a revoked partition (its changelog holds it for the next owner)."""
        self._parts.pop(partition, None)
        self._dirty.pop(partition, None)

    def partitions(self) -> list[int]:
        return sorted(self._parts)

    def committed(self, partition: int, offset: int) -> None:
        """Hook: the runtime committed `partition` up to `offset` (records below it are done, with
        every output they produced); state kept only until then may be forgotten."""

    def _restored(self, partition: int) -> None:
        """Hook for stages that derive caches from the restored entries."""
