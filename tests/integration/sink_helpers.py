"""Drive a target directly, as the worker does: deliveries with real offset tickets, a dead-letter recorder."""
from __future__ import annotations

import orjson

from processors.core import Delivery, SourceRecord
from streams.runtime.offsets import Ticket


class DeadLetterRecorder:
    """Stands in for the DeadLetterWriter (which needs Kafka): keeps the failures, acks them at once."""

    def __init__(self):
        self.failures = []

    def write_failures(self, failures, on_done=None, topic=None, extra_headers=()):
        self.failures.extend(f for f, _ in failures)
        if on_done:
            on_done()

    @property
    def errors(self) -> dict[int, str]:
        return {f.record.offset: f.error for f in self.failures}


def deliveries(target: str, events: list, topic: str = "t", partition: int = 0, first_offset: int = 0,
               ticket: Ticket | None = None, ts_ms: int = 1_764_000_000_000):
    """(Delivery, Ticket) pairs for consecutive offsets; one ticket for the batch, like the worker."""
    ticket = ticket or Ticket(first_offset + len(events))
    items = []
    for i, event in enumerate(events):
        record = SourceRecord(topic, partition, first_offset + i, ts_ms, None, None)
        payload = event if isinstance(event, bytes) else orjson.dumps(event)
        items.append((Delivery(target, record, payload), ticket))
    return items, ticket
