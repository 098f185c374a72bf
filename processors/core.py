"""The few types every processor and the runtime share.

A batch flows as plain lists: `SourceRecord`s come from Kafka, stages turn them into `Event`s
(the body is a dict: the decoded payload, later the EventBridge envelope), the router turns events
into `Delivery`s for targets. Anything that fails for one record becomes a `Failure`, which the
runtime writes to the dead-letter topic; a failure never stops the batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(slots=True)
class SourceRecord:
    """A consumed record. The runtime passes aiokafka's ConsumerRecord, which has these same
    attributes; processors only read them, so either works."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(slots=True)
class Event:
    record: SourceRecord
    body: dict[str, Any]
    # The JSON members (b'"name":value') stages appended at the end of a body that is exactly
    # its record's JSON object otherwise, in order: the event serialises as the record's bytes
    # with these spliced in before the closing brace, instead of dumping the whole body again.
    # None: unknown (a stage changed the body some other way, or the decoder made it).
    added: tuple[bytes, ...] | None = None


def splice_json(value: bytes, added: tuple[bytes, ...], body_len: int) -> bytes:
    """The JSON object `value` with the members `added` appended (see Event.added); `body_len`
    is the number of keys of the body with them, so an empty object gets no leading comma."""
    if not added:
        return value
    if value[-1] != 0x7D:  # "}": trailing whitespace after the object
        value = value.rstrip()
    sep = b"," if body_len > len(added) else b""
    return b"".join((value[:-1], sep, b",".join(added), b"}"))


def json_member(name: str, value: Any) -> bytes:
    """b'"name":value', for Event.added."""
    return orjson.dumps(name) + b":" + orjson.dumps(value)


@dataclass(slots=True)
class Failure:
    """One record that could not go on. `stage` says where, `error` is a short code, `message` the why."""

    record: SourceRecord
    stage: str
    error: str
    message: str
    rule: str | None = None
    target: str | None = None
    attempts: int = 0


@dataclass(slots=True)
class Delivery:
    """One output for one target. `payload` is bytes (already serialised) or a JSON-able object."""

    target: str
    record: SourceRecord
    payload: Any
    key: bytes | None = None
    rule: str | None = None
    event: dict[str, Any] | None = field(default=None, repr=False)


class TopicRecords(list):
    """One topic's records of a batch, partition after partition; `parts` lists (partition,
    count) for each partition in order, so that a router can count runs per partition without
    reading each record's partition again."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[tuple] = []


class PlainMatches:
    """The records one rule matched, for a rule whose targets take each record as it came, with
    their keys and values gathered while the records were being routed: a target reads them
    later, when the records themselves have gone cold in the CPU cache."""

    __slots__ = ("records", "keys", "values", "runs")

    def __init__(self) -> None:
        self.records: list[SourceRecord] = []
        self.keys: list[bytes | None] = []
        self.values: list[bytes] = []
        # (partition, count) per run of consecutive records of one source partition, when the
        # router was told where a batch's partitions start (TopicRecords.parts); else None
        self.runs: list[tuple] | None = []

    def __len__(self) -> int:
        return len(self.records)


class ProcessorError(Exception):
    """Raised by a processor for one record; carries the short error code for the dead-letter headers."""

    def __init__(self, error: str, message: str):
        super().__init__(message)
        self.error = error
        self.message = message
