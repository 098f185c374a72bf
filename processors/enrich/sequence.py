"""Sequence gaps: per key, a sequence number that should grow by one (`{type: sequence, key, sequence}`).

For each key (a field path: an instrument, a device) the stage expects the next sequence number
(a field path holding an integer) to be the last one + 1. A record that jumps ahead reveals a gap:
the stage emits a `Gap Detected` envelope event after it (detail: key, expected, got, missing), so
rules route gaps like any event. A record below the expected number is `out_of_order` when it
fills a gap seen earlier, else a `duplicate`. Input events always pass on unchanged; the outcomes
are counted per stage (`counts`, exported as eventweir_sequence_records_total).

State (a `SequenceState`, kept in a changelog by the runtime) is, per partition: `k<key>` ->
{next, missing: the gaps still open, [[first, last], ...], the newest `max_missing` of them};
`~` -> {the offset of the last record applied}; `g<offset>` -> the gap details that record
emitted, kept until its offset is committed. A record replayed after a crash at or below the
applied offset is not counted again (processors/enrich/replay.py, as the windows do) and emits its
gaps again with the same ids, so a gap of committed input is emitted once, and none is lost.
"""
from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from processors.core import Event, Failure
from processors.enrich.replay import ReplayGuard
from processors.enrich.state import PartitionedState
from processors.normalise.envelope import format_time_ms, make_envelope, stable_id
from processors.paths import get_path, split_path

OUTCOMES = ("in_order", "gap", "duplicate", "out_of_order", "skipped")


class SequenceState(PartitionedState):
    """The keys' expected numbers, and the gaps each uncommitted offset emitted (for a replay)."""

    marker = "~"  # the last offset applied

    def __init__(self, name: str, stage: SequenceGaps):
        super().__init__(name)
        self._stage = stage
        self.kept: dict[int, list[int]] = {}  # partition -> offsets with gaps kept, ascending

    def _restored(self, partition: int) -> None:
        self.kept[partition] = sorted(int(key[1:]) for key in self.table(partition) if key.startswith("g"))
        self._stage.forget(partition)

    def drop(self, partition: int) -> None:
        super().drop(partition)
        self.kept.pop(partition, None)
        self._stage.forget(partition)

    def committed(self, partition: int, offset: int) -> None:
        """Forget the gaps emitted by records below `offset`: they were delivered."""
        kept = self.kept.get(partition)
        while kept and kept[0] < offset:
            self.delete(partition, f"g{kept.pop(0)}")


def _integer(value: Any) -> int | None:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is str and value.isascii() and value.isdigit():
        return int(value)
    return None


class SequenceGaps:
    """Gap, duplicate and out-of-order detection on a per-key sequence number."""

    stage = "sequence"
    # input events pass on unchanged (gap events are new): the chain keeps sending them as their
    # record's bytes instead of serialising each body again
    appends_json = True

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        name: str = Field("sequence", pattern=r"^[A-Za-z0-9._-]+$", description=(
            "sequence: names the state and its changelog topic, and labels the metrics; give each sequence stage "
            "of a source its own name."))
        key: str = Field(description="sequence: the field path sequences are tracked by ($.detail.instrument).")
        sequence: str = Field(description=(
            "sequence: the field path of the sequence number (an integer, or a string of digits), which grows "
            "by one per record of a key."))
        source: str = Field("eventweir.sequence", description="sequence: the `source` of gap events.")
        detail_type: str = Field("Gap Detected", description="sequence: the `detail-type` of gap events.")
        max_missing: int = Field(32, ge=0, le=10_000, description=(
            "sequence: per key, how many open gaps are remembered to tell a late record (out_of_order, it "
            "fills one) from a duplicate; the oldest are forgotten first."))

        @field_validator("key", "sequence")
        @classmethod
        def _path(cls, value: str) -> str:
            split_path(value)
            return value

    @classmethod
    def from_settings(cls, settings: SequenceGaps.Settings, context: Any = None) -> SequenceGaps:
        return cls(**dict(settings))

    def __init__(self, *, key: str, sequence: str, name: str = "sequence", source: str = "eventweir.sequence",
                 detail_type: str = "Gap Detected", max_missing: int = 32):
        self.name, self.source, self.detail_type = name, source, detail_type
        self.key_path, self.sequence_path, self.sequence_field = split_path(key), split_path(sequence), sequence
        self.max_missing = max_missing
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.state = SequenceState(name, self)
        self._guard = ReplayGuard()

    def forget(self, partition: int) -> None:
        self._guard.forget(partition)

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        out: list[Event] = []
        state, counts = self.state, self.counts
        for event in events:
            record = event.record
            partition, offset = record.partition, record.offset
            table = state.table(partition)
            applied = table.get("~", -1)
            out.append(event)
            if self._guard.applied(event, applied):
                if self._guard.first_replay(partition, offset):
                    out += [self._gap_event(event, detail) for detail in table.get(f"g{offset}", ())]
                continue
            key = get_path(event.body, self.key_path)
            raw = get_path(event.body, self.sequence_path)
            if key is None or raw is None:
                counts["skipped"] += 1
                state.put(partition, "~", offset)
                continue
            number = _integer(raw)
            if number is None:
                out.pop()
                failures.append(Failure(record, self.name, "BadSequence", (
                    f"{self.sequence_field} is {raw!r}: expected an integer sequence number")))
                continue
            key = key if type(key) is str else orjson.dumps(key).decode()
            outcome, entry, detail = self._classify(table.get("k" + key), key, number)
            counts[outcome] += 1
            if entry is not None:
                state.put(partition, "k" + key, entry)
            if detail is not None:
                gaps = [*table.get(f"g{offset}", ()), detail]  # other events of the record may have gaps too
                state.put(partition, f"g{offset}", gaps)
                kept = state.kept.setdefault(partition, [])
                if not kept or kept[-1] != offset:
                    kept.append(offset)
                out.append(self._gap_event(event, detail))
            state.put(partition, "~", offset)
        return out

    def _classify(self, entry: dict | None, key: str, number: int) -> tuple[str, dict | None, dict | None]:
        """(outcome, the key's new entry or None when unchanged, a gap's detail or None)."""
        if entry is None:
            return "in_order", {"next": number + 1, "missing": []}, None
        expected, missing = entry["next"], entry["missing"]
        if number == expected:
            return "in_order", {"next": number + 1, "missing": missing}, None
        if number > expected:
            opened = (missing + [[expected, number - 1]])[-self.max_missing:] if self.max_missing else []
            detail = {"stage": self.name, "key": key, "expected": expected, "got": number, "missing": number - expected}
            return "gap", {"next": number + 1, "missing": opened}, detail
        for i, (first, last) in enumerate(missing):
            if first <= number <= last:  # a late record filling an open gap
                rest = [r for r in ([first, number - 1], [number + 1, last]) if r[0] <= r[1]]
                return "out_of_order", {"next": expected, "missing": missing[:i] + rest + missing[i + 1:]}, None
        return "duplicate", None, None

    def _gap_event(self, event: Event, detail: dict[str, Any]) -> Event:
        body, record = event.body, event.record
        time = body.get("time")
        if type(time) is not str:
            time = format_time_ms(record.timestamp_ms)[:19] + "Z"
        # the same gap of the same key has the same id: a replay's gap event is a duplicate of the first
        event_id = stable_id(self.name, "gap", detail["key"], detail["expected"], detail["got"])
        return Event(record, make_envelope(event_id, self.detail_type, self.source, _text(body, "account", "000000000000"),
                                           time, _text(body, "region", "local"), [], detail))


def _text(body: dict[str, Any], name: str, default: str) -> str:
    value = body.get(name)
    return value if type(value) is str else default
