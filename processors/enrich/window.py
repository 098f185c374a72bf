"""Per-key counts over tumbling windows of the record timestamp (e.g. events per device per minute).

`TumblingCount` writes the running count of the event's key in its window into the event
(`into`, default `window_count`), so rules and targets can use it. State is a `PartitionedState`
(one [window start, count] pair per key: a key's previous windows are closed when its next
window opens), so the runtime can persist and restore it like any other stage state.
"""
from __future__ import annotations

from typing import Any

import orjson

from processors.core import Event, Failure
from processors.enrich.state import PartitionedState


class TumblingCount:
    stage = "window"
    appends_json = True  # a new top-level `into` is appended to Event.added (see core.Event)

    def __init__(self, size_ms: int = 60_000, into: str = "window_count", state: PartitionedState | None = None):
        if not isinstance(size_ms, int) or size_ms <= 0:
            raise ValueError(f"TumblingCount size_ms={size_ms!r}: expected a positive number of milliseconds")
        self.size_ms = size_ms
        self.into = into
        self.state = state or PartitionedState("tumbling_count")
        self._name = orjson.dumps(into) + b":"

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        size, into, state = self.size_ms, self.into, self.state
        table: dict[str, Any]  # set at the first event: no record's partition is None
        partition: int | None = None
        for event in events:
            record = event.record
            if record.partition != partition:
                partition, table = record.partition, state.table(record.partition)
            key = record.key.decode("utf-8", "replace") if record.key is not None else ""
            window = record.timestamp_ms - record.timestamp_ms % size
            current = table.get(key)
            count = current[1] + 1 if current is not None and current[0] == window else 1
            state.put(partition, key, [window, count])
            body, added = event.body, event.added
            if added is not None:
                event.added = None if into in body else added + (b"%s%d" % (self._name, count),)
            body[into] = count
        return events
