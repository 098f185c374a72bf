import orjson
import pytest

from processors.core import Event, SourceRecord
from processors.enrich.window import TumblingCount


def ev(key, ts, partition=0):
    return Event(SourceRecord("t", partition, 0, ts, key, b"{}"), {})


def test_counts_per_key_reset_when_the_window_changes():
    stage = TumblingCount(60_000)
    events = [ev(b"a", 1_000), ev(b"a", 59_999), ev(b"b", 2_000), ev(b"a", 60_000), ev(b"a", 61_000)]
    out = stage.process(events, [])
    assert [e.body["window_count"] for e in out] == [1, 2, 1, 1, 2]
    # state survives batches and is exported per partition for a changelog
    assert stage.process([ev(b"a", 62_000)], [])[0].body["window_count"] == 3
    assert dict((k, v) for _, k, v in stage.state.changes()) == {"a": [60_000, 3], "b": [0, 1]}


def test_keys_on_different_partitions_are_counted_apart_and_bad_size_is_rejected():
    stage = TumblingCount(1000, into="n")
    out = stage.process([ev(b"k", 10, 0), ev(b"k", 20, 1), ev(b"k", 30, 0)], [])
    assert [e.body["n"] for e in out] == [1, 1, 2]
    with pytest.raises(ValueError, match="positive number of milliseconds"):
        TumblingCount(0)


def test_the_window_stage_is_configurable_and_counts_per_key_per_window():
    from streams.config import parse_config
    from streams.runtime.topology import build_pipeline

    config = parse_config({"sources": [{"topic": "t", "enrich": [{"type": "window", "size_ms": 1000,
                                                                  "into": "per_second"}]}],
                           "rules": [{"name": "all", "targets": [{"id": "l", "type": "log"}]}]}, environ={})
    pipeline = build_pipeline(config)
    records = [SourceRecord("t", 0, i, ts, key, b'{"n": %d}' % i)
               for i, (ts, key) in enumerate([(1000, b"a"), (1500, b"a"), (1700, b"b"), (2100, b"a")])]
    result = pipeline.run({"t": records})
    assert [orjson.loads(d.payload)["per_second"] for d in result.deliveries] == [1, 2, 1, 1]


def test_a_window_stage_with_a_bad_size_names_the_key():
    from streams.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"sources\[0\]\.enrich\[0\]\.size_ms: Input should be a valid integer"):
        parse_config({"sources": [{"topic": "t", "enrich": [{"type": "window", "size_ms": "soon"}]}]}, environ={})


@pytest.mark.parametrize("lateness, expected", [(0, [1, 2, 3, None, 4]), (60_000, [1, 2, 3, 1, 4])])
def test_a_late_record_never_resets_the_open_window(lateness, expected):
    # issue 21 item 5: 60 s, 61 s, 62 s, 59 s (late), 63 s used to give [1, 2, 3, 1, 1]
    stage = TumblingCount(60_000, allowed_lateness_ms=lateness)
    out = stage.process([ev(b"k", s * 1000) for s in (60, 61, 62, 59, 63)], [])
    assert [e.body["window_count"] for e in out] == expected
    assert stage.late == (1 if lateness == 0 else 0)


def test_late_windows_are_kept_while_reachable_and_restored_from_their_state():
    stage = TumblingCount(1000, allowed_lateness_ms=1500)
    stamps = (100, 1100, 2100, 1200, 900, 4500, 1300)
    counts = [stage.process([ev(b"k", ts)], [])[0].body["window_count"] for ts in stamps]
    # a window takes late records until the newest window starts past its end + 1.5 s: 1200 and 900
    # count in window 1000; once window 4000 opens, 1300 is too late for it
    assert counts == [1, 1, 1, 2, 2, 1, None]
    restored = TumblingCount(1000, allowed_lateness_ms=1500)
    for partition, key, value in stage.state.changes():
        restored.state.put(partition, key, value)
    assert restored.process([ev(b"k", 2200)], [])[0].body["window_count"] == 2  # window 2000, still open
