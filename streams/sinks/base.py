"""What every target shares: in-flight bookkeeping, settling tickets, back-pressure, failures.

The worker hands a target `(Delivery, Ticket)` pairs with `submit()`. The target calls
`settle()` once they are durable (a Kafka ack, an S3 object completed, an HTTP 2xx), or
`fail()` to send them to the dead-letter topic, which settles them once that write is acked.
Until then the tickets hold their partitions' committed offsets back.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from processors.core import Delivery, Failure
from streams import metrics

log = logging.getLogger(__name__)

Item = tuple  # (Delivery, Ticket)


class Target:
    kind = "target"

    def __init__(self, target_id: str, max_in_flight: int, dead_letters=None):
        self.id = target_id
        self.max_in_flight = max_in_flight
        self.dead_letters = dead_letters  # a DeadLetterWriter; None only for the writer itself
        self.in_flight = 0
        self.in_flight_by_partition: dict[tuple[str, int], int] = defaultdict(int)
        self._idle = asyncio.Event()
        self._idle.set()
        self._gauge = metrics.IN_FLIGHT.labels(self.id)
        self._delivered = metrics.DELIVERIES.labels(self.id, "delivered")
        self._latency = metrics.DELIVERY_SECONDS.labels(self.id)

    # --- called by the worker -------------------------------------------------------------
    def submit(self, items: list[Item]) -> None:
        if not items:
            return
        self.in_flight += len(items)
        by_partition = self.in_flight_by_partition
        for delivery, ticket in items:
            ticket.add()
            record = delivery.record
            by_partition[(record.topic, record.partition)] += 1
        self._idle.clear()
        self._gauge.set(self.in_flight)
        self.write(items)

    @property
    def saturated(self) -> bool:
        return self.in_flight >= self.max_in_flight

    @property
    def relieved(self) -> bool:
        return self.in_flight <= self.max_in_flight // 2

    def feeding_partitions(self) -> list[tuple[str, int]]:
        return [tp for tp, n in self.in_flight_by_partition.items() if n > 0]

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted is settled. Returns False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def revoked(self, partitions: set[tuple[str, int]]) -> None:
        """The worker gave these partitions up (after committing them); drop what is held for them."""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    # --- implemented by each target -----------------------------------------------------------
    def write(self, items: list[Item]) -> None:
        raise NotImplementedError

    # --- called by the target itself ----------------------------------------------------------
    def settle(self, items: list[Item], outcome: str = "delivered") -> None:
        now = time.monotonic()
        by_partition = self.in_flight_by_partition
        oldest = now
        for delivery, ticket in items:
            ticket.done()
            record = delivery.record
            by_partition[(record.topic, record.partition)] -= 1
            if ticket.created < oldest:
                oldest = ticket.created
        self.in_flight -= len(items)
        self._gauge.set(self.in_flight)
        if outcome == "delivered":
            self._delivered.inc(len(items))
        else:
            metrics.DELIVERIES.labels(self.id, outcome).inc(len(items))
        self._latency.observe(now - oldest)
        if self.in_flight <= 0:
            self._idle.set()

    def fail(self, items: list[Item], error: str, message: str, attempts: int = 1) -> None:
        """Dead-letter these deliveries with the reason; they settle once the dead letter is acked."""
        log.warning("target %s: %d deliveries failed (%s: %s); dead-lettering them", self.id, len(items), error, message)
        metrics.DELIVERIES.labels(self.id, "failed").inc(len(items))
        failures = [
            (Failure(d.record, "deliver", error, message, rule=d.rule, target=self.id, attempts=attempts), t)
            for d, t in items
        ]
        self.dead_letters.write_failures(failures, on_done=lambda: self.settle(items, "dead_lettered"))


def delivery_bytes(delivery: Delivery) -> bytes:
    payload = delivery.payload
    if isinstance(payload, bytes):
        return payload
    import orjson

    return orjson.dumps(payload)
