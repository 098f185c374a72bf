"""Validate one target's own keys (the extra keys of a `TargetSettings`) with its type's model.

Each target type declares a pydantic model (extra='forbid', streams/targets/); a bad key is
reported with its full path, `rules[name].targets[id].bucket: ...`, like every other config error.
"""
from __future__ import annotations

from pydantic import BaseModel, ValidationError

from streams.config.errors import ConfigError, describe_errors_under
from streams.config.model import TargetSettings


def target_path(rule: str, target_id: str) -> str:
    return f"rules[{rule}].targets[{target_id}]"


def parse_settings(model: type[BaseModel], rule: str, target: TargetSettings):
    """The keys of `target` beyond those every target has, validated by `model`."""
    data = dict(target.model_extra or {})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_errors_under(target_path(rule, target.id), exc)) from None
