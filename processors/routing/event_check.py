"""TestEventPattern's check that the event is a valid EventBridge envelope."""
from __future__ import annotations

from typing import Any

from .errors import ValidationException

# fields TestEventPattern requires in the event (AWS rejects the call without them)
REQUIRED = ("id", "account", "source", "time", "region", "detail-type")
EVENT_INVALID = "Parameter Event is not valid."


def validate_event(event: Any) -> None:
    """Raise ValidationException("Parameter Event is not valid.") unless `event` is an envelope."""
    if not isinstance(event, dict):
        raise ValidationException(EVENT_INVALID)
    for name in REQUIRED:
        if name not in event:
            raise ValidationException(EVENT_INVALID)
    for name in ("id", "account", "source", "region", "detail-type", "time"):
        if not isinstance(event[name], (str, list)):
            raise ValidationException(EVENT_INVALID)
    if "resources" in event and not isinstance(event["resources"], list):
        raise ValidationException(EVENT_INVALID)
