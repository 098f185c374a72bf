"""The dead-letter writer: the original record, plus headers that say what went wrong where.

Headers (all UTF-8): eventweir-stage, eventweir-error, eventweir-message, eventweir-source-topic,
eventweir-source-partition, eventweir-source-offset, and eventweir-rule, eventweir-target,
eventweir-attempts when a delivery failed (plus eventweir-exhausted: MaximumRetryAttempts or
MaximumEventAgeInSeconds, when retries ran out; targets may have dead-letter topics of their own),
and eventweir-masked (`mask` or `withhold`) when the source masks PII: the value is then the masked
record, or none (processors/mask.py).
The original record's own headers come first, so a redrive can restore it exactly. A dead letter
that cannot be written is retried with back-off forever: losing it would lose the event, and its
ticket keeps the offset from being committed.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from processors.core import Failure
from streams import metrics
from streams.kafka.producer import BatchProducer

log = logging.getLogger(__name__)
HEADER_PREFIX = "eventweir-"


def dead_letter_headers(failure: Failure) -> list[tuple[str, bytes]]:
    record = failure.record
    headers = [(k, v) for k, v in record.headers if not k.startswith(HEADER_PREFIX)]
    headers += [
        ("eventweir-stage", failure.stage.encode()),
        ("eventweir-error", failure.error.encode()),
        ("eventweir-message", failure.message.encode()[:4096]),
        ("eventweir-source-topic", record.topic.encode()),
        ("eventweir-source-partition", str(record.partition).encode()),
        ("eventweir-source-offset", str(record.offset).encode()),
    ]
    if failure.rule:
        headers.append(("eventweir-rule", failure.rule.encode()))
    if failure.target:
        headers.append(("eventweir-target", failure.target.encode()))
    if failure.attempts:
        headers.append(("eventweir-attempts", str(failure.attempts).encode()))
    masked = getattr(record, "masked", None)  # processors.mask.MaskedRecord: not the clear record
    if masked:
        headers.append(("eventweir-masked", masked.encode()))
    return headers


class DeadLetterWriter:
    def __init__(self, topic: str, producer: BatchProducer):
        self.topic = topic
        self.producer = producer
        self.written = 0
        self._queue: asyncio.Queue = asyncio.Queue()
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._sender: asyncio.Task | None = None

    async def start(self) -> None:
        await self.producer.partitions(self.topic)
        self._sender = asyncio.create_task(self._run(), name="dead-letters")

    async def close(self) -> None:
        if self._sender:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)

    def write_failures(self, failures: list, on_done: Callable[[], None] | None = None,
                       topic: str | None = None, extra_headers: Sequence[tuple[str, bytes]] = ()) -> None:
        """`failures` are (Failure, Ticket|None) pairs; tickets are settled once the write is acked.
        `topic` overrides the writer's topic (a target's own dead-letter topic)."""
        if not failures:
            if on_done:
                on_done()
            return
        for failure, ticket in failures:
            if ticket is not None:
                ticket.add()
            metrics.DEAD_LETTERS.labels(failure.stage, failure.error).inc()
        self._pending += 1
        self._idle.clear()
        self._queue.put_nowait((failures, on_done, topic or self.topic, list(extra_headers)))

    async def flush(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def _run(self) -> None:
        while True:
            failures, on_done, topic, extra = await self._queue.get()
            records = [(f.record.key, f.record.value, dead_letter_headers(f) + extra) for f, _ in failures]
            delay = 0.5
            while True:
                try:
                    sent, too_large = await self.producer.send(topic, records)
                    if too_large:  # keep the reason, drop the oversized body rather than block forever
                        for i in too_large:
                            key, _, headers = records[i]
                            records[i] = (key, None, headers + [("eventweir-value-dropped", b"too large")])
                        extra, _ = await self.producer.send(topic, [records[i] for i in too_large])
                        sent += extra
                    await asyncio.gather(*(future for future, _ in sent))
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.error("dead-letter write to %s failed (%s); retrying in %.1fs", topic, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30)
            self.written += len(failures)
            for _, ticket in failures:
                if ticket is not None:
                    ticket.done()
            if on_done:
                on_done()
            self._pending -= 1
            if self._pending == 0:
                self._idle.set()
