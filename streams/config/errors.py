"""Config errors in one voice: one line per problem, each naming its key path and what was
expected, secrets named but never echoed."""
from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError


class ConfigError(Exception):
    """Raised with one line per problem, each naming the key path."""


_SECRET = re.compile(r"token|password|secret|auth|encryption_key|signing_key|challenge_key", re.IGNORECASE)


def describe_error(error: Any) -> str:
    path = ""
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    path = path or "(top level)"
    kind = error["type"]
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "extra_forbidden":
        return f"{path}: unknown key (check the spelling; see the configuration reference in README.md)"
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"] and message.startswith(("rules[", "sources[")):  # a cross-section check names its own path
        return message
    if message.startswith(path + "."):  # a section's own check named the key within it
        return message
    got = error.get("input")
    if any(isinstance(part, str) and _SECRET.search(part) for part in error["loc"]):
        return f"{path}: {message}, got <redacted>"  # a secret never reaches a log or an error body
    if isinstance(got, (str, int, float, bool)) or got is None:
        return f"{path}: {message}, got {got!r}"
    return f"{path}: {message}"


def describe_errors_under(base: str, exc: ValidationError) -> str:
    """The errors of a model validated for the item at `base` (a target, a stage), one per line."""
    lines = []
    for error in exc.errors():
        text = describe_error(error)
        lines.append(f"{base}.{text}" if error["loc"] else f"{base}: {text.split(': ', 1)[-1]}")
    return "\n".join(lines)
