"""The hop count every event eventweir publishes to a bus carries, in the `eventweir-hops` header.

A record without the header has made no hop (a producer or PutEvents put it there). The `bus`
target writes its source record's count plus one, as does a replay (the archived record's count,
which the archive keeps with its headers, plus one) and the lake's `Object Created` event (the
highest count of the records in the object, plus one). Past routing.max_hops the event is
dead-lettered instead of published, so a loop of rules republishing to each other's buses stops.
"""
from __future__ import annotations

from collections.abc import Iterable

HOPS_HEADER = "eventweir-hops"


def hops_of(record) -> int:
    """How many times eventweir has republished this record's event to a bus."""
    for key, value in record.headers or ():
        if key == HOPS_HEADER:
            try:
                return int(value)
            except ValueError:  # not one of ours: only eventweir writes well-formed counts
                return 0
    return 0


def one_more_hop(record, hops: int | None = None) -> list[tuple[str, bytes]]:
    """The record's headers as they go on to a bus: its hop count (`hops`, when read already) plus one."""
    headers = [h for h in record.headers or () if h[0] != HOPS_HEADER]
    headers.append((HOPS_HEADER, b"%d" % ((hops_of(record) if hops is None else hops) + 1)))
    return headers


def most_hops(records: Iterable) -> int:
    return max((hops_of(r) for r in records), default=0)


def too_many_hops(hops: int, max_hops: int, what: str) -> str:
    """The dead letter's reason for an event that made `hops` hops and would make one more."""
    return (f"the event was already republished to a bus {hops} times, and routing.max_hops is {max_hops}: {what} "
            "would publish it again. Rules that send events round a loop of buses? Make one of their patterns stop "
            "matching the republished events, or raise routing.max_hops if the chain is meant to be this long.")
