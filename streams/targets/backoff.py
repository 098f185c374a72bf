"""Retry a sink request with capped exponential back-off and jitter, visibly (metrics and logs)."""
from __future__ import annotations

import asyncio
import logging
import random
import time

from streams import metrics

log = logging.getLogger(__name__)


class GaveUp(Exception):
    """Retries ran out (`give_up_after_s`); the caller dead-letters what the request carried."""


class Backoff:
    def __init__(self, target: str, initial_s: float = 0.2, max_s: float = 10.0, give_up_after_s: float = 3600.0):
        self.target = target
        self.initial_s = initial_s
        self.max_s = max_s
        self.give_up_after_s = give_up_after_s
        self._failing = 0  # requests currently in back-off, for the gauge
        self._gauge = metrics.SINK_BACKING_OFF.labels(target)
        self._last_log = 0.0

    async def run(self, operation: str, call, retryable=lambda exc: True):
        """Await `call()` until it succeeds; retry what `retryable` accepts, raise the rest."""
        delay = self.initial_s
        started = time.monotonic()
        attempt = 0
        try:
            while True:
                t0 = time.monotonic()
                try:
                    result = await call()
                    metrics.SINK_REQUEST_SECONDS.labels(self.target, operation).observe(time.monotonic() - t0)
                    return result
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    metrics.SINK_ERRORS.labels(self.target, type(exc).__name__).inc()
                    if not retryable(exc):
                        raise
                    if time.monotonic() - started > self.give_up_after_s:
                        raise GaveUp(f"{operation} kept failing for {self.give_up_after_s:.0f}s: {exc}") from exc
                    if attempt == 0:
                        self._failing += 1
                        self._gauge.set(1)
                    attempt += 1
                    now = time.monotonic()
                    if now - self._last_log > 5:  # an outage must not flood the log
                        self._last_log = now
                        log.warning("target %s: %s failed (%s: %s); retrying in %.1fs (attempt %d)",
                                    self.target, operation, type(exc).__name__, exc, delay, attempt)
                    await asyncio.sleep(delay * (0.5 + random.random() / 2))
                    delay = min(self.max_s, delay * 2)
        finally:
            if attempt:
                self._failing -= 1
                if self._failing == 0:
                    self._gauge.set(0)
