"""CDC enrichment: per-key deduplication by source position, and SCD type 2 history.

Both work on envelopes from `processors.normalise.CdcNormaliser`.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from processors.core import Event, Failure
from processors.enrich.state import PartitionedState
from processors.normalise.envelope import format_time_ms, make_envelope

VALID_TO_OPEN = "9999-12-31T00:00:00Z"  # the sentinel end of a current SCD2 version
NULL_MARKER = "\x00NULL\x00"  # strings starting with \x00 are escaped, so no value can equal it
SEPARATOR = "\x1f"  # unit separator: "ab"+"c" and "a"+"bc" hash differently


def position(detail: dict) -> list:
    """A comparable log position: Postgres [lsn], MySQL [file, pos, row], else [source ts_ms]."""
    pos = detail.get("source_position") or {}
    if "lsn" in pos:
        return [pos["lsn"]]
    if "file" in pos:
        return [pos["file"], pos.get("pos", 0), pos.get("row", 0)]
    for field in ("commit_lsn", "change_lsn", "scn", "ord"):
        if field in pos:
            return [pos[field]]
    return [detail.get("source_ts_ms") or 0]


def row_key(detail: dict) -> str:
    """`<table>|<key as canonical JSON>`; the key is the record key, else the row itself."""
    key = detail.get("key")
    if key is None:
        key = detail.get("after") or detail.get("before")
    return f"{detail.get('table')}|{orjson.dumps(key, option=orjson.OPT_SORT_KEYS).decode()}"


class CdcDeduplicator:
    """Drops changes at or before the last position applied for their key (replays, re-snapshots).

    With `compact=True` only the latest change per key within a batch goes on as well (for
    targets that want current state, not every step). Dropped changes are counted in `stale`
    and `superseded`. A tombstone deletes the key's position. State: per partition,
    key -> position list.
    """

    stage = "enrich"

    def __init__(self, compact: bool = False, state: PartitionedState | None = None):
        self.compact = compact
        self.state = state or PartitionedState("cdc-positions")
        self.stale = self.superseded = 0

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        state = self.state
        kept: list[Event] = []
        latest: dict[str, int] = {}
        for event in events:
            detail = event.body["detail"]
            if detail.get("op") in ("t", "m"):  # not about one row
                kept.append(event)
                continue
            key = row_key(detail)
            p = event.record.partition
            if detail.get("tombstone"):
                state.delete(p, key)
                kept.append(event)
                continue
            pos = position(detail)
            last = state.table(p).get(key)
            if last is not None and pos <= last:
                self.stale += 1
                continue
            state.put(p, key, pos)
            if self.compact:
                previous = latest.get(key)
                if previous is not None:
                    kept[previous] = None  # type: ignore[call-overload]
                    self.superseded += 1
                latest[key] = len(kept)
            kept.append(event)
        return [e for e in kept if e is not None] if self.compact else kept


def change_hash(row: dict | None, fields: Sequence[str]) -> str:
    """sha256 over the tracked values joined by SEPARATOR, NULL_MARKER for null.

    Strings go in as they are (escaped only when they contain the separator or could be taken
    for the marker); other values as JSON. A column's type does not change between versions of a
    row, so the string "1" and the number 1 never compete for the same slot.
    """
    parts = []
    get = (row or {}).get
    for f in fields:
        v = get(f)
        if v is None:
            parts.append(NULL_MARKER)
        elif type(v) is str:
            if SEPARATOR in v or v[:1] == "\x00" or "\\" in v:
                v = v.replace("\\", "\\\\").replace(SEPARATOR, "\\x1f").replace("\x00", "\\x00")
            parts.append(v)
        else:
            parts.append(orjson.dumps(v).decode())
    return hashlib.sha256(SEPARATOR.join(parts).encode()).hexdigest()


class Scd2History:
    """Emits SCD type 2 history records (`<table>.history`) next to the change events.

    Each change that alters a tracked field closes the key's current version (valid_to = the
    change time, is_current false) and opens a new one (valid_to = 9999-12-31 sentinel); a delete
    only closes. Unchanged tracked fields (same change hash) produce nothing. `tracked` None
    tracks every column. State per partition: key -> [change hash, valid_from, row].
    """

    stage = "enrich"

    def __init__(self, tracked: Sequence[str] | None = None, replace: bool = False,
                 state: PartitionedState | None = None):
        self.tracked = list(tracked) if tracked else None
        self.replace = replace
        self.state = state or PartitionedState("scd2")

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            if not self.replace:
                out.append(event)
            detail = event.body["detail"]
            op = detail.get("op")
            if op not in ("c", "u", "d", "r"):
                continue
            key = row_key(detail)
            p = event.record.partition
            current = self.state.table(p).get(key)
            # valid_from/valid_to order versions, so they keep the change's milliseconds
            at = format_time_ms(detail["source_ts_ms"]) if detail.get("source_ts_ms") else event.body["time"]
            if op == "d":
                if current is not None:
                    out.append(self._version(event, "closed", current[2], current[1], at, current[0], False))
                    self.state.delete(p, key)
                continue
            row = detail.get("after") or {}
            fields = self.tracked or sorted(row)
            digest = change_hash(row, fields)
            if current is not None:
                if current[0] == digest:
                    continue
                out.append(self._version(event, "closed", current[2], current[1], at, current[0], False))
            out.append(self._version(event, "opened", row, at, VALID_TO_OPEN, digest, True))
            self.state.put(p, key, [digest, at, row])
        return out

    def _version(self, cause: Event, kind: str, row: Any, valid_from: str, valid_to: str, digest: str,
                 current: bool) -> Event:
        body = cause.body
        detail = {"table": body["detail"].get("table"), "key": body["detail"].get("key"), "row": row,
                  "valid_from": valid_from, "valid_to": valid_to, "is_current": current, "change_hash": digest}
        # one change closes at most one version and opens at most one: its id plus the kind is unique
        return Event(cause.record, make_envelope(
            f"{body['id']}.{kind}", f"{detail['table']}.history", body["source"],
            body["account"], body["time"], body["region"], [], detail))
