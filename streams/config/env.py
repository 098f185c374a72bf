"""The environment's part in the config: `${VAR}` in the YAML, EVENTWEIR_* overrides, and `_FILE`
variants of both for secrets mounted as files (Kubernetes Secrets, Docker secrets).

- `${VAR}` in any string value is VAR's value; `${VAR:-default}` falls back to `default` when VAR
  is unset or empty; `$${` writes a literal `${`. A variable that is unset, with no default, is a
  config error naming the key and the variable. When VAR is unset and VAR_FILE names a file, the
  file's content (without its trailing newline) is the value.
- EVENTWEIR_A__B=v sets `a.b` (the value parsed as YAML, so 5 is a number); EVENTWEIR_A__B_FILE=path
  sets it to the file's content, as a string.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "EVENTWEIR_"
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class InterpolationError(ValueError):
    """`path`: where in the config the reference is."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")


def _from_file(name: str, environ: Mapping[str, str], path: str) -> str | None:
    file = environ.get(f"{name}_FILE")
    if not file:
        return None
    try:
        return Path(file).read_text().removesuffix("\n")
    except OSError as exc:
        raise InterpolationError(path, f"{name}_FILE names {file!r}, which cannot be read ({exc.strerror})") from None


def variable(name: str, environ: Mapping[str, str], path: str, default: str | None = None) -> str:
    value = environ.get(name)
    if value is None:
        value = _from_file(name, environ, path)
    if value is None or (value == "" and default is not None):
        if default is None:
            raise InterpolationError(path, f"environment variable {name} is not set (set it, or {name}_FILE, or "
                                           f"write ${{{name}:-default}})")
        return default
    return value


def interpolate(data: Any, environ: Mapping[str, str], path: str = "") -> Any:
    """`data` with every `${VAR}` in its string values replaced (keys are left as they are)."""
    if isinstance(data, str):
        if "$" not in data:
            return data

        def value_of(match: re.Match) -> str:
            if match.group(0) == "$${":
                return "${"
            return variable(match.group(1), environ, path or "(top level)", match.group(2))

        return _REFERENCE.sub(value_of, data)
    if isinstance(data, dict):
        return {key: interpolate(value, environ, f"{path}.{key}" if path else str(key)) for key, value in data.items()}
    if isinstance(data, list):
        return [interpolate(value, environ, f"{path}[{i}]") for i, value in enumerate(data)]
    return data


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """EVENTWEIR_A__B=v becomes {"a": {"b": v}}; values are parsed as YAML scalars (so 5 is an int)."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in (ENV_PREFIX + "CONFIG", ENV_PREFIX + "CONFIG_FILE"):
            continue
        key = name[len(ENV_PREFIX):]
        from_file = key.endswith("_FILE")
        if from_file:
            key = key.removesuffix("_FILE")
        parts = key.lower().split("__")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if from_file:
            node[parts[-1]] = _from_file(name.removesuffix("_FILE"), environ, ".".join(parts))
        else:
            node[parts[-1]] = yaml.safe_load(raw) if raw else raw
    return tree
