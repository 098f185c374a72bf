"""Windowed aggregations (processors/enrich/windows.py) against a plain reference implementation."""
from __future__ import annotations

import random
from collections import defaultdict
from unittest.mock import ANY

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.core import Event, SourceRecord
from processors.enrich.windows import (
    Count,
    Distinct,
    First,
    Last,
    Max,
    Mean,
    Min,
    Sum,
    WindowAggregate,
    compile_add,
)
from processors.normalise.envelope import to_epoch_ms

AGGS = ("count", "sum", "min", "max", "mean", "first", "last", "distinct")


def all_aggregations(field="$.v"):
    return {"count": Count(), "sum": Sum(field), "min": Min(field), "max": Max(field), "mean": Mean(field),
            "first": First(field), "last": Last(field), "distinct": Distinct(field)}


def ev(key, t, v=None, offset=0, partition=0, **extra):
    body = {"k": key, "t": t, **({} if v is None else {"v": v}), **extra}
    return Event(SourceRecord("iot", partition, offset, 0, None, orjson.dumps(body)), body)


def events(pairs, start_offset=0):
    return [ev(k, t, value_of(t), offset=start_offset + i) for i, (k, t) in enumerate(pairs)]


def value_of(t):
    return (t * 31) % 17  # a function of the time: ties in time never make first/last ambiguous


def stage(window="tumbling", **kw):
    kw.setdefault("aggregations", all_aggregations())
    return WindowAggregate(key="$.k", time="$.t", window=window, **kw)


def finals(out):
    return sorted((e.body["detail"]["key"], to_epoch_ms(e.body["detail"]["start"]), to_epoch_ms(e.body["detail"]["end"]),
                   tuple(e.body["detail"]["aggregates"][a] for a in AGGS))
                  for e in out if e.body.get("detail-type") == "Window Result" and e.body["detail"]["final"])


def aggregate(records):
    """Each aggregation computed the plain way from a window's (time, value) records, in arrival order."""
    values = [v for _, v in records]
    first = min(range(len(records)), key=lambda i: (records[i][0], i))
    last = max(range(len(records)), key=lambda i: (records[i][0], i))
    return (len(values), sum(values), min(values), max(values), sum(values) / len(values), records[first][1],
            records[last][1], len(set(values)))


def reference_fixed(pairs, size, hop, lateness):
    """Tumbling (hop = size) and hopping windows, record by record: a window [s, s + size) is closed once the
    largest time seen reaches s + size + lateness; a record goes into each of its windows still open."""
    watermark, windows, results, late = None, defaultdict(list), [], 0
    for key, t in pairs:
        starts = [s for s in range(t - size + 1, t + 1) if s % hop == 0]
        open_ = [s for s in starts if watermark is None or s + size + lateness > watermark]
        late += not open_
        for s in open_:
            windows[(key, s)].append((t, value_of(t)))
        watermark = t if watermark is None else max(watermark, t)
        for (k, s), records in list(windows.items()):
            if s + size + lateness <= watermark:
                results.append((k, s, s + size, aggregate(records)))
                del windows[(k, s)]
    return sorted(results), late


def reference_sessions(pairs, gap, lateness):
    """Session windows, record by record: a record spans [t, t + gap) and joins every open session of its key
    it overlaps; a session closes once the largest time seen reaches its last time + gap + lateness."""
    watermark, sessions, results, late = None, defaultdict(list), [], 0
    for key, t in pairs:
        if watermark is not None and t + gap + lateness <= watermark:
            late += 1
        else:
            joined = [(t, value_of(t))]
            for session in list(sessions[key]):
                if min(s for s, _ in session) < t + gap and t < max(s for s, _ in session) + gap:
                    sessions[key].remove(session)
                    joined = session + joined
            sessions[key].append(joined)
        watermark = t if watermark is None else max(watermark, t)
        for k, open_ in sessions.items():
            for session in list(open_):
                last = max(s for s, _ in session)
                if last + gap + lateness <= watermark:
                    open_.remove(session)
                    results.append((k, min(s for s, _ in session), last + gap, aggregate(session)))
    return sorted(results), late


def run_in_batches(window_stage, evs, seed):
    rng, out, i = random.Random(seed), [], 0
    while i < len(evs):
        n = rng.randint(1, 7)
        out += window_stage.process(evs[i:i + n], [])
        i += n
    return out


def with_flush(pairs):
    return pairs + [("zz", 10**6)]  # a record far ahead closes every window


pairs_strategy = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 2000)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(pairs=pairs_strategy, size=st.sampled_from([100, 250, 1000]), hop_div=st.sampled_from([1, 2, 5, 3]),
       lateness=st.sampled_from([0, 1, 150, 700]), seed=st.integers(0, 100))
def test_tumbling_and_hopping_windows_match_the_reference_over_out_of_order_input(pairs, size, hop_div, lateness, seed):
    hop = size // hop_div
    window = stage("tumbling" if hop == size else "hopping", size_ms=size,
                   hop_ms=None if hop == size else hop, allowed_lateness_ms=lateness)
    out = run_in_batches(window, events(with_flush(pairs)), seed)
    expected, late = reference_fixed(with_flush(pairs), size, hop, lateness)
    assert finals(out) == [(k, s, e, pytest.approx(a)) for k, s, e, a in expected]
    assert window.late == late
    assert sum(1 for e in out if e.body.get("detail-type") is None) == len(pairs) + 1  # every input passes on


@settings(max_examples=150, deadline=None)
@given(pairs=pairs_strategy, gap=st.sampled_from([30, 200]), lateness=st.sampled_from([0, 50, 400]),
       seed=st.integers(0, 100))
def test_session_windows_match_the_reference_over_out_of_order_input(pairs, gap, lateness, seed):
    window = stage("session", gap_ms=gap, allowed_lateness_ms=lateness)
    out = run_in_batches(window, events(with_flush(pairs)), seed)
    expected, late = reference_sessions(with_flush(pairs), gap, lateness)
    assert finals(out) == [(k, s, e, pytest.approx(a)) for k, s, e, a in expected]
    assert window.late == late


@settings(max_examples=60, deadline=None)
@given(pairs=pairs_strategy, kind=st.sampled_from(["tumbling", "hopping", "session"]), data=st.data())
def test_a_crash_after_the_changelog_was_written_neither_loses_nor_double_counts(pairs, kind, data):
    # The changelog holds the state after record `written`; offsets were committed only up to `committed`:
    # the records in between are read again by the restarted worker.
    pairs = with_flush(pairs)
    written = data.draw(st.integers(0, len(pairs)))
    committed = data.draw(st.integers(0, written))
    params = {"tumbling": {"size_ms": 250}, "hopping": {"size_ms": 250, "hop_ms": 50},
              "session": {"gap_ms": 100}}[kind]
    evs = events(pairs)
    expected = finals(stage(kind, allowed_lateness_ms=100, **params).process(evs, []))

    before = stage(kind, allowed_lateness_ms=100, **params)
    out_before = before.process(evs[:written], [])
    before.state.committed(0, committed)
    changelog = before.state.changes()
    delivered = [e for e in out_before if e.record.offset < committed]  # outputs of committed input are out

    after = stage(kind, allowed_lateness_ms=100, **params)
    after.state.restore(0, [(key, value) for _, key, value in changelog])
    out_after = after.process(evs[committed:], [])
    assert sorted(set(finals(delivered + out_after))) == expected
    assert len(finals(delivered + out_after)) == len(expected)  # each window's result once: none lost, none twice


def test_lateness_boundary_a_window_takes_records_until_the_watermark_reaches_end_plus_lateness():
    window = stage(size_ms=60_000, allowed_lateness_ms=10_000)
    out = window.process([ev("d", 5_000, 1, 0), ev("d", 69_999, 2, 1), ev("d", 59_999, 3, 2)], [])
    assert window.late == 0 and finals(out) == []  # watermark 69.999 s: window [0, 60 s) still open
    out = window.process([ev("d", 70_000, 4, 3), ev("d", 1_000, 5, 4), ev("d", 61_000, 6, 5)], [])
    assert window.late == 1  # 1 s arrived after the watermark reached 70 s: [0, 60 s) had closed
    result = [e.body for e in out if e.body.get("detail-type") == "Window Result"]
    assert len(result) == 1 and result[0]["detail"]["aggregates"]["count"] == 2  # 5 s and 59.999 s, not 1 s
    assert result[0]["detail"]["start"] == "1970-01-01T00:00:00.000Z"
    assert result[0]["detail"]["end"] == "1970-01-01T00:01:00.000Z"
    bodies = [e.body for e in out]
    assert bodies.index(result[0]) == bodies.index({"k": "d", "t": 70_000, "v": 4}) + 1  # right after its closer


def test_a_late_record_never_resets_or_joins_another_window():
    window = stage(size_ms=10, allowed_lateness_ms=0)
    out = window.process([ev("k", t, t, i) for i, t in enumerate([10, 11, 25, 12, 13, 26])], [])
    # 12 and 13 came after the watermark (25) passed [10, 20): late, and [20, 30) keeps only 25 and 26
    assert window.late == 2
    out += window.process([ev("k", 40, 40, 6)], [])
    assert [r[1:3] + (r[3][0], r[3][1]) for r in finals(out)] == [(10, 20, 2, 21), (20, 30, 2, 51)]


def test_late_records_can_be_emitted_as_events_for_a_rule_to_route():
    window = stage(size_ms=10, late="emit", late_detail_type="Late Reading")
    out = window.process([ev("k", 30, 1, 0), ev("k", 5, 2, 1)], [])
    late = [e.body for e in out if e.body.get("detail-type") == "Late Reading"]
    assert len(late) == 1 and late[0]["detail"]["event"] == {"k": "k", "t": 5, "v": 2}
    assert late[0]["detail"]["key"] == "k" and window.late == 1


def test_session_gap_merging_bridges_two_sessions_and_touching_ones_stay_apart():
    window = stage("session", gap_ms=10, allowed_lateness_ms=100)
    out = window.process([ev("u", 0, 1, 0), ev("u", 16, 2, 1), ev("u", 8, 3, 2)], [])  # 8 bridges [0,10) and [16,26)
    out += window.process([ev("u", 36, 4, 3), ev("u", 1_000, 5, 4)], [])  # 36 starts where [.., 26+10) ends: apart
    sessions = [(r[1], r[2], r[3][0], r[3][1]) for r in finals(out) if r[0] == "u"]
    assert sessions == [(0, 26, 3, 6), (36, 46, 1, 4)]


def test_each_aggregation_over_one_window():
    window = stage(size_ms=100)
    values = [5, 3.5, None, 3.5, "text", 9]  # a missing or non-numeric value is left out of sum/min/max/mean
    out = window.process([ev("k", t, v, i) for i, (t, v) in enumerate(zip([40, 10, 20, 30, 50, 60], values))]
                         + [ev("k", 500, 0, 6)], [])
    (result,) = [e.body["detail"]["aggregates"] for e in out if e.body.get("detail-type") == "Window Result"]
    assert result == {"count": 6, "sum": 21.0, "min": 3.5, "max": 9, "mean": 5.25,
                      "first": 3.5,  # the earliest event time (10), not the first to arrive
                      "last": 9, "distinct": 4}  # 5, 3.5, "text", 9


def test_first_and_last_break_ties_in_event_time_by_arrival():
    window = stage(size_ms=100)
    out = window.process([ev("k", 10, "a", 0), ev("k", 10, "b", 1), ev("k", 200, "c", 2)], [])
    (result,) = [e.body["detail"]["aggregates"] for e in out if e.body.get("detail-type") == "Window Result"]
    assert (result["first"], result["last"]) == ("a", "b")


values_strategy = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(-5, 5), st.sampled_from(["a", "b"]),
                            st.just({"x": 1}), st.just([1]))


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 50), values_strategy, values_strategy, st.booleans()), max_size=30))
def test_the_compiled_aggregations_fold_exactly_as_each_reducer_does(steps):
    """The generated `add` (the built-ins inlined, a field read once for all its aggregations) and the
    reducers' own `add`, one event at a time, over values of every JSON type, missing or nested."""
    reducers = [*all_aggregations("$.v").values(), Sum("$.d.w"), Min("d.w"), Last("$.d.w"), TopTwo()]
    add = compile_add(reducers)
    compiled = expected = [r.initial() for r in reducers]
    for t, v, w, nested in steps:
        body = {"v": v, "d": {"w": w} if nested else w}
        if type(v) in (int, float):  # TopTwo reads `v` as a number
            before = compiled
            compiled = add(compiled, body, t)
            expected = [r.add(a, body, t) for r, a in zip(reducers, expected)]
            assert before is not compiled  # a new list: the window's old accumulators are left as they were
    assert compiled == expected


class TopTwo:
    """A user's reducer through the Python API: the two largest readings."""

    def initial(self):
        return []

    def add(self, acc, body, time_ms):
        return sorted(acc + [body["v"]], reverse=True)[:2]

    def merge(self, a, b):
        return sorted(a + b, reverse=True)[:2]

    def result(self, acc):
        return acc


def test_a_python_reducer_aggregates_and_one_that_raises_fails_only_its_record():
    window = WindowAggregate(key="$.k", time="$.t", size_ms=100, aggregations={"top": TopTwo(), "n": Count()})
    failures: list = []
    out = window.process([ev("k", 1, 4, 0), ev("k", 2, 9, 1), ev("k", 3, offset=2), ev("k", 4, 7, 3),
                          ev("k", 300, 1, 4)], failures)
    (result,) = [e.body["detail"]["aggregates"] for e in out if e.body.get("detail-type") == "Window Result"]
    assert result == {"top": [9, 7], "n": 3}  # the record without `v` is dead-lettered, the window intact
    assert [(f.record.offset, f.error) for f in failures] == [(2, "ReducerError")]
    assert "KeyError" in failures[0].message


def test_updates_are_emitted_on_each_change_and_results_are_envelopes_with_stable_ids():
    window = stage(size_ms=100, updates=True, source="farm.windows", detail_type="Temp 100ms")
    out = window.process([ev("k", 1, 2, 0, account="123456789012", region="eu-west-1"), ev("k", 5, 4, 1),
                          ev("k", 150, 1, 2)], [])
    results = [e.body for e in out if e.body.get("detail-type") == "Temp 100ms"]
    assert [(r["detail"]["final"], r["detail"]["aggregates"]["count"]) for r in results] == \
        [(False, 1), (False, 2), (False, 1), (True, 2)]
    final = results[-1]
    assert final["source"] == "farm.windows" and final["time"] == "1970-01-01T00:00:00Z"
    assert set(final) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
    again = stage(size_ms=100, source="farm.windows", detail_type="Temp 100ms")
    replay = again.process([ev("k", 1, 2, 0), ev("k", 5, 4, 1), ev("k", 150, 1, 2)], [])
    assert [e.body["id"] for e in replay if e.body.get("detail-type")] == [final["id"]]  # same window, same id


def test_records_without_key_or_time_pass_on_uncounted_and_a_bad_time_is_dead_lettered():
    window = stage(size_ms=100)
    failures: list = []
    no_key = Event(SourceRecord("iot", 0, 0, 0, None, b"{}"), {"t": 5})
    bad_time = ev("k", "yesterday", 1, 1)
    out = window.process([no_key, bad_time, ev("k", 5, 1, 2)], failures)
    assert out[0] is no_key and window.skipped == 1
    assert [(f.record.offset, f.error) for f in failures] == [(1, "bad_timestamp")]


def test_iso_event_times_and_the_kafka_timestamp():
    window = WindowAggregate(key="$.detail.device", time="$.time", size_ms=60_000, aggregations={"n": Count()})
    body = {"time": "2024-05-01T10:00:30Z", "detail": {"device": "d1"}}
    later = {"time": "2024-05-01T10:01:00.000Z", "detail": {"device": "d1"}}
    out = window.process([Event(SourceRecord("t", 0, 0, 0, None, b""), body),
                          Event(SourceRecord("t", 0, 1, 0, None, b""), later)], [])
    (result,) = [e.body["detail"] for e in out if e.body.get("detail-type") == "Window Result"]
    assert (result["start"], result["end"], result["aggregates"]) == \
        ("2024-05-01T10:00:00.000Z", "2024-05-01T10:01:00.000Z", {"n": 1})
    by_kafka_time = WindowAggregate(key="$.k", size_ms=1000, aggregations={"n": Count()})
    records = [Event(SourceRecord("t", 0, i, ts, None, b""), {"k": 1}) for i, ts in enumerate([100, 900, 2500])]
    (result,) = [e.body["detail"] for e in by_kafka_time.process(records, []) if e.body.get("detail-type")]
    assert (result["key"], result["aggregates"]) == ("1", {"n": 2})


def test_partitions_have_their_own_watermarks():
    window = stage(size_ms=10)
    out = window.process([ev("k", 5, 1, 0, partition=0), ev("k", 100, 1, 0, partition=1),
                          ev("k", 6, 1, 1, partition=0)], [])
    assert window.late == 0 and finals(out) == []  # partition 1 being ahead closes nothing on partition 0


def test_the_windows_stage_is_configurable_and_its_results_are_routed_by_rules():
    from streams.config import parse_config
    from streams.runtime.topology import build_pipeline

    config = parse_config({"sources": [{"topic": "iot", "enrich": [{
        "type": "windows", "name": "temp5m", "window": "tumbling", "size": "5m", "allowed_lateness": "1m",
        "key": "$.device", "time": "$.ts", "detail_type": "Temperature 5m",
        "aggregations": {"mean_temperature": {"op": "mean", "field": "$.temp"}, "readings": {"op": "count"}}}]}],
        "rules": [{"name": "windows", "event_pattern": {"detail-type": ["Temperature 5m"]},
                   "targets": [{"id": "l", "type": "log"}]}]}, environ={})
    pipeline = build_pipeline(config)
    readings = [("d1", "2024-05-01T10:01:00Z", 20), ("d1", "2024-05-01T10:04:00Z", 22),
                ("d1", "2024-05-01T10:05:30Z", 30), ("d1", "2024-05-01T10:04:59Z", 24),  # late, within 1 minute
                ("d1", "2024-05-01T10:06:30Z", 31)]  # the watermark passes 10:05 + 1 minute: 10:00-10:05 closes
    records = [SourceRecord("iot", 0, i, 0, None, orjson.dumps({"device": d, "ts": ts, "temp": temp}))
               for i, (d, ts, temp) in enumerate(readings)]
    result = pipeline.run({"iot": records + [SourceRecord("iot", 0, 5, 0, None, orjson.dumps(
        {"device": "d1", "ts": "2024-05-01T10:11:00Z", "temp": 0}))]})
    details = [orjson.loads(d.payload)["detail"] for d in result.deliveries]
    assert [(d["start"], d["aggregates"]) for d in details] == [
        ("2024-05-01T10:00:00.000Z", {"mean_temperature": 22.0, "readings": 3}),
        ("2024-05-01T10:05:00.000Z", {"mean_temperature": 30.5, "readings": 2})]  # closed by the 10:11 reading


def test_events_through_a_windows_stage_are_routed_as_their_records_bytes():
    """The stage passes its input on unchanged, so the router sends each record's own bytes (no
    second serialisation of every body) and the results as the new events they are."""
    from streams.config import parse_config
    from streams.runtime.topology import build_pipeline

    config = parse_config({"sources": [{"topic": "iot", "enrich": [{
        "type": "windows", "window": "tumbling", "size": "1m", "key": "$.device", "time": "$.ts",
        "aggregations": {"readings": {"op": "count"}}}]}],
        "rules": [{"name": "all", "event_pattern": {"device": [{"exists": True}]}, "targets": [{"id": "l", "type": "log"}]},
                  {"name": "windows", "event_pattern": {"detail-type": ["Window Result"]},
                   "targets": [{"id": "l", "type": "log"}]}]}, environ={})
    values = [b'{"device": "d1",  "ts": 1000, "note": "kept as sent"}', b'{"ts": 61000, "device": "d1"} ']
    result = build_pipeline(config).run({"iot": [SourceRecord("iot", 0, i, 0, None, v) for i, v in enumerate(values)]})
    payloads = [d.payload for d in result.deliveries]
    assert [p for p in payloads if b"Window Result" not in p] == values
    assert [orjson.loads(p)["detail"]["aggregates"] for p in payloads if b"Window Result" in p] == [{"readings": 1}]


@pytest.mark.parametrize("entry, message", [
    ({"window": "hopping", "size": "5m"}, r"sources\[0\]\.enrich\[0\].*a hopping window needs `hop`"),
    ({"window": "tumbling", "size": "soon"}, r"sources\[0\]\.enrich\[0\]\.size: .*expected a duration"),
    ({"window": "session", "gap": "1m", "size": "5m"}, r"`size` does not apply to a session window"),
])
def test_a_bad_windows_entry_names_the_key(entry, message):
    from streams.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=message):
        parse_config({"sources": [{"topic": "t", "enrich": [{"type": "windows", "key": "$.k",
                                                             "aggregations": {"n": {"op": "count"}}, **entry}]}]},
                     environ={})


def test_results_are_kept_for_a_replay_only_until_their_input_is_committed():
    window = stage(size_ms=10)
    window.process([ev("k", 1, 1, 0), ev("k", 25, 1, 1), ev("k", 50, 1, 2)], [])  # 25 closes [0, 10), 50 [20, 30)
    kept = lambda: [(offset, w[0]) for offset, w in window.state.table(0)["kk"]["closed"]]  # noqa: E731
    assert kept() == [(1, 0), (2, 20)]
    window.state.changes()
    window.state.committed(0, 2)  # offsets below 2 are committed: the result closed by offset 1 was delivered
    assert kept() == [(2, 20)]
    changes = window.state.changes()
    assert [(k, v["closed"]) for _, k, v in changes if k != "~"] == [("kk", [[2, ANY]])]  # in the changelog too
    assert changes[-1][1] == "~", "a write ends with how far the state goes"
    window.process([ev("k", 51, 1, 3)], [])
    window.state.committed(0, 4)
    assert window.state.table(0)["kk"] == {"open": [[50, 60, ANY]], "closed": []}
    window.process([ev("j", 200, 1, 4)], [])  # closes k's last window
    window.state.committed(0, 5)
    assert "kk" not in window.state.table(0)  # nothing open, nothing to emit again: the key is gone
    assert (0, "kk", None) in window.state.changes()


def derived(event, key, t):
    """An event another stage made from `event`'s record (an alert, another window's result)."""
    return Event(event.record, {"k": key, "t": t, "v": 1})


def test_events_sharing_a_record_each_count_and_a_replay_neither_recounts_nor_repeats_them():
    first, second = ev("a", 1, 1, 0), ev("a", 25, 1, 1)
    batch = [first, derived(first, "b", 2), second, derived(second, "c", 26)]  # offset 1 closes a's and b's [0, 10)
    window = stage(size_ms=10)
    out = window.process(batch, [])
    assert [(r[0], r[1], r[3][0]) for r in finals(out)] == [("a", 0, 1), ("b", 0, 1)]
    changelog = window.state.changes()

    restarted = stage(size_ms=10)  # crashed before offset 1 was committed: offset 1 is read again
    restarted.state.restore(0, [(key, value) for _, key, value in changelog])
    replay = restarted.process(batch[2:], [])
    assert [(r[0], r[1]) for r in finals(replay)] == [("a", 0), ("b", 0)]  # emitted again once, not once per event
    flushed = restarted.process([ev("zz", 100, 1, 2)], [])
    assert [(r[0], r[1], r[3][0]) for r in finals(flushed)] == [("a", 20, 1), ("c", 20, 1)]  # 25 and 26 once each


def test_a_re_run_of_the_same_events_after_a_failed_batch_counts_them_once():
    # chain.run_stage re-runs a stage one event at a time when the batch raised: the events it had
    # applied already come again, as the same objects
    window = stage(size_ms=10)
    batch = [ev("k", 1, 1, 0), ev("k", 2, 1, 1)]
    window.process(batch, [])
    for event in batch:
        window.process([event], [])
    out = window.process([ev("k", 50, 1, 2)], [])
    assert [r[3][0] for r in finals(out)] == [2]


class BrokenResult(TopTwo):
    def result(self, acc):
        raise ValueError("no result")


def test_a_reducer_whose_result_raises_gives_a_null_aggregate_and_the_window_still_closes():
    window = WindowAggregate(key="$.k", time="$.t", size_ms=10, aggregations={"broken": BrokenResult(), "n": Count()})
    out = window.process([ev("k", 1, 1, 0), ev("k", 50, 1, 1)], [])
    (result,) = [e.body["detail"]["aggregates"] for e in out if e.body.get("detail-type") == "Window Result"]
    assert result == {"broken": None, "n": 1} and window.reducer_errors == 1


def test_two_windows_stages_of_a_source_need_their_own_names():
    from streams.config import ConfigError, parse_config
    from streams.runtime.topology import build_pipeline

    entry = {"type": "windows", "window": "tumbling", "size": "1m", "key": "$.k", "aggregations": {"n": {"op": "count"}}}
    with pytest.raises(ConfigError, match=r"sources\[0\]\.enrich\[1\] \(windows\): its state 'windows' would share a "
                                          r"changelog with sources\[0\]\.enrich\[0\]; give each its own `name`"):
        build_pipeline(parse_config({"sources": [{"topic": "t", "enrich": [entry, entry]}]}, environ={}))
    build_pipeline(parse_config({"sources": [{"topic": "t", "enrich": [entry, {**entry, "name": "other"}]}]}, environ={}))


def test_aggregations_changed_between_runs_each_find_their_own_state_again():
    """A restart with the aggregations edited (one added in front, one removed, the rest moved): each
    kept one goes on from its state, the new one counts from the restart, none reads another's."""
    before = WindowAggregate(key="$.k", time="$.t", size_ms=100,
                             aggregations={"mean": Mean("$.v"), "n": Count(), "gone": Distinct("$.v")})
    before.process([ev("k", 1, 2, 0), ev("k", 2, 4, 1)], [])
    changelog = before.state.changes()
    after = WindowAggregate(key="$.k", time="$.t", size_ms=100,
                            aggregations={"total": Sum("$.v"), "n": Count(), "mean": Mean("$.v")})
    after.state.restore(0, [(k, v) for _, k, v in changelog])
    rewritten = dict((k, v) for _, k, v in after.state.changes())
    assert rewritten["kk"]["open"][0][2] == [0, 2, [6, 2]], "realigned, and written back to the changelog"
    out = after.process([ev("k", 3, 6, 2), ev("k", 500, 0, 3)], [])
    (result,) = [e.body["detail"]["aggregates"] for e in out if e.body.get("detail-type") == "Window Result"]
    assert result == {"total": 6, "n": 3, "mean": 4.0}


def test_state_written_before_aggregations_were_recorded_is_read_as_it_is():
    window = stage(size_ms=100)
    window.process([ev("k", 1, 3, 0)], [])
    changelog = [(k, v) for _, k, v in window.state.changes()]
    changelog = [(k, {key: x for key, x in v.items() if key != "aggregations"} if k == "~" else v) for k, v in changelog]
    again = stage(size_ms=100)
    again.state.restore(0, changelog)
    out = again.process([ev("k", 2, 3, 1), ev("k", 500, 0, 2)], [])
    assert [a[0] for *_, a in finals(out)] == [2]


class Fussy(Count):
    """A user's reducer that refuses some events: the record fails, the windows stay as they were."""

    def add(self, acc, body, time_ms):
        if body.get("v") == 13:
            raise ValueError("13 is unlucky")
        return acc + 1


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", 7, None]), st.integers(0, 80), st.integers(0, 2),
                          st.booleans(), st.sampled_from([None, 1, 13, "x"])), min_size=1, max_size=60),
       st.sampled_from([0, 5, 30]), st.booleans(), st.sampled_from(["drop", "emit"]), st.integers(1, 4),
       st.sampled_from(["$.k", "$.nested.k"]))
def test_the_tumbling_loop_gives_what_the_general_loop_gives(rows, lateness, updates, late, cut, key_path):
    """Same input through both loops (keys of any type or absent, times out of order and late, events
    sharing a record, a reducer that raises, batches replayed as after a failure, a restore midway):
    the same events out, failures, counts and state, written to the changelog alike."""
    def run(fast: bool):
        window = WindowAggregate(key=key_path, time="$.t", window="tumbling", size_ms=20, allowed_lateness_ms=lateness,
                                 aggregations={**all_aggregations(), "fussy": Fussy()}, updates=updates, late=late)
        window.tumbling_fast = fast
        batch, offset = [], 0
        for key, t, partition, same_record, v in rows:
            body = {"t": t, "v": v, **({} if key is None else {"k": key, "nested": {"k": key}})}
            if not (same_record and batch):
                offset += 1
            record = batch[-1].record if same_record and batch else SourceRecord("iot", partition, offset, 0, None, b"{}")
            batch.append(Event(record, body))
        batch.sort(key=lambda e: (e.record.partition, e.record.offset))  # a batch comes in runs per partition
        outputs, failures, changelog = [], [], []
        pieces = [batch[i::cut] for i in range(cut)]
        for i, piece in enumerate(pieces):
            piece.sort(key=lambda e: (e.record.partition, e.record.offset))
            outputs.append([e.body for e in window.process(piece, failures)])
            if i == 1:  # the same events again, as after a failed batch, then from the changelog as after a crash
                outputs.append([e.body for e in window.process(piece, failures)])
                snapshot = {p: window.state.snapshot(p) for p in window.state.partitions()}
                changelog.append(orjson.dumps(window.state.changes()))
                for p, entries in orjson.loads(orjson.dumps(snapshot, option=orjson.OPT_NON_STR_KEYS)).items():
                    window.state.restore(int(p), entries)
                outputs.append([e.body for e in window.process(piece, failures)])
            changelog.append(orjson.dumps(window.state.changes()))  # serialised at once, as the runtime does
        state = {p: window.state.snapshot(p) for p in window.state.partitions()}
        return (outputs, [(f.record.offset, f.error, f.message) for f in failures], changelog,
                orjson.dumps(state, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS), window.late, window.skipped)
    assert run(True) == run(False)
