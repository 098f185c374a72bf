"""eventweir_window_records_total: late and skipped records of each windows stage, exported once each."""
import orjson

from processors.core import SourceRecord
from streams import metrics
from streams.config import parse_config
from streams.runtime.dispatch import WindowRecords
from streams.runtime.topology import build_pipeline


def test_late_and_skipped_records_are_counted_per_windows_stage():
    config = parse_config({"sources": [{"topic": "t", "enrich": [{
        "type": "windows", "name": "metrics-test", "window": "tumbling", "size": "1s", "key": "$.k", "time": "$.ts",
        "aggregations": {"n": {"op": "count"}}}]}]}, environ={})
    pipeline = build_pipeline(config)
    late = metrics.WINDOW_RECORDS.labels("metrics-test", "late")
    skipped = metrics.WINDOW_RECORDS.labels("metrics-test", "skipped")
    before = late._value.get(), skipped._value.get()
    bodies = [{"k": "a", "ts": 5_000}, {"k": "a", "ts": 1_000}, {"ts": 6_000}, {"k": "a", "ts": 900}]
    pipeline.run({"t": [SourceRecord("t", 0, i, 0, None, orjson.dumps(b)) for i, b in enumerate(bodies)]})
    exporter = WindowRecords()
    exporter.export(pipeline)
    exporter.export(pipeline)  # a second tick adds only what is new
    assert (late._value.get() - before[0], skipped._value.get() - before[1]) == (2, 1)
