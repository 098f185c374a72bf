"""The s3 target's `event_time` settings, and the names of event-time objects.

In this mode an object holds the records of one key and one event-time window of one source
partition, named `<prefix><key>/<window start>+<topic>+<partition>.<ext>`: its name depends on
neither offsets nor arrival, so the same record delivered twice upstream, or replayed after a
crash, lands in the same object name. The source partition is in the name so that records of one
key arriving on two partitions (a key that is a field, not the Kafka key) never overwrite each
other. The implementation is streams/targets/s3/eventtime.py.
"""
from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from processors.enrich.windows import Duration
from processors.paths import split_path
from streams.targets.s3.layout import OFFSET_DIGITS, sanitise

KafkaField = Literal["key", "headers", "topic", "partition", "offset", "timestamp"]


class EventTimeObjects(BaseModel):
    """Objects named by key and event-time window (`event_time:` of an s3 target)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: Duration = Field(description=(
        "event_time: the window length (1m, 1h, 1d, or milliseconds; at least 1s): an object per key per window."))
    allowed_lateness: Duration = Field(0, description=(
        "event_time: an object is written once the partition's largest event time passes its window's end + this; "
        "a record for it after that goes under `late_prefix`."))
    key: str = Field("kafka", description=(
        "event_time: `kafka` (the record's Kafka key) or a field path ($.detail.instrument): the object's key."))
    timestamp: Literal["field", "kafka", "arrival"] = Field("field", description=(
        "event_time: the time that picks the window and fills !{timestamp:...}: `field` (the target's `time_field`, "
        "Kafka Connect's RecordField), `kafka` (the record timestamp, Record) or `arrival` (the clock when the target "
        "takes the record, Wallclock: objects close on the clock, and a replay may name them differently)."))
    late_prefix: str = Field("late/", description=(
        "event_time: where records past the allowed lateness go, one object each, "
        "`<late_prefix><prefix><key>/<window start>+<topic>+<partition>+<offset>.<ext>`."))
    kafka_fields: list[KafkaField] = Field(default_factory=list, description=(
        "event_time: Kafka metadata written into each record under `kafka_field`: key (UTF-8 text, or "
        "{base64: ...}), headers ({name: text}), topic, partition, offset, timestamp (epoch ms)."))
    kafka_field: str = Field("kafka", min_length=1, description="event_time: the record's key holding `kafka_fields`.")

    @field_validator("window")
    @classmethod
    def _at_least_a_second(cls, value: int) -> int:
        if value < 1000:
            raise ValueError("a window shorter than 1s cannot be named (window starts are written to the second)")
        return value

    @field_validator("key")
    @classmethod
    def _key_path(cls, value: str) -> str:
        if value != "kafka":
            split_path(value)
        return value

    @field_validator("late_prefix")
    @classmethod
    def _late_prefix(cls, value: str) -> str:
        if not value or value.startswith("/"):
            raise ValueError("late_prefix must be a non-empty relative prefix, like late/")
        return value if value.endswith("/") else value + "/"


def window_text(start_ms: int) -> str:
    """A window's start in an object name: 20240501T100000Z (UTC, sorts as time)."""
    return datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")


def window_key(prefix: str, key: str, start_ms: int, topic: str, partition: int, ext: str) -> str:
    return f"{prefix}{sanitise(key)}/{window_text(start_ms)}+{sanitise(topic)}+{partition}.{ext}"


def late_key(late_prefix: str, prefix: str, key: str, start_ms: int, topic: str, partition: int, offset: int,
             ext: str) -> str:
    return f"{late_prefix}{prefix}{sanitise(key)}/{window_text(start_ms)}+{sanitise(topic)}+{partition}+" \
           f"{offset:0{OFFSET_DIGITS}d}.{ext}"


def text_of(value: bytes) -> str | dict[str, str]:
    """Kafka bytes as JSON: UTF-8 text, else {"base64": ...}."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode()}
