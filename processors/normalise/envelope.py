"""The EventBridge envelope and the helpers every normaliser shares.

`time` is the event's own time (when the reading was taken, the click happened, the row
changed), formatted as EventBridge does: RFC 3339, UTC, whole seconds ("2024-11-25T10:20:00Z");
the precise timestamp stays in `detail`. `id` is the event's own id when it has one, else a
UUID-shaped id derived from topic/partition/offset, so a replay produces the same id.
"""
from __future__ import annotations

import hashlib
import time as _time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from processors.core import ProcessorError, SourceRecord


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


_partition_prefix: dict[tuple[str, int], str] = {}


def derived_id(record: SourceRecord) -> str:
    """UUID-shaped: 80 bits hashed from topic/partition, then the offset as 12 hex digits.

    Unique per (topic, partition, offset) and the same on every replay; cheap because each
    partition is hashed once, not each record.
    """
    prefix = _partition_prefix.get((record.topic, record.partition))
    if prefix is None:
        h = hashlib.blake2b(f"{record.topic}/{record.partition}".encode(), digest_size=10).hexdigest()
        prefix = _partition_prefix[(record.topic, record.partition)] = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:]}-"
    return f"{prefix}{record.offset:012x}"


def stable_id(*parts: Any) -> str:
    """A UUID-shaped id hashed from any stable parts (session ids, alert ids): same parts, same id."""
    h = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_last_second = -1
_last_text = ""


def format_time(epoch_ms: int) -> str:
    """Epoch milliseconds -> '2024-11-25T10:00:00Z' (EventBridge's whole-second form)."""
    global _last_second, _last_text
    seconds = int(epoch_ms) // 1000
    if seconds != _last_second:  # consecutive events share a second far more often than not
        _last_text = _seconds_text(seconds) + "Z"
        _last_second = seconds
    return _last_text


_last_ms_second = -1
_last_ms_prefix = ""


def format_time_ms(epoch_ms: int) -> str:
    """Epoch milliseconds -> '2024-11-25T10:00:00.123Z', for fields that must order within a second."""
    global _last_ms_second, _last_ms_prefix
    seconds, millis = divmod(int(epoch_ms), 1000)
    if seconds != _last_ms_second:
        _last_ms_prefix = _seconds_text(seconds) + "."
        _last_ms_second = seconds
    return f"{_last_ms_prefix}{millis:03d}Z"


def _seconds_text(seconds: int) -> str:
    t = _time.gmtime(seconds)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


_minute_ms: dict[str, int] = {}


def to_epoch_ms(value: Any, field: str = "timestamp") -> int:
    """Epoch ms (int/float) or an RFC 3339 string -> epoch ms; anything else is a ProcessorError."""
    kind = type(value)
    if kind is int:
        return value
    if kind is str:
        # fast path for the canonical UTC form "YYYY-MM-DDTHH:MM:SS[.mmm]Z" SDKs send: the minute's
        # epoch is cached, seconds and millis are sliced (fromisoformat+timestamp cost 3x more)
        n = len(value)
        if (n == 20 or n == 24) and value[-1] == "Z" and value[16] == ":" and value[10] == "T":
            base = _minute_ms.get(value[:16])
            if base is None:
                base = _minute_ms_slow(value)
            sec, millis = value[17:19], value[20:23] if n == 24 else "0"
            if base is not None and sec.isdigit() and millis.isdigit() and sec <= "60":
                return base + int(sec) * 1000 + int(millis)
        else:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                if parsed.tzinfo is None:  # no offset given: read it as UTC, never as the worker's local time
                    parsed = parsed.replace(tzinfo=UTC)
                return round(parsed.timestamp() * 1000)
    elif kind is float:
        return int(value)
    raise ProcessorError("bad_timestamp", f"field '{field}': expected epoch milliseconds or an RFC 3339 "
                                          f"date-time, got {value!r}")


def envelope_time(value: Any, field: str = "timestamp") -> str:
    """The envelope `time` for an event timestamp (epoch ms or RFC 3339), without a full parse when
    the SDK already sent the canonical UTC form ("...:SS.mmmZ" only loses its millis)."""
    if type(value) is str and (len(value) == 24 or len(value) == 20) and value[-1] == "Z" \
            and value[16] == ":" and value[10] == "T" and value[17:19].isdigit() and value[17:19] <= "60" \
            and (value[:16] in _minute_ms or _minute_ms_slow(value) is not None):
        return value[:19] + "Z" if len(value) == 24 else value
    return format_time(to_epoch_ms(value, field))


def _minute_ms_slow(value: str) -> int | None:
    try:
        minute = datetime.fromisoformat(value[:16] + ":00+00:00")
    except ValueError:
        return None
    if len(_minute_ms) > 4096:
        _minute_ms.clear()
    base = _minute_ms[value[:16]] = round(minute.timestamp() * 1000)
    return base
