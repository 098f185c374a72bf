"""The one field-path helper: how eventweir names a field of an event outside of patterns.

`$.detail.device_id` and `detail.device_id` name the same field (the `$.` is optional, as in an
EventBridge InputPath). Reading a path gives None when a step is missing, is not an object, or is
a present JSON null: joins, lookups, output keys, lake partitions and time fields all treat "no
value" alike. (Event patterns tell a null from a missing field: routing/flatten.py has their rules.)
"""
from __future__ import annotations

from typing import Any


def split_path(path: str) -> tuple[str, ...]:
    """`$.detail.device_id` or `detail.device_id` -> ("detail", "device_id")."""
    text = path[2:] if path.startswith("$.") else path
    parts = tuple(text.split("."))
    if not text or any(not part for part in parts):
        raise ValueError(f"field path {path!r}: expected dotted names like detail.device_id (or $.detail.device_id)")
    return parts


def get_path(body: Any, path: tuple[str, ...]) -> Any:
    """The value at a split path; None when a step is missing, not an object, or null."""
    value = body
    for step in path:
        if type(value) is not dict:
            return None
        value = value.get(step)
        if value is None:
            return None
    return value
