"""Per-target retry policy, EventBridge's: a bounded number of attempts within a bounded event age,
exponential back-off with full jitter between attempts, and retryable errors told apart from
permanent ones (an HTTP 400 will fail the same way every time; a 429 or a 503 may not).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass


class DeliveryError(Exception):
    """A delivery attempt failed. `code` goes to the dead-letter headers; `retryable` decides retries."""

    def __init__(self, code: str, message: str, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after  # seconds the endpoint asked to wait (Retry-After), if it said


@dataclass(frozen=True)
class RetryPolicy:
    max_retry_attempts: int = 185  # retries after the first attempt (MaximumRetryAttempts)
    max_event_age_s: float = 86400  # MaximumEventAgeInSeconds, counted from when the worker consumed the event
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    @classmethod
    def from_settings(cls, settings, routing) -> RetryPolicy:
        return cls(settings.maximum_retry_attempts, settings.maximum_event_age_s,
                   routing.retry_base_delay_ms / 1000, routing.retry_max_delay_ms / 1000)

    def delay(self, attempt: int, rand=random.random) -> float:
        """Back-off before retry number `attempt` (1-based): full jitter over base * 2^(attempt-1)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** min(attempt - 1, 30)))
        return ceiling * (0.5 + rand() / 2)  # half fixed, half jitter: spread out, but never a zero wait

    def exhausted(self, attempts: int, first_seen: float, now: float | None = None) -> str | None:
        """None while another attempt is allowed, else the condition that ran out (AWS's names)."""
        if attempts > self.max_retry_attempts:
            return "MaximumRetryAttempts"
        if (now if now is not None else time.monotonic()) - first_seen >= self.max_event_age_s:
            return "MaximumEventAgeInSeconds"
        return None
