"""Per-key counts over tumbling windows of the record timestamp (e.g. events per device per minute).

`TumblingCount` writes the running count of the event's key in its window into the event
(`into`, default `window_count`), so rules and targets can use it. A record older than the key's
newest window is late: it counts in its own window while that window is within
`allowed_lateness_ms` of the newest, and past that it is counted in `late` and gets a count of
null. A late record never resets or joins another window. State is a `PartitionedState`, one
value per key: [newest window start, its count] followed, while late records may still come, by
[[window start, count], ...] of the older windows; the runtime persists and restores it like any
other stage state.
"""
from __future__ import annotations

from typing import Any

import orjson

from processors.core import Event, Failure
from processors.enrich.state import PartitionedState


class TumblingCount:
    stage = "window"
    appends_json = True  # a new top-level `into` is appended to Event.added (see core.Event)

    def __init__(self, size_ms: int = 60_000, into: str = "window_count", allowed_lateness_ms: int = 0,
                 state: PartitionedState | None = None):
        if not isinstance(size_ms, int) or size_ms <= 0:
            raise ValueError(f"TumblingCount size_ms={size_ms!r}: expected a positive number of milliseconds")
        if not isinstance(allowed_lateness_ms, int) or allowed_lateness_ms < 0:
            raise ValueError(f"TumblingCount allowed_lateness_ms={allowed_lateness_ms!r}: expected milliseconds >= 0")
        self.size_ms = size_ms
        self.into = into
        self.allowed_lateness_ms = allowed_lateness_ms
        self.late = 0  # records past the allowed lateness: not counted in any window
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
            if current is not None and current[0] == window:  # in order: the common case
                count = current[1] + 1
                state.put(partition, key, [window, count] if len(current) == 2 else [window, count, current[2]])
            elif current is None or window > current[0]:
                count = 1
                older = self._open_windows(current, window) if current is not None else None
                state.put(partition, key, [window, 1, older] if older else [window, 1])
            else:
                count = self._count_late(partition, key, current, window)
            body, added = event.body, event.added
            if added is not None:
                event.added = None if into in body else added + (b"%s%d" % (self._name, count),)
            body[into] = count
        return events

    def _open_windows(self, current: list, newest: int) -> list:
        """The windows of `current` that late records may still reach once `newest` opens."""
        floor = newest - self.allowed_lateness_ms
        windows = (current[2] if len(current) > 2 else []) + [[current[0], current[1]]]
        return [pair for pair in windows if pair[0] + self.size_ms > floor]

    def _count_late(self, partition: int, key: str, current: list, window: int) -> int | None:
        older = [list(pair) for pair in current[2]] if len(current) > 2 else []
        if window + self.size_ms <= current[0] - self.allowed_lateness_ms:
            self.late += 1
            return None
        for pair in older:
            if pair[0] == window:
                pair[1] += 1
                count = pair[1]
                break
        else:
            older.append([window, 1])
            count = 1
        self.state.put(partition, key, [current[0], current[1], older])
        return count
