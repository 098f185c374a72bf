"""Validate one target's own settings (the extra keys of a `TargetSettings`) with its sink's model.

Each sink declares a pydantic model (extra='forbid'); a bad key is reported with its full path,
`rules[name].targets[id].bucket: ...`, like every other config error.
"""
from __future__ import annotations

from pydantic import BaseModel, ValidationError

from streams.config.model import ConfigError, TargetSettings, describe_error


def target_path(rule: str, target_id: str) -> str:
    return f"rules[{rule}].targets[{target_id}]"


# keys every target has; the rest of what the user set belongs to the sink's own model
COMMON_KEYS = {"id", "type", "key", "input", "input_path", "input_transformer", "retry_policy", "dead_letter_topic"}


def parse_settings(model: type[BaseModel], rule: str, target: TargetSettings):
    data = dict(target.model_extra or {})
    for name in (target.model_fields_set & set(type(target).model_fields)) - COMMON_KEYS:  # shared keys (url, ...)
        data[name] = getattr(target, name)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        base = target_path(rule, target.id)
        lines = []
        for error in exc.errors():
            text = describe_error(error)
            lines.append(f"{base}.{text}" if error["loc"] else f"{base}: {text.split(': ', 1)[-1]}")
        raise ConfigError("\n".join(lines)) from None
