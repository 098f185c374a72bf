"""Decode stage: Kafka record bytes -> `Event` with a dict body (orjson).

Failure codes (stage "decode"): `not_utf8` (bytes that are not UTF-8 text), `invalid_json`
(text that does not parse), `not_object` (JSON that parses but is not an object: the schemas and
the envelope need an object) and `tombstone` (a null value on a topic that does not expect them).

Null values are normal on CDC and compacted topics (Debezium writes one after each delete so
compaction can drop the key). With `tombstones="keep"` they become events whose body is
`{TOMBSTONE: True}` for the CDC normaliser and the state stages; with "skip" they are counted
in `skipped_tombstones` and go no further.
"""
from __future__ import annotations

import json

import msgspec
import orjson
import simdjson

from processors.core import Event, Failure, SourceRecord

TOMBSTONE = "__tombstone"
_MODES = ("fail", "keep", "skip")


class Decoder:
    stage = "decode"

    def __init__(self, tombstones: str = "fail"):
        if tombstones not in _MODES:
            raise ValueError(f"Decoder tombstones={tombstones!r}: expected one of {', '.join(_MODES)}")
        self.tombstones = tombstones
        self.skipped_tombstones = 0
        self._parser = simdjson.Parser()

    def decode(self, records: list[SourceRecord], failures: list[Failure], splice: bool = False) -> list[Event]:
        """`splice`: start each event's `added` (core.Event): its body is its record's JSON."""
        out: list[Event] = []
        added = () if splice else None
        append = out.append
        loads = orjson.loads
        for record in records:
            value = record.value
            if value is None:
                if self.tombstones == "keep":
                    append(Event(record, {TOMBSTONE: True}))
                elif self.tombstones == "skip":
                    self.skipped_tombstones += 1
                else:
                    failures.append(Failure(record, self.stage, "tombstone",
                                            "record value is null (a tombstone) but this topic expects JSON objects"))
                continue
            try:
                body = loads(value)
            except orjson.JSONDecodeError as exc:
                failures.append(self._bad_json(record, value, exc))
                continue
            if type(body) is not dict:
                failures.append(Failure(record, self.stage, "not_object",
                                        f"expected a JSON object, got {_json_kind(body)}"))
                continue
            append(Event(record, body, added))
        return out

    def check(self, records: list[SourceRecord], failures: list[Failure]) -> list[SourceRecord]:
        """The records `decode` would turn into events, without building their bodies (same
        failures). For pass-through routes, which forward the original bytes: simdjson validates
        a document several times faster than orjson builds it as dicts. Whatever simdjson does not
        accept as an object goes through `decode` itself, which decides: orjson is the reference
        (it takes integers beyond 64 bits that simdjson refuses), and a document starting with a
        UTF-8 byte-order mark, which simdjson skips and orjson refuses, is always re-checked."""
        out: list[SourceRecord] = []
        append = out.append
        parse, obj = self._parser.parse, simdjson.Object
        for record in records:
            value = record.value
            try:
                if value and value[0] != 0xEF and type(parse(value)) is obj:
                    append(record)
                    continue
            except Exception:  # noqa: BLE001 - any refusal is settled by decode() below
                pass
            if self.decode([record], failures):
                append(record)
        return out

    # the runtime calls every stage through `process`; decode is the one that starts from records
    def process(self, records, failures):
        return self.decode(records, failures)

    def _bad_json(self, record: SourceRecord, value: bytes, exc: Exception) -> Failure:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return Failure(record, self.stage, "not_utf8",
                           f"record value is not UTF-8 text (bad byte at offset {uexc.start}); expected JSON")
        return Failure(record, self.stage, "invalid_json", why_not_decoded(exc))


# an object with no fields: decoding into it checks a line's JSON and skips every value
_check_object = msgspec.json.Decoder(msgspec.defstruct("AnyObject", [])).decode


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def loads_beyond_doubles(line: bytes) -> dict | None:
    """The event of a line orjson refuses only for a number beyond the double range (1e400, a
    400-digit integer), as the rule matchers read such numbers: floats as +-infinity, integers as
    ints (conditions.as_double compares them as +-infinity); None for any other line.

    RFC 8259 sets no range on numbers, so such a line is valid JSON: the router matches it
    (engines/partial.py) instead of refusing it for our parser's limit. msgspec checks everything
    else as orjson does (syntax, escapes, surrogates, NaN, nesting) but not the UTF-8 of the strings
    it skips, so that is checked first; Python's json then reads it (slowly: such lines are rare)."""
    try:
        line.decode()
        _check_object(line)
        ev = json.loads(line, parse_constant=_no_constant)
    except (ValueError, msgspec.DecodeError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return ev if type(ev) is dict else None


def why_not_decoded(exc: Exception) -> str:
    """The reason orjson's refusal `exc` gives a dead letter. RFC 8259 sets no range on numbers,
    so a number beyond a double's is valid JSON that this decoder cannot hold: said as such."""
    if "number is infinity" in str(exc):
        return (f"record value holds a number beyond the double range (about 1.8e308), which cannot be "
                f"decoded: {exc}")
    return f"record value is not valid JSON: {exc}"


def _json_kind(value) -> str:
    if value is None:
        return "null"
    return {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__)
