"""Offset watermarks: what may be committed, per partition.

Every consumed batch gets one `Ticket` per partition it holds, counting the outputs derived from
those records (deliveries, dead letters) plus one hold for the pipeline itself. A ticket is done
when its count reaches zero. The committable offset of a partition is the end of the longest run
of done tickets from the oldest one: a committed offset never passes a record whose outputs are
not all acknowledged, whatever order targets acknowledge in.
"""
from __future__ import annotations

import time
from collections import deque


class Ticket:
    __slots__ = ("end_offset", "pending", "created")

    def __init__(self, end_offset: int):
        self.end_offset = end_offset  # the offset to commit once this ticket and all before it are done
        self.pending = 1  # the pipeline's own hold, released by `release()` after dispatch
        self.created = time.monotonic()

    def add(self, n: int = 1) -> None:
        self.pending += n

    def done(self, n: int = 1) -> None:
        self.pending -= n

    release = done


class PartitionWatermark:
    __slots__ = ("tickets", "committed", "ready")

    def __init__(self, committed: int | None = None):
        self.tickets: deque[Ticket] = deque()
        self.committed = committed
        self.ready: int | None = None  # end of the done run of tickets, committed or not yet

    def open(self, end_offset: int) -> Ticket:
        ticket = Ticket(end_offset)
        self.tickets.append(ticket)
        return ticket

    def committable(self) -> int | None:
        """The new offset to commit, or None when nothing new is safe to commit."""
        tickets = self.tickets
        while tickets and tickets[0].pending <= 0:
            self.ready = tickets.popleft().end_offset
        if self.ready is None or (self.committed is not None and self.ready <= self.committed):
            return None
        return self.ready

    @property
    def outstanding(self) -> int:
        return len(self.tickets)


class Watermarks:
    """Watermarks for every assigned partition, keyed by aiokafka TopicPartition."""

    def __init__(self):
        self.partitions: dict = {}

    def assign(self, tp) -> PartitionWatermark:
        return self.partitions.setdefault(tp, PartitionWatermark())

    def revoke(self, tp) -> None:
        self.partitions.pop(tp, None)

    def open(self, tp, end_offset: int) -> Ticket:
        mark = self.partitions.get(tp) or self.assign(tp)
        return mark.open(end_offset)

    def committable(self, tps=None) -> dict:
        out = {}
        for tp, mark in self.partitions.items():
            if tps is not None and tp not in tps:
                continue
            offset = mark.committable()
            if offset is not None:
                out[tp] = offset
        return out

    def mark_committed(self, offsets: dict) -> None:
        for tp, offset in offsets.items():
            mark = self.partitions.get(tp)
            if mark is not None:
                mark.committed = offset

    def drained(self, tps=None) -> bool:
        return all(
            not mark.tickets or all(t.pending <= 0 for t in mark.tickets)
            for tp, mark in self.partitions.items() if tps is None or tp in tps
        )
