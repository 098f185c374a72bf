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
