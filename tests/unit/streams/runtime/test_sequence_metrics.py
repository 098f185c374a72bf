"""eventweir_sequence_records_total: each sequence stage's outcomes, exported once each."""
import orjson

from processors.core import SourceRecord
from streams import metrics
from streams.config import parse_config
from streams.runtime.sequence_metrics import SequenceRecords
from streams.runtime.topology import build_pipeline


def test_outcomes_are_counted_per_sequence_stage():
    config = parse_config({"sources": [{"topic": "t", "enrich": [{
        "type": "sequence", "name": "metrics-test", "key": "$.k", "sequence": "$.n"}]}]}, environ={})
    pipeline = build_pipeline(config)
    outcomes = ("in_order", "gap", "duplicate", "out_of_order", "skipped")
    counters = [metrics.SEQUENCE_RECORDS.labels("metrics-test", o) for o in outcomes]
    before = [c._value.get() for c in counters]
    bodies = [{"k": "a", "n": 1}, {"k": "a", "n": 4}, {"k": "a", "n": 2}, {"k": "a", "n": 2}, {"k": "a"}]
    pipeline.run({"t": [SourceRecord("t", 0, i, 0, None, orjson.dumps(b)) for i, b in enumerate(bodies)]})
    exporter = SequenceRecords()
    exporter.export(pipeline)
    exporter.export(pipeline)  # a second tick adds only what is new
    assert [c._value.get() - b for c, b in zip(counters, before)] == [1, 1, 1, 1, 1]
