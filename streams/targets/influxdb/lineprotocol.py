"""InfluxDB line protocol: escaping and one line per point, with nanosecond timestamps.

`measurement,tag=v,tag2=v2 field=1.5,count=3i,name="x",ok=true 1732579200000000000`

Escaping follows the line protocol reference: measurements escape commas and spaces; tag keys,
tag values and field keys escape commas, equals signs and spaces; string field values escape
double quotes and backslashes. Line protocol cannot carry a newline in a name or tag value, nor
NaN or Infinity: such points raise `PointError` and are dead-lettered by the sink.
"""
from __future__ import annotations

import math

_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ "})
_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING = str.maketrans({'"': r"\"", "\\": "\\\\"})

FIELD_TYPES = ("float", "integer", "string", "boolean")


class PointError(ValueError):
    """One point cannot be written as line protocol; the message says which part and why."""


def _name(text: str, table, what: str) -> str:
    if not text:
        raise PointError(f"{what} is empty")
    if "\n" in text or "\r" in text:
        raise PointError(f"{what} {text!r} contains a newline, which line protocol cannot carry")
    if text.endswith("\\"):
        # it would escape the separator after it, and InfluxDB versions unescape `\\` differently
        raise PointError(f"{what} {text!r} ends with a backslash, which line protocol cannot carry")
    return text.translate(table)


def format_field(value, kind: str, name: str) -> str:
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PointError(f"field {name!r}: expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise PointError(f"field {name!r}: {value} is not a finite number (InfluxDB rejects NaN and Infinity)")
        return repr(value)
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()):
            raise PointError(f"field {name!r}: expected an integer, got {value!r}")
        value = int(value)
        if not -(2**63) <= value < 2**63:
            raise PointError(f"field {name!r}: {value} does not fit a signed 64-bit integer")
        return f"{value}i"
    if kind == "boolean":
        if not isinstance(value, bool):
            raise PointError(f"field {name!r}: expected a boolean, got {value!r}")
        return "true" if value else "false"
    if not isinstance(value, str):
        raise PointError(f"field {name!r}: expected a string, got {value!r}")
    return '"' + value.translate(_STRING) + '"'


def infer_kind(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    raise PointError(f"cannot store {type(value).__name__} {value!r} as a field (expected number, string or boolean)")


def encode_point(measurement: str, tags: dict[str, str | None], fields: list[tuple[str, object, str]],
                 time_ns: int | None) -> str:
    """`fields` is [(name, value, kind)] with kind in FIELD_TYPES; at least one field is required."""
    if not fields:
        raise PointError("a point needs at least one field")
    out = [_name(measurement, _MEASUREMENT, "measurement")]
    for key in sorted(tags):  # sorted tags: InfluxDB's recommended order, and deterministic lines
        value = tags[key]
        if value is None or value == "":
            continue  # line protocol has no empty tag values; an absent tag is the same series
        out.append("," + _name(key, _KEY, "tag key") + "=" + _name(str(value), _KEY, f"tag {key!r} value"))
    out.append(" ")
    out.append(",".join(_name(name, _KEY, "field key") + "=" + format_field(value, kind, name)
                        for name, value, kind in fields))
    if time_ns is not None:
        out.append(f" {time_ns}")
    return "".join(out)
