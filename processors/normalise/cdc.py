"""Debezium change events -> domain events in the envelope.

Accepts the three shapes Debezium's JSON output takes: the bare envelope, the
`{"schema": .., "payload": ..}` wrapping (schemas.enable=true), and rows flattened by
`ExtractNewRecordState` (metadata in `__op`, `__table`, `__source_ts_ms`, `__lsn`, `__deleted`).

detail-type is `<table>.created|updated|deleted|snapshot` (op c, u, d, r; t -> `truncated`,
m -> `<prefix>.message`). detail carries `before`, `after`, `changed_fields`, the record `key`,
`source_position` (Postgres lsn/txId, MySQL file/pos/row/gtid), `lag_ms` = ts_ms - source.ts_ms
(how far Debezium ran behind the database) and `snapshot`. `time` is when the row changed in the
database (source.ts_ms). Tombstones (kept by the decoder) are skipped and counted, or with
`tombstones="delete"` become `<table>.deleted` events for the key: use that for flattened topics
where delete.handling.mode=none makes the tombstone the only trace of a delete.
"""
from __future__ import annotations

from typing import Any

import orjson

from processors.core import Event, Failure, SourceRecord
from processors.decode import TOMBSTONE
from processors.normalise.envelope import derived_id, format_time, make_envelope

VERBS = {"c": "created", "u": "updated", "d": "deleted", "r": "snapshot", "t": "truncated"}
# source fields that locate a change in the database log, per connector family
POSITION_FIELDS = ("lsn", "txId", "sequence", "file", "pos", "row", "gtid", "change_lsn", "commit_lsn",
                   "event_serial_no", "scn", "commit_scn", "ord")
_BY_CONNECTOR: dict[str | None, tuple[str, ...]] = {
    "postgresql": ("lsn", "txId", "sequence"), "mysql": ("file", "pos", "row", "gtid"),
    "mariadb": ("file", "pos", "row", "gtid")}


def source_position(source: dict) -> dict:
    position = {}
    for field in _BY_CONNECTOR.get(source.get("connector"), POSITION_FIELDS):  # a loop, not a comprehension:
        value = source.get(field)                                               # cheaper per event in 3.11
        if value is not None:
            position[field] = value
    return position
_NOT_SNAPSHOT = (None, False, "false")


def decode_key(key: bytes | None) -> Any:
    """A Debezium record key as JSON (unwrapping {schema, payload}); raw text if it is not JSON."""
    if key is None:
        return None
    try:
        value = orjson.loads(key)
    except orjson.JSONDecodeError:
        return key.decode("utf-8", "replace")
    if type(value) is dict and "payload" in value and "schema" in value:
        return value["payload"]
    return value


_ABSENT = object()


def changed_fields(op: str, before: dict | None, after: dict | None) -> list[str]:
    """Columns whose value differs (update), in column order; every column for create/snapshot."""
    if op == "u" and before is not None and after is not None:
        get = before.get
        changed = [k for k, v in after.items() if get(k, _ABSENT) != v]
        if len(before) != len(after) or changed and any(k not in after for k in before):
            changed += [k for k in before if k not in after]
        return changed
    if op in ("c", "r") and after is not None:
        return list(after)
    return []


class CdcNormaliser:
    stage = "normalise"

    def __init__(self, source: str = "eventweir.cdc", account: str = "000000000000", region: str = "local",
                 tombstones: str = "skip"):
        if tombstones not in ("skip", "delete"):
            raise ValueError(f"CdcNormaliser tombstones={tombstones!r}: expected 'skip' or 'delete'")
        self.source, self.account, self.region, self.tombstones = source, account, region, tombstones
        self.skipped_tombstones = 0
        self._detail_types: dict[tuple[str, str], str] = {}
        # hot rows change again and again: their decoded keys are kept (bounded)
        self._keys: dict[bytes, object] = {}

    def _key(self, raw: bytes | None) -> Any:
        if raw is None:
            return None
        key = self._keys.get(raw, _ABSENT)
        if key is _ABSENT:
            if len(self._keys) >= 50_000:
                self._keys.clear()
            key = self._keys[raw] = decode_key(raw)
        return key

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        # a change that is not one is that event's failure, never the batch's: the stage does not
        # raise for data, so it may replace each body as it goes (processors/stage.py)
        out: list[Event] = []
        for event in events:
            body = event.body
            try:
                if "op" in body and "source" in body:  # the common case first: a Debezium change
                    envelope = self._change(event.record, body)
                elif TOMBSTONE in body:
                    if self.tombstones == "skip":
                        self.skipped_tombstones += 1
                        continue
                    envelope = self._tombstone(event.record)
                else:
                    envelope = self._normalise(event.record, body)
            except (KeyError, TypeError, AttributeError, ValueError) as exc:  # say what is wrong with it
                why = str(exc) if isinstance(exc, MalformedChange) else (
                    (_what_is_wrong(body) if "op" in body else None) or f"{type(exc).__name__}: {exc}")
                failures.append(Failure(event.record, self.stage, "malformed_change", why))
                continue
            event.body = envelope
            out.append(event)
        return out

    def _normalise(self, record: SourceRecord, body: dict) -> dict:
        if "payload" in body and "schema" in body and type(body["payload"]) is dict:
            body = body["payload"]  # the JSON converter with schemas.enable=true
        if "op" in body and "source" in body:
            return self._change(record, body)
        if "tableChanges" in body or ("ddl" in body and "databaseName" in body):
            return self._schema_change(record, body)
        if "op" in body and "before" in body and "after" in body:
            # a Debezium change that lost its `source`: a flattened row has columns named op, before
            # and after all three only in theory, and taking it for one would route a broken change
            raise MalformedChange("a Debezium change (op, before, after) without `source`; the connector "
                                  "writes it on every change: check the producer or the SMTs on the topic")
        return self._flat(record, body)  # a row flattened by ExtractNewRecordState (its columns may be named op)

    def _schema_change(self, record: SourceRecord, change: dict) -> dict:
        """A Debezium schema-change event (the connector's schema-history topic): valid input,
        routed as `<db>.schema_changed` with the DDL and the tables it changed."""
        source: dict = change["source"] if type(change.get("source")) is dict else {}
        db = change.get("databaseName") or source.get("db") or _table_from_topic(record.topic)
        tables: list = change["tableChanges"] if type(change.get("tableChanges")) is list else []
        detail = {"db": db, "schema": change.get("schemaName"), "ddl": change.get("ddl"),
                  "tables": [t.get("id") for t in tables if type(t) is dict],
                  "table_changes": tables, "source_position": source_position(source),
                  "connector": source.get("connector"), "ts_ms": change.get("ts_ms")}
        return self._envelope(record, f"{db}.schema_changed", change.get("ts_ms") or record.timestamp_ms, detail)

    def _envelope(self, record: SourceRecord, detail_type: str, ms: int, detail: dict) -> dict:
        return make_envelope(derived_id(record), detail_type, self.source, self.account, format_time(ms),
                             self.region, [], detail)

    def _change(self, record: SourceRecord, change: dict) -> dict:
        op = change["op"]
        source = change.get("source") or {}
        before, after = change.get("before"), change.get("after")
        if (type(source) is not dict or (before is not None and type(before) is not dict)
                or (after is not None and type(after) is not dict) or (after is None and op in _NEEDS_AFTER)):
            raise MalformedChange(_what_is_wrong(change))  # checks on values read anyway: nothing per event
        table = source.get("table") or _table_from_topic(record.topic)
        source_ms = source.get("ts_ms") or 0
        ts_ms = change.get("ts_ms")
        detail_type: str | None
        if op == "m":
            detail_type = f"{(change.get('message') or {}).get('prefix') or 'logical'}.message"
        else:
            detail_type = self._detail_types.get((table, op))
            if detail_type is None:
                detail_type = self._detail_types[(table, op)] = f"{table}.{VERBS[op]}"
        detail = {
            "op": op, "db": source.get("db"), "schema": source.get("schema"), "table": table,
            "key": self._key(record.key), "before": before, "after": after,
            "changed_fields": changed_fields(op, before, after),
            "source_position": source_position(source),
            "connector": source.get("connector"), "snapshot": source.get("snapshot") not in _NOT_SNAPSHOT,
            "source_ts_ms": source_ms or None, "ts_ms": ts_ms,
            "lag_ms": ts_ms - source_ms if ts_ms and source_ms else None,
        }
        if op == "m":
            detail["message"] = change.get("message")
        if change.get("transaction"):
            detail["transaction"] = change["transaction"]
        return {"version": "0", "id": derived_id(record), "detail-type": detail_type, "source": self.source,
                "account": self.account, "time": format_time(source_ms or ts_ms or record.timestamp_ms),
                "region": self.region, "resources": [], "detail": detail}

    def _flat(self, record: SourceRecord, row: dict) -> dict:
        meta = {k: v for k, v in row.items() if k.startswith("__")}
        columns = {k: v for k, v in row.items() if not k.startswith("__")}
        deleted = meta.get("__deleted") in ("true", True)
        op = "d" if deleted else meta.get("__op") or "u"  # no __op: the SMT only says "this row, now"
        table = meta.get("__table") or _table_from_topic(record.topic)
        before, after = (columns, None) if op == "d" else (None, columns)
        source_ms = meta.get("__source_ts_ms") or 0
        ts_ms = meta.get("__ts_ms")
        detail = {
            "op": op, "db": meta.get("__db"), "schema": meta.get("__schema"), "table": table,
            "key": self._key(record.key), "before": before, "after": after,
            "changed_fields": changed_fields(op, before, after),
            "source_position": {f: meta[f"__{f}"] for f in POSITION_FIELDS if meta.get(f"__{f}") is not None},
            "connector": None, "snapshot": meta.get("__snapshot") not in _NOT_SNAPSHOT,
            "source_ts_ms": source_ms or None, "ts_ms": ts_ms,
            "lag_ms": ts_ms - source_ms if ts_ms and source_ms else None,
        }
        return self._envelope(record, f"{table}.{VERBS.get(op, 'updated')}",
                              source_ms or ts_ms or record.timestamp_ms, detail)

    def _tombstone(self, record: SourceRecord) -> dict:
        table = _table_from_topic(record.topic)
        detail = {"op": "d", "db": None, "schema": None, "table": table, "key": decode_key(record.key),
                  "before": None, "after": None, "changed_fields": [], "source_position": {},
                  "connector": None, "snapshot": False, "source_ts_ms": None, "ts_ms": None, "lag_ms": None,
                  "tombstone": True}
        return self._envelope(record, f"{table}.deleted", record.timestamp_ms, detail)


class MalformedChange(ValueError):
    """A record that claims to be a Debezium change (`op`) and is not one: the reason says what is wrong."""


_NEEDS_AFTER = ("c", "r")


def _what_is_wrong(change: dict) -> str | None:
    """Why `change` is not a Debezium change event, in words a user can act on (None: no idea)."""
    op = change.get("op")
    if op not in VERBS and op != "m":
        return f"`op` is {op!r}; a Debezium change has one of c, u, d, r, t or m"
    if change.get("source") is not None and type(change["source"]) is not dict:
        return f"`source` is {type(change['source']).__name__}; a Debezium change's source is an object"
    for side in ("before", "after"):
        if change.get(side) is not None and type(change[side]) is not dict:
            return f"`{side}` is {type(change[side]).__name__}; expected the row as an object, or null"
    if op in _NEEDS_AFTER and change.get("after") is None:
        return f"op {op!r} with no `after`: a created or snapshot row carries its values in `after`"
    if change.get("ts_ms") is not None and type(change["ts_ms"]) is not int:
        return f"`ts_ms` is {change['ts_ms']!r}; expected epoch milliseconds"
    source = change.get("source") or {}
    if source.get("ts_ms") is not None and type(source["ts_ms"]) is not int:
        return f"`source.ts_ms` is {source['ts_ms']!r}; expected epoch milliseconds"
    return None


def _table_from_topic(topic: str) -> str:
    # Debezium topics are <prefix>.<schema or db>.<table>
    return topic.rsplit(".", 1)[-1]
