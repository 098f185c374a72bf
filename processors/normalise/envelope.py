"""The EventBridge envelope and the helpers every normaliser shares.

`time` is the event's own time (when the reading was taken, the click happened, the row
changed), formatted as EventBridge does (RFC 3339, UTC, "Z"); milliseconds are kept when not
zero so two changes in one second still order. `id` is the event's own id when it has one,
else a UUID derived from topic/partition/offset, so a replay produces the same id.
"""
from __future__ import annotations

import time as _time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from processors.core import ProcessorError, SourceRecord

_NAMESPACE = uuid.UUID("6f3c1f0e-2c55-4b8e-9a61-0e7a3c2b9d10")


@dataclass(frozen=True, slots=True)
class EnvelopeDefaults:
    """The envelope fields a source does not carry: configured per source topic."""

    source: str
    detail_type: str
    account: str = "000000000000"
    region: str = "local"


def make_envelope(id: str, detail_type: str, source: str, account: str, time: str, region: str,
                  resources: list[str], detail: dict[str, Any]) -> dict[str, Any]:
    return {"version": "0", "id": id, "detail-type": detail_type, "source": source, "account": account,
            "time": time, "region": region, "resources": resources, "detail": detail}


def derived_id(record: SourceRecord) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{record.topic}/{record.partition}/{record.offset}"))


def stable_id(*parts: Any) -> str:
    """A UUID from any stable parts (session ids, alert ids): same parts, same id."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(map(str, parts))))


_last_second = -1
_last_prefix = ""


def format_time(epoch_ms: int) -> str:
    """Epoch milliseconds -> '2024-11-25T10:00:00Z' (or '...:00.123Z')."""
    global _last_second, _last_prefix
    seconds, millis = divmod(int(epoch_ms), 1000)
    if seconds != _last_second:  # consecutive events share a second far more often than not
        t = _time.gmtime(seconds)
        _last_prefix = (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
                        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}")
        _last_second = seconds
    return f"{_last_prefix}.{millis:03d}Z" if millis else f"{_last_prefix}Z"


def to_epoch_ms(value: Any, field: str = "timestamp") -> int:
    """Epoch ms (int/float) or an RFC 3339 string -> epoch ms; anything else is a ProcessorError."""
    kind = type(value)
    if kind is int:
        return value
    if kind is float:
        return int(value)
    if kind is str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:  # no offset given: read it as UTC, never as the worker's local time
                parsed = parsed.replace(tzinfo=timezone.utc)
            return round(parsed.timestamp() * 1000)
    raise ProcessorError("bad_timestamp", f"field '{field}': expected epoch milliseconds or an RFC 3339 "
                                          f"date-time, got {value!r}")


def get_path(body: dict, path: tuple[str, ...]) -> Any:
    """Follow a pre-split dotted path; None when any step is missing."""
    value: Any = body
    for step in path:
        if type(value) is not dict:
            return None
        value = value.get(step)
        if value is None:
            return None
    return value


def split_path(path: str) -> tuple[str, ...]:
    if not path or any(not part for part in path.split(".")):
        raise ValueError(f"field path {path!r}: expected dotted names like 'detail.device_id'")
    return tuple(path.split("."))
