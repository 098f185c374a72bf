"""Exceptions that carry AWS's error text word for word, so callers can show it unchanged."""
from __future__ import annotations

PATTERN_PREFIX = "Event pattern is not valid. Reason: "


class InvalidEventPatternException(ValueError):
    """A pattern AWS would reject; `message` is AWS's exact text."""

    def __init__(self, reason: str):
        self.message = PATTERN_PREFIX + reason
        super().__init__(self.message)


class ValidationException(ValueError):
    """AWS's ValidationException (bad event envelope, bad target input settings)."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


def invalid(reason: str) -> InvalidEventPatternException:
    return InvalidEventPatternException(reason)
