"""A poison record never changes its batch-mates (issue 21 item 1): every good CDC, IoT and
clickstream record comes out exactly as it does in a batch without the poison, wherever the poison
sits in the batch, and the poison is dead-lettered with a reason."""
from __future__ import annotations

import orjson
import pytest

from processors.core import SourceRecord
from streams.config import parse_config
from streams.runtime.topology import build_pipeline
from tests.samples import debezium

CDC, IOT, CLICKS = "dbserver1.inventory.orders", "iot.telemetry", "clickstream.web"
POISON = {
    CDC: {"op": "u", "source": 5, "before": None, "after": {"id": 1}, "ts_ms": 1},  # source is not an object
    IOT: {"device_id": "d-1", "timestamp": "yesterday", "measurements": {}},
    CLICKS: {"event_name": "page_view", "timestamp": [], "user_id": "u"},
}


def good_records(topic: str) -> list[bytes]:
    if topic == CDC:
        samples = [s for s in debezium().values() if isinstance(s.get("value"), dict) and "op" in s["value"]]
        return [orjson.dumps(s["value"]) for s in samples][:6]
    path = {IOT: "tests/data/iot.jsonl", CLICKS: "tests/data/clickstream.jsonl"}[topic]
    return open(path, "rb").read().splitlines()[:6]


def outputs(pipeline, topic: str, values: list[bytes]):
    records = [SourceRecord(topic, 0, i, 1732530000000 + i, b'{"id": 1}', v) for i, v in enumerate(values)]
    result = pipeline.run({topic: records})
    delivered = {d.record.offset: orjson.loads(d.payload) for d in result.deliveries}
    for body in delivered.values():
        body.pop("id", None)  # envelope ids derive from the offset, which the poison shifts
    return delivered, {f.record.offset: (f.error, f.message) for f in result.failures}


@pytest.mark.parametrize("topic", [CDC, IOT, CLICKS])
def test_a_poison_record_anywhere_leaves_the_good_ones_as_they_are(topic):
    kind = {CDC: "cdc", IOT: "iot", CLICKS: "clickstream"}[topic]
    config = parse_config({"sources": [{"topic": topic, "kind": kind}],
                           "rules": [{"name": "all", "targets": [{"id": "k", "type": "kafka", "topic": "o"},
                                                                  {"id": "keyed", "type": "kafka", "topic": "p",
                                                                   "key": "$.detail"}]}]}, environ={})
    good = good_records(topic)
    clean, none_failed = outputs(build_pipeline(config), topic, good)
    assert len(clean) == len(good) and not none_failed
    for position in range(len(good) + 1):
        values = good[:position] + [orjson.dumps(POISON[topic])] + good[position:]
        out, failed = outputs(build_pipeline(config), topic, values)
        assert list(failed) == [position], f"the poison at {position} is dead-lettered, alone"
        for i, expected in clean.items():
            assert out[i if i < position else i + 1] == expected, f"record {i} changed by a poison at {position}"


def test_a_malformed_change_says_what_is_wrong_and_a_schema_change_is_routed():
    # issue 21 item 21: these used to be dead-lettered as `AttributeError` / `KeyError: 'op'`
    from processors.core import Event
    from processors.normalise import CdcNormaliser

    def run(body):
        failures = []
        out = CdcNormaliser().process([Event(SourceRecord(CDC, 0, 0, 1732530000000, None, b"{}"), body)], failures)
        return out, [(f.error, f.message) for f in failures]

    assert run(POISON[CDC])[1] == [("malformed_change", "`source` is int; a Debezium change's source is an object")]
    assert run({"op": "x", "source": {}})[1] == [
        ("malformed_change", "`op` is 'x'; a Debezium change has one of c, u, d, r, t or m")]
    assert run({"op": "c", "source": {}, "after": None})[1][0][1].startswith("op 'c' with no `after`")
    # the hostile-probe rerun: without `source` it was taken for a flattened row, and routed as
    # <topic>.updated with the whole change inside detail.after
    (why,) = run({"before": None, "after": {"id": 1}, "op": "c", "ts_ms": 2})[1]
    assert why[0] == "malformed_change" and "without `source`" in why[1]
    (row,), _ = run({"id": 1, "op": "c", "after": "tomorrow"})  # a flattened row with an `op` column
    assert row.body["detail"]["after"]["op"] == "c"
    ddl = {"source": {"connector": "mysql", "file": "binlog.000003", "pos": 154}, "databaseName": "inventory",
           "ddl": "ALTER TABLE customers ADD COLUMN tier VARCHAR(16)", "ts_ms": 1732530000123,
           "tableChanges": [{"type": "ALTER", "id": '"inventory"."customers"'}]}
    (event,), failures = run(ddl)
    assert not failures and event.body["detail-type"] == "inventory.schema_changed"
    assert event.body["detail"]["ddl"].startswith("ALTER TABLE")
    assert event.body["detail"]["tables"] == ['"inventory"."customers"']
