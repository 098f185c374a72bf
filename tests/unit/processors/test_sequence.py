"""Sequence gaps (processors/enrich/sequence.py): gap events, duplicate and out-of-order counts, replays."""
from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.core import Event, SourceRecord
from processors.enrich.sequence import SequenceGaps


def ev(key, seq, offset, partition=0):
    body = {"detail": {"instrument": key, "seq": seq}}
    return Event(SourceRecord("ticks", partition, offset, 1_700_000_000_000, None, orjson.dumps(body)), body)


def stream(pairs, partition=0):
    return [ev(k, s, i, partition) for i, (k, s) in enumerate(pairs)]


def stage(**kw):
    return SequenceGaps(key="$.detail.instrument", sequence="$.detail.seq", **kw)


def gaps(out):
    return [(e.body["detail"]["key"], e.body["detail"]["expected"], e.body["detail"]["got"], e.body["detail"]["missing"])
            for e in out if e.body.get("detail-type") == "Gap Detected"]


def test_a_jump_emits_a_gap_event_and_late_or_repeated_numbers_are_counted_apart():
    seq = stage()
    evs = stream([("EURUSD", 1), ("EURUSD", 2), ("EURUSD", 6), ("EURUSD", 4), ("EURUSD", 4), ("EURUSD", 6),
                  ("EURUSD", 7)])
    out = seq.process(evs, [])
    assert gaps(out) == [("EURUSD", 3, 6, 3)]
    assert [e for e in out if "detail-type" not in e.body] == evs  # input events pass on unchanged, in order
    assert out.index(evs[2]) + 1 == next(i for i, e in enumerate(out) if e.body.get("detail-type"))  # after its record
    # 4 fills the gap (out of order), then 4 again and 6 again are duplicates
    assert seq.counts == {"in_order": 3, "gap": 1, "duplicate": 2, "out_of_order": 1, "skipped": 0}


def test_gap_events_are_envelopes_with_configurable_source_and_detail_type_and_stable_ids():
    out = stage(source="market.feed", detail_type="Tick Gap").process(stream([("ES", 10), ("ES", 12)]), [])
    (gap,) = [e.body for e in out if e.body.get("detail-type")]
    assert (gap["source"], gap["detail-type"], gap["version"]) == ("market.feed", "Tick Gap", "0")
    assert gap["detail"] == {"stage": "sequence", "key": "ES", "expected": 11, "got": 12, "missing": 1}
    again = stage(source="market.feed", detail_type="Tick Gap").process(stream([("ES", 10), ("ES", 12)]), [])
    assert [e.body["id"] for e in again if e.body.get("detail-type")] == [gap["id"]]


def test_keys_and_partitions_are_tracked_apart():
    seq = stage()
    out = seq.process([ev("a", 1, 0), ev("b", 7, 1), ev("a", 2, 2), ev("b", 8, 3), ev("a", 1, 0, partition=1),
                       ev("a", 5, 1, partition=1)], [])
    assert gaps(out) == [("a", 2, 5, 3)]  # partition 1's "a" starts on its own


def test_records_without_the_fields_pass_uncounted_and_a_bad_number_is_dead_lettered():
    seq = stage()
    failures = []
    nokey = Event(SourceRecord("ticks", 0, 0, 0, None, b"{}"), {"detail": {"seq": 1}})
    out = seq.process([nokey, ev("a", "7", 1), ev("a", 8.0, 2), ev("a", "x7", 3), ev("a", 9, 4)], failures)
    assert [f.error for f in failures] == ["BadSequence"] and failures[0].record.offset == 3
    assert "$.detail.seq is 'x7'" in failures[0].message
    assert out == [nokey, *[e for e in out if e.record.offset in (1, 2, 4)]] and len(out) == 4
    assert seq.counts["skipped"] == 1 and seq.counts["in_order"] == 3  # "7" and 8.0 are numbers


def test_open_gaps_remembered_are_bounded_and_the_oldest_go_first():
    seq = stage(max_missing=2)
    seq.process(stream([("a", 1), ("a", 3), ("a", 5), ("a", 7), ("a", 2), ("a", 6)]), [])
    assert seq.state.table(0)["ka"]["missing"] == [[4, 4]]  # [2, 2] was forgotten when [6, 6] opened; 6 filled
    assert seq.counts["duplicate"] == 1 and seq.counts["out_of_order"] == 1


@settings(max_examples=80, deadline=None)
@given(numbers=st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 30)), min_size=1, max_size=60), data=st.data())
def test_a_crash_after_the_changelog_was_written_emits_each_gap_once_and_counts_each_record_once(numbers, data):
    # The changelog holds the state after record `written`; offsets were committed only up to `committed`:
    # the records in between are read again by the restarted worker.
    evs = stream(numbers)
    clean = stage()
    expected = sorted(e.body["id"] for e in clean.process(evs, []) if e.body.get("detail-type"))
    written = data.draw(st.integers(0, len(evs)))
    committed = data.draw(st.integers(0, written))

    before = stage()
    out_before = before.process(evs[:written], [])
    before.state.committed(0, committed)
    changelog = before.state.changes()
    delivered = [e for e in out_before if e.record.offset < committed]  # outputs of committed input are out

    after = stage()
    after.state.restore(0, [(key, value) for _, key, value in changelog])
    out_after = after.process(evs[committed:], [])
    got = [e.body["id"] for e in delivered + out_after if e.body.get("detail-type")]
    assert sorted(set(got)) == expected  # no gap lost
    assert len(got) == len(set(got))  # none emitted twice
    assert {o: before.counts[o] + after.counts[o] for o in clean.counts} == clean.counts  # none counted twice


def test_gaps_are_kept_for_a_replay_only_until_their_input_is_committed():
    seq = stage()
    seq.process(stream([("a", 1), ("a", 3), ("a", 5)]), [])
    assert [k for k in seq.state.table(0) if k.startswith("g")] == ["g1", "g2"]
    seq.state.changes()
    seq.state.committed(0, 2)
    assert [k for k in seq.state.table(0) if k.startswith("g")] == ["g2"]
    assert (0, "g1", None) in seq.state.changes()  # the deletion reaches the changelog


def test_a_re_run_of_the_same_events_after_a_failed_batch_counts_them_once():
    # chain.run_stage re-runs a stage one event at a time when the batch raised (its outputs were
    # discarded): the events it had applied already come again, as the same objects
    seq = stage()
    batch = stream([("a", 1), ("a", 3)])
    seq.process(batch, [])
    rerun = [out for event in batch for out in seq.process([event], [])]
    assert gaps(rerun) == [("a", 2, 3, 1)]  # emitted again, once, with the same id
    assert seq.counts["gap"] == 1 and seq.counts["in_order"] == 1


def test_the_sequence_stage_is_configurable_and_its_gaps_are_routed_by_rules():
    from streams.config import parse_config
    from streams.runtime.topology import build_pipeline

    config = parse_config({"sources": [{"topic": "ticks", "enrich": [{
        "type": "sequence", "name": "ticks", "key": "$.symbol", "sequence": "$.seq", "detail_type": "Tick Gap"}]}],
        "rules": [{"name": "gaps", "event_pattern": {"detail-type": ["Tick Gap"]},
                   "targets": [{"id": "l", "type": "log"}]}]}, environ={})
    pipeline = build_pipeline(config)
    ticks = [("ES", 1), ("ES", 2), ("NQ", 40), ("ES", 5), ("NQ", 41)]
    records = [SourceRecord("ticks", 0, i, 0, None, orjson.dumps({"symbol": s, "seq": n}))
               for i, (s, n) in enumerate(ticks)]
    result = pipeline.run({"ticks": records})
    assert [orjson.loads(d.payload)["detail"] for d in result.deliveries] == [
        {"stage": "ticks", "key": "ES", "expected": 3, "got": 5, "missing": 2}]


@pytest.mark.parametrize("entry, message", [
    ({"key": "$.symbol"}, r"sources\[0\]\.enrich\[0\]\.sequence: .*required"),
    ({"key": "$.symbol", "sequence": "$.seq", "max_missing": -1}, r"sources\[0\]\.enrich\[0\]\.max_missing"),
    ({"key": "$.symbol", "sequence": "$.seq", "gap": 3}, r"sources\[0\]\.enrich\[0\]\.gap: .*unknown key"),
])
def test_a_bad_sequence_entry_names_the_key(entry, message):
    from streams.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=message):
        parse_config({"sources": [{"topic": "t", "enrich": [{"type": "sequence", **entry}]}]}, environ={})


def test_input_events_leave_as_their_records_bytes_and_gap_events_as_new_ones():
    """The stage adds events and changes none: an input event is routed as its record's own bytes
    (spacing and all, no re-serialisation), while a gap event is serialised from its body."""
    from processors.pipeline import Pipeline
    from processors.routing.router import Route, Router, RouteTarget

    values = [b'{"detail": {"instrument": "S0",  "seq": 1}}', b'{"detail": {"instrument": "S0",  "seq": 4}}']
    router = Router([Route("all", (RouteTarget("all/out"),), {"zz": [{"exists": False}]})])  # every event
    pipeline = Pipeline({"ticks": [stage()]}, router)
    assert pipeline.chains["ticks"].splice
    records = [SourceRecord("ticks", 0, i, 1_700_000_000_000, None, v) for i, v in enumerate(values)]
    result = pipeline.run({"ticks": records})
    payloads = [bytes(d.payload) for d in result.deliveries]
    assert payloads[:1] == values[:1] and values[1] in payloads
    gap = [orjson.loads(p) for p in payloads if p not in values]
    assert [(g["detail"]["expected"], g["detail"]["got"]) for g in gap] == [(2, 4)]
