"""What every target shares: in-flight bookkeeping, settling tickets, back-pressure, failures.

The worker hands a target `(Delivery, Ticket)` pairs with `submit()`. The target calls
`settle()` once they are durable (a Kafka ack, an S3 object completed, an HTTP 2xx), or
`fail()` to send them to the dead-letter topic, which settles them once that write is acked.
Until then the tickets hold their partitions' committed offsets back.

A target that delivers in order can run each chunk through `deliver_with_retry()`: it applies
the target's RetryPolicy (attempts, event age, back-off with jitter) and dead-letters the chunk
to the target's own dead-letter topic, if it has one, once retries run out or the error is
permanent. Retrying in place (not re-queueing) keeps per-partition order for that target.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from itertools import groupby
from operator import itemgetter
from typing import Any

from processors.core import Delivery, Failure
from streams import metrics
from streams.targets.retry import DeliveryError, RetryPolicy

log = logging.getLogger(__name__)

Item = tuple  # (Delivery, Ticket)
_ticket = itemgetter(1)


def _runs(items: list[Item]) -> list[tuple]:
    """(ticket, count, (topic, partition)) per run of items sharing a ticket; groupby finds the
    runs without a Python step per item."""
    out = []
    for ticket, group in groupby(items, _ticket):
        run = list(group)
        record = run[0][0].record
        out.append((ticket, len(run), (record.topic, record.partition)))
    return out


class RecordChunk(list):
    """Deliveries of one plain rule to one target, as the source records themselves: each is
    delivered as it came (its value, its key; `keys` and `values` list them, gathered while
    the records were routed). `runs` holds (ticket, count, (topic, partition)) for consecutive
    records of one batch's partition, so counting them in and out of flight costs a step per
    run, not per record. Targets that need `(Delivery, Ticket)` items get them from `as_items`.
    `made` is shared by the chunks of one batch: what a target derives from a source record alone
    (the kafka target's traceparent), by id(record), made for the first chunk that needs it and
    found by the others (an archive and the rules take the same records); it lives as long as
    the chunks, which hold the records, so an id stays theirs."""

    __slots__ = ("rule", "runs", "keys", "values", "made")
    rule: str
    runs: list[tuple]
    keys: list
    values: list
    made: dict[int, Any]

    @classmethod
    def of(cls, rule: str, records: list, keys: list, values: list, runs: list[tuple],
           made: dict[int, Any] | None = None) -> RecordChunk:
        chunk = cls(records)
        chunk.rule, chunk.keys, chunk.values, chunk.runs = rule, keys, values, runs
        chunk.made = {} if made is None else made
        return chunk

    def as_items(self, target: str) -> list[Item]:
        items: list[Item] = []
        start, rule, keys, values = 0, self.rule, self.keys, self.values
        for ticket, n, _ in self.runs:
            items += [(Delivery(target, self[i], values[i], keys[i], rule), ticket) for i in range(start, start + n)]
            start += n
        return items


class Target:
    kind = "target"
    retry_policy: RetryPolicy = RetryPolicy()
    dead_letter_topic: str | None = None  # None: the worker's dead-letter topic

    spec = None  # the rule's TargetSettings this target was built from (compared on hot reload)

    def bind(self, spec, retry_policy: RetryPolicy) -> None:
        """The rule's settings for this target: compared on hot reload; retries; dead-letter topic."""
        self.spec = spec
        self.retry_policy = retry_policy
        self.dead_letter_topic = spec.dead_letter_topic

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
        self._count(items, +1)
        self._idle.clear()
        self.write(items)

    def submit_records(self, chunk: RecordChunk) -> None:
        """Plain deliveries as records (see RecordChunk). A target that writes only what it
        reads from `(Delivery, Ticket)` items takes them as such; the kafka target takes the
        chunk itself."""
        self.submit(chunk.as_items(self.id))

    def _count(self, items: list[Item], sign: int) -> float:
        """Add (+1) or remove (-1) items from the in-flight counts and their tickets; returns the
        oldest ticket's creation time. Items of one batch share a ticket and come in runs, so the
        counting is per run."""
        by_partition = self.in_flight_by_partition
        oldest = float("inf")
        for ticket, n, tp in items.runs if type(items) is RecordChunk else _runs(items):
            (ticket.add if sign > 0 else ticket.done)(n)
            by_partition[tp] += sign * n
            if ticket.created < oldest:
                oldest = ticket.created
        self.in_flight += sign * len(items)
        self._gauge.set(self.in_flight)
        return oldest

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
        except TimeoutError:
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
        if not items:
            return
        oldest = self._count(items, -1)
        if outcome == "delivered":
            self._delivered.inc(len(items))
        else:
            metrics.DELIVERIES.labels(self.id, outcome).inc(len(items))
        self._latency.observe(time.monotonic() - oldest)
        if self.in_flight <= 0:
            self._idle.set()

    def fail(self, items: list[Item], error: str, message: str, attempts: int = 1,
             exhausted: str | None = None) -> None:
        """Dead-letter these deliveries with the reason; they settle once the dead letter is acked."""
        log.warning("target %s: %d deliveries failed (%s: %s); dead-lettering them", self.id, len(items), error, message)
        if type(items) is RecordChunk:
            items = items.as_items(self.id)
        metrics.DELIVERIES.labels(self.id, "failed").inc(len(items))
        failures = [
            (Failure(d.record, "deliver", error, message, rule=d.rule, target=self.id, attempts=attempts), t)
            for d, t in items
        ]
        extra = [("eventweir-exhausted", exhausted.encode())] if exhausted else []
        self.dead_letters.write_failures(failures, on_done=lambda: self.settle(items, "dead_lettered"),
                                         topic=self.dead_letter_topic, extra_headers=extra)

    async def deliver_with_retry(self, items: list[Item], send) -> None:
        """Await `send(items)` until it succeeds (then settle), or dead-letter the items when the
        error is permanent or the retry policy runs out. `send` raises DeliveryError to classify a
        failure; any other exception counts as retryable."""
        policy = self.retry_policy
        first_seen = min(t.created for _, t in items)
        attempts = 0
        while True:
            attempts += 1
            try:
                await send(items)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not isinstance(exc, DeliveryError):
                    exc = DeliveryError(type(exc).__name__, str(exc) or type(exc).__name__, retryable=True)
                exhausted = policy.exhausted(attempts, first_seen) if exc.retryable else None
                if not exc.retryable or exhausted:
                    self.fail(items, exc.code, exc.message, attempts, exhausted)
                    return
                metrics.DELIVERIES.labels(self.id, "retried").inc(len(items))
                await asyncio.sleep(max(policy.delay(attempts), exc.retry_after or 0.0))
                continue
            self.settle(items)
            return


class QueuedTarget(Target):
    """A target whose writes are handled in order by one task: `handle(items)` does the async work.

    A chunk whose handling raises is dead-lettered with `failure_code` and the error, and the
    target goes on with the next chunk.
    """

    failure_code = "DeliveryFailed"

    def __init__(self, target_id: str, max_in_flight: int, dead_letters):
        super().__init__(target_id, max_in_flight, dead_letters)
        self._queue: asyncio.Queue[list[Item]] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"target-{self.id}")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def write(self, items: list[Item]) -> None:
        self._queue.put_nowait(items)

    async def handle(self, items: list[Item]) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            items = await self._queue.get()
            try:
                await self.handle(items)
            except Exception as exc:  # never let one bad chunk stop the target
                log.exception("target %s failed a chunk of %d", self.id, len(items))
                self.fail(items, self.failure_code, f"{type(exc).__name__}: {exc}")
