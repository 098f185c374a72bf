"""Stream-table join: copy fields from an in-memory reference table into each event.

The table (device registry, user profiles, ...) is fed from a compacted topic by
`streams.kafka.tables.ReferenceTableLoader`, which calls `apply(key, value)` per record, None for a
tombstone. `ReferenceJoin` looks events up by a key path and copies configured fields into
`into` (default `detail.<table name>`); when the key is absent from the table it passes the
event unchanged, fills `default`, or dead-letters it, as configured.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from processors.core import Event, Failure, json_member
from processors.paths import get_path, split_path

ON_MISSING = ("pass", "default", "dead-letter")


class ReferenceTable:
    def __init__(self, name: str, rows: Mapping[str, dict] | None = None):
        self.name = name
        self.rows: dict[str, dict] = dict(rows or {})
        self.updates = 0

    def apply(self, key: str, value: dict | None) -> None:
        self.updates += 1
        if value is None:
            self.rows.pop(key, None)
        else:
            self.rows[key] = value

    def get(self, key: str) -> dict | None:
        return self.rows.get(key)

    def __len__(self) -> int:
        return len(self.rows)


class JoinSettings(BaseModel):
    """`{type: join, table: devices, key: detail.device_id, fields: [site]}`: the table by its name
    under `tables`, the event path to join on as `key`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str
    key: str
    fields: list[str] | dict[str, str] | None = None
    into: str | None = None
    on_missing: str = "pass"
    default: dict | None = None


class ReferenceJoin:
    stage = "enrich"
    # Event.added stays true: a join into a new top-level key appends its member; any other
    # change (a key replaced, a nested `into`) sets it to None
    appends_json = True
    Settings = JoinSettings

    @classmethod
    def from_settings(cls, settings: JoinSettings, context) -> ReferenceJoin:
        tables = context.tables
        if settings.table not in tables:
            known = ", ".join(sorted(tables)) or "none are configured"
            raise ValueError(f"table: expected the name of a table under `tables` ({known}), got {settings.table!r}")
        return cls(tables[settings.table], key_path=settings.key, fields=settings.fields, into=settings.into,
                   on_missing=settings.on_missing, default=settings.default)

    def __init__(self, table: ReferenceTable | Mapping[str, dict], key_path: str,
                 fields: Sequence[str] | Mapping[str, str] | None = None, into: str | None = None,
                 on_missing: str = "pass", default: dict | None = None):
        """`fields`: names to copy, or {row field: output name}; None copies the whole row."""
        if on_missing not in ON_MISSING:
            raise ValueError(f"ReferenceJoin on_missing={on_missing!r}: expected one of {', '.join(ON_MISSING)}")
        if on_missing == "default" and default is None:
            raise ValueError("ReferenceJoin on_missing='default' needs a `default` dict")
        self.table = table if isinstance(table, ReferenceTable) else ReferenceTable("reference", table)
        self._key = split_path(key_path)
        self.key_path = key_path
        self._fields = None if fields is None else (
            dict(fields) if isinstance(fields, Mapping) else {f: f for f in fields})
        target = split_path(into or f"detail.{self.table.name}")
        self._parent, self._leaf = target[:-1], target[-1]
        self.on_missing, self.default = on_missing, default
        self.hits = self.misses = 0
        self._projected: dict[str, list] = {}
        self._default_member: bytes | None = None
    def _project(self, key: str, row: dict) -> list:
        """[row, the copied fields, their JSON member or None until needed], for `key`."""
        fields = self._fields
        if fields is None:
            value = dict(row)
        else:
            value = {}
            for src, dst in fields.items():
                value[dst] = row.get(src)
        if len(self._projected) >= 100_000:
            self._projected.clear()
        entry = self._projected[key] = [row, value, None]
        return entry

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        out = []
        rows, path, projected = self.table.rows, self._key, self._projected
        two = len(path) == 2
        first, second = path[0], path[-1]
        parent_path, leaf = self._parent, self._leaf
        hits = misses = 0
        default = self.default if self.default is not None else {}  # set when on_missing is "default"
        key: Any  # a JSON value, then its str to look up
        entry: list[Any]
        for event in events:
            body = event.body
            if two:  # the usual "detail.<field>" without the generic walk
                holder = body.get(first)
                key = holder.get(second) if type(holder) is dict else None
            else:
                key = get_path(body, path)
            if key is not None and type(key) is not str:
                key = str(key)
            row = rows.get(key) if key is not None else None
            if row is None:
                misses += 1
                if self.on_missing == "dead-letter":
                    failures.append(Failure(event.record, self.stage, "reference_missing",
                                            f"no row in table {self.table.name!r} for {self.key_path}={key!r}"))
                    continue
                if self.on_missing == "pass":
                    out.append(event)
                    continue
                value: Any = dict(default)
            else:
                hits += 1
                # the copied fields are built once per row version and shared by the events that
                # join it (the table replaces, never mutates, a row): stages after must not mutate them
                cached = projected.get(key)
                entry = self._project(key, row) if cached is None or cached[0] is not row else cached
                value = entry[1]
            added = event.added
            if added is not None:
                if parent_path or leaf in body:
                    event.added = None
                else:
                    member = entry[2] if row is not None else self._default_member
                    if member is None:
                        member = _member_of(leaf, value)
                        if row is not None:
                            entry[2] = member
                        else:
                            self._default_member = member
                    event.added = None if member is None else added + (member,)
            parent = body
            for step in parent_path:
                parent = parent.setdefault(step, {})
            parent[leaf] = value
            out.append(event)
        self.hits += hits
        self.misses += misses
        return out


def _member_of(name: str, value) -> bytes | None:
    try:
        return json_member(name, value)
    except TypeError:
        return None
