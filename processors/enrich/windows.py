"""Windowed aggregations over event time: tumbling, hopping and session windows per key.

`WindowAggregate` groups events by a key (a field path) into windows of their event time (a field
in ISO-8601 or epoch ms, or the Kafka timestamp), folds each window's events into aggregations
(count, sum, min, max, mean, first, last, distinct, or a `Reducer` of your own) and, when the
window closes, emits a result event (an EventBridge envelope) after the event that closed it, so
rules route results like any event. With `updates`, each change also emits a result, `final`
false. Input events always pass on unchanged.

Time is watermarked per Kafka partition: the watermark is the largest event time seen in the
partition. A window [start, end) closes once `watermark >= end + allowed_lateness`; a record all
of whose windows are closed is late: counted in `late`, and emitted as a `Late Record` event when
`late="emit"`. A late record never reopens, resets or joins a closed window. A window that
existed for a key or not, closed is closed: a record for it is late (one definition, the same as
the reference implementation in tests/unit/processors/test_windows.py).

Session windows: a record at t spans [t, t + gap); overlapping open sessions of its key merge
(their aggregations merge, so a `Reducer` for sessions needs `merge`). A session closes at its
last event time + gap + allowed_lateness.

State (a `WindowState`, kept in a changelog by the runtime) is, per partition: `k<key>` -> the
key's open windows [[start, end, [accumulators]], ...] and the windows it closed that may have to
be emitted again, [[closing offset, window], ...]; and `~` -> {watermark, the offset of the last
record applied}. After a crash the changelog may be ahead of the committed offsets: a replayed
record at or below the applied offset is not counted again, and the results it closed are
emitted again (same ids), so no committed input is lost or counted twice. The runtime calls
`committed(partition, offset)` after each commit; windows closed below it are forgotten. Updates
(`updates=True`) are not re-sent for replayed records.
"""
from __future__ import annotations

import hashlib
import heapq
import linecache
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Protocol

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from processors.core import Event, Failure, ProcessorError
from processors.enrich.replay import ReplayGuard
from processors.enrich.state import PartitionedState
from processors.normalise.envelope import format_time_ms, make_envelope, stable_id, to_epoch_ms
from processors.paths import get_path, split_path


class Reducer(Protocol):
    """An aggregation: a JSON-serialisable accumulator (it is written to the changelog), folded one
    event at a time. `add` and `merge` return the new accumulator and never change their
    arguments (a failed record leaves the window as it was). `merge` is needed for session windows."""

    def initial(self) -> Any: ...

    def add(self, acc: Any, body: dict[str, Any], time_ms: int) -> Any: ...

    def merge(self, a: Any, b: Any) -> Any: ...

    def result(self, acc: Any) -> Any: ...


def _number(value: Any) -> float | int | None:
    return value if type(value) in (int, float) else None


class Count:
    def initial(self) -> int:
        return 0

    def add(self, acc: int, body: dict[str, Any], time_ms: int) -> int:
        return acc + 1

    def merge(self, a: int, b: int) -> int:
        return a + b

    def result(self, acc: int) -> int:
        return acc


class _OfField:
    """An aggregation of one field; events where it is missing or of the wrong type are skipped."""

    def __init__(self, field: str):
        self.field = field
        self.path = split_path(field)


class Sum(_OfField):
    def initial(self) -> float:
        return 0

    def add(self, acc: float, body: dict[str, Any], time_ms: int) -> float:
        value = _number(get_path(body, self.path))
        return acc if value is None else acc + value

    def merge(self, a: float, b: float) -> float:
        return a + b

    def result(self, acc: float) -> float:
        return acc


class Min(_OfField):
    better = staticmethod(min)

    def initial(self) -> None:
        return None

    def add(self, acc: Any, body: dict[str, Any], time_ms: int) -> Any:
        value = _number(get_path(body, self.path))
        return self.merge(acc, value)

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else self.better(a, b)

    def result(self, acc: Any) -> Any:
        return acc


class Max(Min):
    better = staticmethod(max)


class Mean(_OfField):
    def initial(self) -> list:
        return [0, 0]  # sum, count

    def add(self, acc: list, body: dict[str, Any], time_ms: int) -> list:
        value = _number(get_path(body, self.path))
        return acc if value is None else [acc[0] + value, acc[1] + 1]

    def merge(self, a: list, b: list) -> list:
        return [a[0] + b[0], a[1] + b[1]]

    def result(self, acc: list) -> float | None:
        return acc[0] / acc[1] if acc[1] else None


class First(_OfField):
    """The value of the event with the earliest event time (the first to arrive among equals)."""

    def initial(self) -> None:
        return None

    def add(self, acc: Any, body: dict[str, Any], time_ms: int) -> Any:
        value = get_path(body, self.path)
        return acc if value is None else self.merge(acc, [time_ms, value])

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None or a[0] <= b[0] else b

    def result(self, acc: Any) -> Any:
        return None if acc is None else acc[1]


class Last(First):
    """The value of the event with the latest event time (the last to arrive among equals)."""

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None or a[0] > b[0] else b


class Distinct(_OfField):
    """The number of distinct values (compared as JSON); the values are kept, so mind cardinality."""

    def initial(self) -> dict:
        return {}

    def add(self, acc: dict, body: dict[str, Any], time_ms: int) -> dict:
        value = get_path(body, self.path)
        if value is None:
            return acc
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        return acc if text in acc else {**acc, text: 1}

    def merge(self, a: dict, b: dict) -> dict:
        return {**a, **b}

    def result(self, acc: dict) -> int:
        return len(acc)


_INLINE = (Count, Sum, Min, Max, Mean, First, Last)  # the built-ins compile_add writes out


def compile_add(reducers: list[Reducer]) -> Any:
    """One generated function `add(accs, body, t) -> new accs` for a window's aggregations.

    Calling each aggregation's `add` costs a few Python calls and a field walk per aggregation per
    event (most of the stage's time with several of them); the built-ins are inlined instead, each
    distinct field path read once. Any other reducer (a subclass, a user's `Reducer`, `distinct`)
    is called as it is. Like `Reducer.add` it returns a new list and changes nothing, so a reducer
    that raises leaves the window as it was."""
    lines: list[str] = []
    paths: dict[tuple[str, ...], str] = {}  # a field path -> the local holding its value
    namespace: dict[str, Any] = {"reducers": reducers}
    for path in (r.path for r in reducers if isinstance(r, _OfField) and type(r) in _INLINE):
        if path not in paths:
            var = paths[path] = f"f_{len(paths)}"
            lines.append(f"    {var} = body.get({path[0]!r}) if type(body) is dict else None")
            for step in path[1:]:
                lines.append(f"    {var} = {var}.get({step!r}) if type({var}) is dict else None")
    out = []
    for i, reducer in enumerate(reducers):
        a, kind = f"accs[{i}]", type(reducer)
        f = paths[reducer.path] if isinstance(reducer, _OfField) and kind in _INLINE else ""
        number = f"(type({f}) is int or type({f}) is float)"
        if kind not in _INLINE:
            out.append(f"reducers[{i}].add({a}, body, t)")
        elif kind is Count:
            out.append(f"{a} + 1")
        elif kind is Sum:
            out.append(f"({a} + {f} if {number} else {a})")
        elif kind in (Min, Max):
            better = "<" if kind is Min else ">"
            out.append(f"({f} if {number} and ({a} is None or {f} {better} {a}) else {a})")
        elif kind is Mean:
            out.append(f"([{a}[0] + {f}, {a}[1] + 1] if {number} else {a})")
        else:  # First, Last: ties go to the first (First) or the last (Last) to arrive
            wins = f"t < {a}[0]" if kind is First else f"t >= {a}[0]"
            out.append(f"([t, {f}] if {f} is not None and ({a} is None or {wins}) else {a})")
    lines.append("    return [" + ", ".join(out) + "]")
    source = "def add(accs, body, t):\n" + "\n".join(lines) + "\n"
    filename = f"<eventweir-windows-{hashlib.sha1(source.encode()).hexdigest()[:12]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # tracebacks show it
    exec(compile(source, filename, "exec"), namespace)
    return namespace["add"]


OPS: dict[str, type] = {"count": Count, "sum": Sum, "min": Min, "max": Max, "mean": Mean, "first": First,
                        "last": Last, "distinct": Distinct}

_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_ms(value: Any) -> Any:
    """`250ms`, `30s`, `5m`, `1h`, `1d` or a number of milliseconds -> milliseconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"expected a duration like 250ms, 30s, 5m, 1h, 1d or milliseconds, got {value!r}")
        return int(match.group(1)) * _UNIT_MS[match.group(2)]
    return value


Duration = Annotated[int, BeforeValidator(duration_ms), Field(ge=0)]


class AggregationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["count", "sum", "min", "max", "mean", "first", "last", "distinct"]
    field: str | None = Field(None, description="The field path aggregated (every op but count).")

    @model_validator(mode="after")
    def _field_for_op(self) -> AggregationSettings:
        if self.op != "count" and not self.field:
            raise ValueError(f"op {self.op} needs a field (a path like $.detail.temperature)")
        if self.field:
            split_path(self.field)
        return self

    def build(self) -> Reducer:
        return Count() if self.op == "count" else OPS[self.op](self.field)


class WindowState(PartitionedState):
    """The windows' state, with two indexes derived from it (rebuilt on restore): when each open
    window closes, and which keys hold results closed by each offset not yet committed."""

    marker = "~"  # {watermark, the last offset applied, ...}

    def __init__(self, name: str, stage: WindowAggregate):
        super().__init__(name)
        self._stage = stage
        self.closing: dict[int, list[tuple[int, str, int]]] = {}  # partition -> heap (close at, key, start)
        self.closers: dict[int, dict[int, list[str]]] = {}  # partition -> closing offset -> keys, in order

    def _restored(self, partition: int) -> None:
        self._realign(partition)
        heap, closed = [], []
        for key, value in self.table(partition).items():
            if key.startswith("k"):
                heap += [(self._stage.close_at(window), key[1:], window[0]) for window in value["open"]]
                closed += [(offset, self._stage.close_at(window), key[1:]) for offset, window in value["closed"]]
        heapq.heapify(heap)
        self.closing[partition] = heap
        closers: dict[int, list[str]] = {}
        for offset, _, key in sorted(closed):
            keys = closers.setdefault(offset, [])
            if key not in keys:
                keys.append(key)
        self.closers[partition] = closers
        self._stage.forget(partition)

    def _realign(self, partition: int) -> None:
        """Accumulators are kept by position. When the aggregations changed since the state was
        written (one added, removed or moved in the config), each finds its own again by name, op and
        field, and a new one starts empty in the open windows; the realigned state is written back
        to the changelog. State written before the aggregations were recorded is read as it is."""
        table = self.table(partition)
        meta = table.get("~") or {}
        saved, current = meta.get("aggregations"), self._stage.signature
        if saved is None or saved == current:
            return
        where = [saved.index(sig) if sig in saved else None for sig in current]
        reducers = self._stage.reducers

        def realign(window: list) -> list:
            accs = window[2]
            return [window[0], window[1], [r.initial() if i is None else accs[i] for r, i in zip(reducers, where)]]
        for key, value in list(table.items()):
            if key.startswith("k"):
                self.put(partition, key, {"open": [realign(w) for w in value["open"]],
                                          "closed": [[offset, realign(w)] for offset, w in value["closed"]]})
        self.put(partition, "~", {**meta, "aggregations": current})

    def drop(self, partition: int) -> None:
        super().drop(partition)
        self.closing.pop(partition, None)
        self.closers.pop(partition, None)
        self._stage.forget(partition)

    def committed(self, partition: int, offset: int) -> None:
        """Forget the results closed by records below `offset`: they were delivered."""
        closers = self.closers.get(partition)
        if not closers:
            return
        table = self.table(partition)
        for closer in [c for c in closers if c < offset]:
            for key in closers.pop(closer):
                entry = table.get("k" + key)
                if entry is None:
                    continue
                closed = [c for c in entry["closed"] if c[0] >= offset]
                if closed or entry["open"]:
                    self.put(partition, "k" + key, {"open": entry["open"], "closed": closed})
                else:
                    self.delete(partition, "k" + key)


class WindowAggregate:
    """One windowed aggregation of a source's events (`sources[].enrich: [{type: windows, ...}]`)."""

    stage = "windows"
    # input events pass on unchanged (results and late records are new events): the chain keeps
    # serialising them from their record's bytes instead of dumping each body again
    appends_json = True

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        name: str = Field("windows", pattern=r"^[A-Za-z0-9._-]+$", description=(
            "windows: names the state and its changelog topic, and labels the metrics; give each windows stage "
            "of a source its own name."))
        window: Literal["tumbling", "hopping", "session"] = Field(description=(
            "windows: tumbling (size), hopping (size and hop) or session (gap)."))
        size: Duration | None = Field(None, description="windows: window length (5m, 30s, 250ms, or milliseconds).")
        hop: Duration | None = Field(None, description="windows: hopping windows start every `hop` (a duration).")
        gap: Duration | None = Field(None, description="windows: a session ends after `gap` (a duration) without events.")
        key: str = Field(description="windows: the field path events are grouped by ($.detail.device_id).")
        time: str = Field("kafka", description=(
            "windows: the event time: a field path (ISO-8601 or epoch ms, $.time) or `kafka` for the record timestamp."))
        allowed_lateness: Duration = Field(0, description=(
            "windows: (a duration, like size) how long after its end a window still takes records (it closes "
            "when the partition's largest event time reaches end + allowed_lateness)."))
        aggregations: dict[str, AggregationSettings] = Field(min_length=1, description=(
            "windows: {name: {op, field}}; op is count, sum, min, max, mean, first, last or distinct."))
        updates: bool = Field(False, description="windows: also emit a result (final: false) on each change.")
        source: str = Field("eventweir.windows", description="windows: the `source` of result events.")
        detail_type: str = Field("Window Result", description="windows: the `detail-type` of result events.")
        late: Literal["drop", "emit"] = Field("drop", description=(
            "windows: a record past the lateness is counted (eventweir_window_records_total{outcome=late}) and "
            "left out of every window; `emit` also emits it as a `late_detail_type` event for a rule to route."))
        late_detail_type: str = Field("Late Record", description="windows: the `detail-type` of late-record events.")

        @model_validator(mode="after")
        def _lengths(self) -> WindowAggregate.Settings:
            needed = {"tumbling": ("size",), "hopping": ("size", "hop"), "session": ("gap",)}[self.window]
            for name in needed:
                if not getattr(self, name):
                    raise ValueError(f"a {self.window} window needs `{name}` (a positive duration)")
            for name in {"size", "hop", "gap"} - set(needed):
                if getattr(self, name) is not None:
                    raise ValueError(f"`{name}` does not apply to a {self.window} window")
            if self.hop and self.size and self.hop > self.size:
                raise ValueError("`hop` longer than `size` would leave events out of every window")
            split_path(self.key)
            if self.time != "kafka":
                split_path(self.time)
            return self

    @classmethod
    def from_settings(cls, settings: WindowAggregate.Settings, context: Any = None) -> WindowAggregate:
        return cls(name=settings.name, window=settings.window, size_ms=settings.size, hop_ms=settings.hop,
                   gap_ms=settings.gap, key=settings.key, time=settings.time,
                   allowed_lateness_ms=settings.allowed_lateness,
                   aggregations={name: agg.build() for name, agg in settings.aggregations.items()},
                   updates=settings.updates, source=settings.source, detail_type=settings.detail_type,
                   late=settings.late, late_detail_type=settings.late_detail_type)

    def __init__(self, *, key: str, aggregations: Mapping[str, Reducer], window: str = "tumbling",
                 size_ms: int | None = None, hop_ms: int | None = None, gap_ms: int | None = None,
                 time: str = "kafka", allowed_lateness_ms: int = 0, name: str = "windows", updates: bool = False,
                 source: str = "eventweir.windows", detail_type: str = "Window Result", late: str = "drop",
                 late_detail_type: str = "Late Record"):
        if window == "session":
            if not gap_ms or gap_ms <= 0:
                raise ValueError("a session window needs gap_ms > 0")
        elif window in ("tumbling", "hopping"):
            if not size_ms or size_ms <= 0:
                raise ValueError(f"a {window} window needs size_ms > 0")
            hop_ms = size_ms if window == "tumbling" else hop_ms
            if not hop_ms or not 0 < hop_ms <= size_ms:
                raise ValueError("a hopping window needs 0 < hop_ms <= size_ms")
        else:
            raise ValueError(f"window={window!r}: expected tumbling, hopping or session")
        if allowed_lateness_ms < 0:
            raise ValueError("allowed_lateness_ms must be >= 0")
        if late not in ("drop", "emit"):
            raise ValueError(f"late={late!r}: expected drop or emit")
        self.name, self.window, self.session = name, window, window == "session"
        self.size, self.hop, self.gap = size_ms or 0, hop_ms or 0, gap_ms or 0
        self.lateness = allowed_lateness_ms
        self.key_path = split_path(key)
        self.time_path = None if time == "kafka" else split_path(time)
        self.time_field = time
        self.names = list(aggregations)
        self.reducers = list(aggregations.values())
        self._add = compile_add(self.reducers)  # (accs, body, t) -> the accs with the event folded in
        # what each accumulator in the state is, kept with it (WindowState._realign)
        self.signature = [[name, type(r).__name__, getattr(r, "field", None)] for name, r in aggregations.items()]
        self.updates, self.source, self.detail_type = updates, source, detail_type
        self.late_mode, self.late_detail_type = late, late_detail_type
        self.late = 0  # records past the allowed lateness, in no window
        self.skipped = 0  # records without a key or event time, in no window
        self.reducer_errors = 0  # results a user's reducer failed to give (null in the result)
        self.state: WindowState = WindowState(name, self)
        self._guard = ReplayGuard()  # which records the state holds already (a replay after a crash)

    def forget(self, partition: int) -> None:
        """The partition's state was restored or dropped: what this instance applied is unknown."""
        self._guard.forget(partition)

    # --- windows -------------------------------------------------------------------------------
    def close_at(self, window: list) -> int:
        return window[1] + self.lateness

    def starts(self, t: int) -> range:
        """The starts of the fixed windows [s, s + size) holding t, oldest first."""
        hop = self.hop
        return range((t - self.size) // hop * hop + hop, t // hop * hop + 1, hop)

    def _run_of(self, partition: int) -> tuple[dict, dict, int | None, int]:
        """(live table, dirty table, watermark, last offset applied) for a run of `partition`'s records:
        the tables written both at once (no put call per record), the two numbers kept in locals
        over the run and written back once at its end (`_mark`)."""
        table, dirty = self.state.tables(partition)
        meta = table.get("~")
        return (table, dirty, meta["watermark"], meta["offset"]) if meta else (table, dirty, None, -1)

    def _mark(self, table: dict, dirty: dict, watermark: int | None, applied: int) -> None:
        """The end of a run: how far the partition's state goes (the `~` marker)."""
        table["~"] = dirty["~"] = {"watermark": watermark, "offset": applied, "aggregations": self.signature}

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        if self.tumbling_fast and self.window == "tumbling":
            return self._process_tumbling(events, failures)
        return self._process_general(events, failures)

    tumbling_fast = True  # False: tumbling windows take the general loop too (tests compare the two)

    def _process_general(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        out: list[Event] = []
        closing, guard = self.state.closing, self._guard
        # a batch comes in runs of one partition's records (`_run_of`, `_mark`)
        partition: int | None = None
        table: dict = {}
        dirty: dict = {}
        watermark: int | None = None
        applied, moved = -1, False
        try:
            for event in events:
                record = event.record
                if record.partition != partition:
                    if moved:
                        self._mark(table, dirty, watermark, applied)
                    partition = record.partition
                    table, dirty, watermark, applied = self._run_of(partition)
                    moved = False
                offset = record.offset
                if guard.applied(event, applied):
                    # already in the state: read again after a crash (or re-run after a failed batch)
                    out.append(event)
                    if guard.first_replay(partition, offset):
                        out += [self._result(event, detail) for detail in self._closed_by(partition, offset)]
                    continue
                try:
                    found = self._read(event.body, record)
                    change = None if found is None else self._fold(table, watermark, *found, event.body)
                except ProcessorError as exc:
                    failures.append(Failure(record, self.name, exc.error, exc.message))
                    continue
                except Exception as exc:  # a user's reducer: this record only, the windows stay as they were
                    failures.append(Failure(record, self.name, "ReducerError", f"{type(exc).__name__}: {exc}"))
                    continue
                # from here nothing raises: the record's changes are applied in one step
                out.append(event)
                if found is None:
                    self.skipped += 1
                elif change is None:
                    self.late += 1
                    if self.late_mode == "emit":
                        out.append(self._late(event, found))
                else:
                    key, t = found
                    windows, added, opened = change
                    name = "k" + key
                    entry = table.get(name)
                    table[name] = dirty[name] = {"open": windows, "closed": entry["closed"] if entry else []}
                    if opened:
                        heap = closing.setdefault(partition, [])
                        for window in opened:
                            heapq.heappush(heap, (self.close_at(window), key, window[0]))
                    if self.updates:
                        out += [self._result(event, self._detail(key, window, False)) for window in added]
                    if watermark is None or t > watermark:
                        watermark = t
                if watermark is not None:
                    due = closing.get(partition)
                    if due and due[0][0] <= watermark:  # most records close nothing
                        out += [self._result(event, detail) for detail in self._close(partition, watermark, offset)]
                applied, moved = offset, True
        finally:
            if moved:
                self._mark(table, dirty, watermark, applied)
        return out

    def _process_tumbling(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        """`process` for tumbling windows, the usual kind, with its steps written out in one loop: a
        record falls in one window, whose accumulators are replaced in the key's entry in place (the
        entry is marked dirty, and written with its latest value), and the replay guard is told of a
        record only when another event of the same record could ask. The same outputs and state as
        the general loop (tests/unit/processors/test_windows.py runs both on the same input)."""
        out: list[Event] = []
        closing, guard = self.state.closing, self._guard
        size, lateness, add, reducers, updates = self.size, self.lateness, self._add, self.reducers, self.updates
        key_path, time_path, heappush = self.key_path, self.time_path, heapq.heappush
        first_step = key_path[0] if len(key_path) == 1 else None
        partition: int | None = None
        table: dict = {}
        dirty: dict = {}
        watermark: int | None = None
        applied, moved = -1, False
        pending: tuple[int, list[int]] | None = None  # (offset, ids of its events) not yet told to the guard
        try:
            for event in events:
                record = event.record
                if record.partition != partition:
                    if moved:
                        self._mark(table, dirty, watermark, applied)
                    if pending is not None:
                        guard.note(partition, *pending)  # type: ignore[arg-type]  # set with partition
                        pending = None
                    partition = record.partition
                    table, dirty, watermark, applied = self._run_of(partition)
                    moved = False
                offset = record.offset
                if offset > applied:  # not in the state yet: the usual case
                    if pending is not None and pending[0] == offset:
                        pending[1].append(id(event))  # events sharing a record
                    else:
                        pending = (offset, [id(event)])
                else:
                    if pending is not None:
                        guard.note(partition, *pending)
                        pending = None
                    if guard.applied(event, applied):
                        out.append(event)
                        if guard.first_replay(partition, offset):
                            out += [self._result(event, detail) for detail in self._closed_by(partition, offset)]
                        continue
                body = event.body
                if first_step is not None:
                    key = body.get(first_step) if type(body) is dict else None
                else:
                    key = get_path(body, key_path)
                t: Any = None
                if key is not None:
                    if time_path is None:
                        t = record.timestamp_ms
                    else:
                        t = get_path(body, time_path)
                        if t is not None:
                            try:
                                t = to_epoch_ms(t, self.time_field)
                            except ProcessorError as exc:
                                failures.append(Failure(record, self.name, exc.error, exc.message))
                                continue
                out.append(event)
                if t is None:
                    self.skipped += 1
                else:
                    if type(key) is not str:
                        key = orjson.dumps(key).decode()
                    start = t - t % size
                    end = start + size
                    if watermark is not None and end + lateness <= watermark:
                        self.late += 1  # closed: a late record never reopens a window
                        if self.late_mode == "emit":
                            out.append(self._late(event, (key, t)))
                    else:
                        name = "k" + key
                        entry = table.get(name)
                        window = None
                        if entry is not None:
                            for candidate in entry["open"]:
                                if candidate[0] == start:
                                    window = candidate
                                    break
                        opened = window is None
                        try:  # the accumulators change only once `add` has returned
                            if window is not None:
                                window[2] = add(window[2], body, t)
                            else:
                                window = [start, end, add([r.initial() for r in reducers], body, t)]
                        except Exception as exc:  # a user's reducer: this record only, the windows stay as they were
                            out.pop()
                            failures.append(Failure(record, self.name, "ReducerError", f"{type(exc).__name__}: {exc}"))
                            continue
                        if entry is None:
                            table[name] = dirty[name] = {"open": [window], "closed": []}
                        else:
                            if opened:
                                entry["open"] = sorted(entry["open"] + [window])
                            dirty[name] = entry
                        if opened:
                            heappush(closing.setdefault(partition, []), (end + lateness, key, start))
                        if updates:
                            out.append(self._result(event, self._detail(key, window, False)))
                        if watermark is None or t > watermark:
                            watermark = t
                if watermark is not None:
                    due = closing.get(partition)
                    if due and due[0][0] <= watermark:  # most records close nothing
                        out += [self._result(event, detail) for detail in self._close(partition, watermark, offset)]
                applied, moved = offset, True
        finally:
            if moved:
                self._mark(table, dirty, watermark, applied)
            if pending is not None:
                guard.note(partition, *pending)  # type: ignore[arg-type]  # set with partition
        return out

    def _read(self, body: dict[str, Any], record: Any) -> tuple[str, int] | None:
        """(key, event time ms) of an event, None when it has no key; a bad time is a ProcessorError."""
        key = get_path(body, self.key_path)
        if key is None:
            return None
        if self.time_path is None:
            t = record.timestamp_ms
        else:
            value = get_path(body, self.time_path)
            if value is None:
                return None
            t = to_epoch_ms(value, self.time_field)
        return (key if type(key) is str else orjson.dumps(key).decode()), t

    def _fold(self, table: dict, watermark: int | None, key: str, t: int,
              body: dict) -> tuple[list, list, list] | None:
        """(the key's new windows, the windows this record changed, those of them that need a closing
        entry: new windows, or sessions that grew), or None when the record is late."""
        entry = table.get("k" + key)
        reducers, add, windows = self.reducers, self._add, entry["open"] if entry else []
        if self.session:
            if watermark is not None and t + self.gap + self.lateness <= watermark:
                return None
            start, end = t, t + self.gap
            accs = add([r.initial() for r in reducers], body, t)
            kept, absorbed = [], []
            for window in windows:
                if window[0] < end and start < window[1]:  # overlaps: merge into one session
                    start, end = min(start, window[0]), max(end, window[1])
                    accs = [r.merge(a, b) for r, a, b in zip(reducers, window[2], accs)]
                    absorbed.append(window)
                else:
                    kept.append(window)
            merged = [start, end, accs]
            # an entry already closes a session that the record fell inside of without extending it
            grown = not any(window[0] == start and window[1] == end for window in absorbed)
            return sorted(kept + [merged]), [merged], [merged] if grown else []
        if self.hop == self.size:  # tumbling: the one window [t - t % size, + size), found among a few open
            start = t - t % self.size
            end = start + self.size
            if watermark is not None and end + self.lateness <= watermark:
                return None  # closed: a late record never reopens a window
            for i, window in enumerate(windows):
                if window[0] == start:
                    changed = [start, end, add(window[2], body, t)]
                    windows = windows.copy()  # the key's entry is replaced, never changed in place
                    windows[i] = changed
                    return windows, [changed], []
            new = [start, end, add([r.initial() for r in reducers], body, t)]
            return sorted(windows + [new]), [new], [new]
        by_start = {window[0]: window for window in windows}
        added, opened = [], []
        for start in self.starts(t):
            end = start + self.size
            if watermark is not None and end + self.lateness <= watermark:
                continue  # closed: a late record never reopens a window
            window = by_start.get(start)
            accs = window[2] if window is not None else [r.initial() for r in reducers]
            by_start[start] = [start, end, add(accs, body, t)]
            added.append(by_start[start])
            if window is None:
                opened.append(by_start[start])
        if not added:
            return None
        return sorted(by_start.values()), added, opened

    def _close(self, partition: int, watermark: int, offset: int) -> list[dict]:
        """Close the windows of `partition` that the watermark has passed, as the record at `offset`
        made it advance; their result details. A closed window stays in its key's entry, tagged with
        `offset`, until that offset is committed (WindowState.committed): a replay emits it again."""
        heap = self.state.closing.get(partition)
        table = self.state.table(partition)
        results = []
        while heap and heap[0][0] <= watermark:
            close_at, key, start = heapq.heappop(heap)
            entry = table.get("k" + key)
            match = [w for w in entry["open"] if w[0] == start and self.close_at(w) == close_at] if entry else []
            if not match:
                continue  # a session since merged into a longer one: its newer entry closes it
            assert entry is not None
            self.state.put(partition, "k" + key, {"open": [w for w in entry["open"] if w is not match[0]],
                                                  "closed": entry["closed"] + [[offset, match[0]]]})
            keys = self.state.closers.setdefault(partition, {}).setdefault(offset, [])
            if key not in keys:
                keys.append(key)
            results.append(self._detail(key, match[0], True))
        return results

    def _closed_by(self, partition: int, offset: int) -> list[dict]:
        """The result details of the windows the record at `offset` closed (for a replay)."""
        table = self.state.table(partition)
        details = []
        for key in self.state.closers.get(partition, {}).get(offset, []):
            entry = table.get("k" + key)
            closed = entry["closed"] if entry else []
            details += [self._detail(key, window, True) for closer, window in closed if closer == offset]
        return details

    # --- output --------------------------------------------------------------------------------
    def _detail(self, key: str, window: list, final: bool) -> dict[str, Any]:
        return {"window": self.name, "key": key, "start": format_time_ms(window[0]), "end": format_time_ms(window[1]),
                "final": final,
                "aggregates": {name: self._value(r, acc) for name, r, acc in zip(self.names, self.reducers, window[2])}}

    def _value(self, reducer: Reducer, acc: Any) -> Any:
        try:
            return reducer.result(acc)
        except Exception:  # a user's reducer: its aggregate is null, the window still closes
            self.reducer_errors += 1
            return None

    def _result(self, event: Event, detail: dict[str, Any]) -> Event:
        body, record = event.body, event.record
        parts = [self.name, detail["key"], detail["start"], detail["end"]]
        if not detail["final"]:
            parts += [record.topic, record.partition, record.offset]
        return Event(record, make_envelope(stable_id(*parts), self.detail_type, self.source,
                                           _text(body, "account", "000000000000"), detail["end"][:19] + "Z",
                                           _text(body, "region", "local"), [], detail))

    def _late(self, event: Event, found: tuple[str, int]) -> Event:
        body, record = event.body, event.record
        detail = {"window": self.name, "key": found[0], "time": format_time_ms(found[1]), "event": body}
        return Event(record, make_envelope(stable_id(self.name, "late", record.topic, record.partition, record.offset),
                                           self.late_detail_type, self.source, _text(body, "account", "000000000000"),
                                           format_time_ms(found[1])[:19] + "Z", _text(body, "region", "local"), [],
                                           detail))


def _text(body: dict[str, Any], name: str, default: str) -> str:
    value = body.get(name)
    return value if type(value) is str else default
