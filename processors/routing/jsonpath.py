"""The JSONPath subset EventBridge accepts in InputPath and InputPathsMap: $.a.b, $['a'], $.a[0]."""
from __future__ import annotations

import re
from typing import Any, TypeAlias

from .errors import ValidationException

_TOKEN = re.compile(r"\.([A-Za-z0-9_\-@$:]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")
MISSING = object()

Steps: TypeAlias = tuple[str | int, ...]  # a compiled path: str keys, int indexes


def compile_path(path: str, what: str) -> Steps:
    """Steps of `path` (str keys, int indexes). Raises ValidationException naming `what`."""
    if not isinstance(path, str) or not path.startswith("$"):
        raise ValidationException(f"{what} must be a valid JSONPath starting with '$', got {path!r}")
    steps: list[str | int] = []
    pos = 1
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            raise ValidationException(f"{what} is not a valid JSONPath: {path!r}")
        key, idx, q1, q2 = m.groups()
        steps.append(int(idx) if idx is not None else key if key is not None else
                     q1 if q1 is not None else q2)
        pos = m.end()
    return tuple(steps)


def resolve(doc: Any, steps: Steps) -> Any:
    """The value at `steps`, or MISSING."""
    for s in steps:
        if type(s) is int:
            if type(doc) is not list or s >= len(doc):
                return MISSING
        elif type(doc) is not dict or s not in doc:
            return MISSING
        doc = doc[s]
    return doc
