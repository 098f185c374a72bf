"""decode -> validate -> normalise for each source kind, on the realistic samples and broken input."""
from __future__ import annotations

import pytest

import schemas
from processors.decode import TOMBSTONE, Decoder
from processors.normalise import CdcNormaliser, ClickstreamNormaliser, IotNormaliser, to_epoch_ms
from processors.normalise.envelope import derived_id, format_time, format_time_ms
from processors.validate import SchemaValidator
from tests.samples import debezium, debezium_record, jsonl, record


def test_decoder_failure_codes_and_tombstone_modes():
    records = [record("t", {"a": 1}, offset=0), record("t", b"\xff\xfe{", offset=1), record("t", b"{nope", offset=2),
               record("t", b"[1,2]", offset=3), record("t", b"null", offset=4), record("t", None, offset=5)]
    failures = []
    events = Decoder().decode(records, failures)
    assert [e.body for e in events] == [{"a": 1}]
    assert [(f.record.offset, f.stage, f.error) for f in failures] == [
        (1, "decode", "not_utf8"), (2, "decode", "invalid_json"), (3, "decode", "not_object"),
        (4, "decode", "not_object"), (5, "decode", "tombstone")]
    assert "an array" in failures[2].message and "null" in failures[3].message

    failures = []
    kept = Decoder(tombstones="keep").decode(records[5:], failures)
    assert failures == [] and kept[0].body == {TOMBSTONE: True}
    skipper = Decoder(tombstones="skip")
    assert skipper.decode(records[5:], failures) == [] and failures == [] and skipper.skipped_tombstones == 1
    with pytest.raises(ValueError, match="expected one of"):
        Decoder(tombstones="drop")


def test_validator_accepts_any_listed_version_and_names_field_and_rule():
    validator = SchemaValidator({"iot.telemetry": ["iot@v1"], "clicks": "clickstream"})
    good = jsonl("iot.jsonl")[0]
    bad = jsonl("iot_invalid.jsonl")[6]["doc"]  # latitude 91
    failures = []
    events = Decoder().decode([record("iot.telemetry", good), record("iot.telemetry", bad, offset=1),
                               record("elsewhere", good, offset=2)], failures)
    out = validator.process(events, failures)
    assert [e.record.offset for e in out] == [0]
    assert [(f.record.offset, f.error) for f in failures] == [(1, "schema_invalid"), (2, "no_schema")]
    assert "iot@v1" in failures[0].message and "location.lat" in failures[0].message
    assert "maximum" in failures[0].message
    with pytest.raises(schemas.SchemaNotFound):
        SchemaValidator({"t": "iot@v7"})


def _run(stage, records, decoder=None):
    failures = []
    events = (decoder or Decoder()).decode(records, failures)
    return stage.process(events, failures), failures


def _assert_envelope(body):
    assert schemas.validator("envelope")(body) is None, schemas.validator("envelope")(body)


def test_iot_envelope_uses_reading_time_and_message_id():
    samples = jsonl("iot.jsonl")
    norm = IotNormaliser(source="acme.greenhouse", detail_type="Reading", account="123456789012", region="eu-west-1")
    events, failures = _run(norm, [record("iot", s, offset=i) for i, s in enumerate(samples)])
    assert failures == []
    first, second, third = (e.body for e in events[:3])
    for e in events:
        _assert_envelope(e.body)
    assert first["id"] == samples[0]["message_id"]
    assert second["id"] == derived_id(events[1].record) and second["id"] != derived_id(events[0].record)
    assert first["time"] == "2024-11-25T10:20:00Z"  # 1732530000000, not the Kafka timestamp
    assert third["time"] == "2024-11-25T10:21:05Z"  # EventBridge time: whole seconds
    assert first["source"] == "acme.greenhouse" and first["detail-type"] == "Reading"
    assert first["resources"] == ["arn:aws:iot:eu-west-1:123456789012:thing/greenhouse-3-sensor-42"]
    assert first["detail"] == samples[0]


def test_ids_are_deterministic_across_replays():
    rec = record("iot", jsonl("iot.jsonl")[1], offset=77, partition=3)
    a, _ = _run(IotNormaliser(), [rec])
    b, _ = _run(IotNormaliser(), [rec])
    assert a[0].body["id"] == b[0].body["id"]


def test_clickstream_envelope_time_from_client_with_offset():
    samples = jsonl("clickstream.jsonl")
    events, failures = _run(ClickstreamNormaliser(detail_type_from_event=True),
                            [record("clicks", s, offset=i) for i, s in enumerate(samples)])
    assert failures == []
    assert [e.body["id"] for e in events] == [s["event_id"] for s in samples]
    assert events[0].body["time"] == "2024-11-25T10:00:00Z"
    assert events[2].body["time"] == "2024-11-25T10:15:30Z"  # +01:00 offset converted to UTC
    assert events[2].body["detail-type"] == "screen_view"
    for e in events:
        _assert_envelope(e.body)


def test_bad_timestamp_is_a_normalise_failure():
    events, failures = _run(IotNormaliser(), [record("iot", {"device_id": "d", "timestamp": "soon", "measurements": {"t": 1}})])
    assert events == [] and failures[0].stage == "normalise" and failures[0].error == "bad_timestamp"
    assert "timestamp" in failures[0].message


def test_time_helpers():
    assert format_time(0) == "1970-01-01T00:00:00Z"
    assert format_time(1732530000123) == "2024-11-25T10:20:00Z"
    assert format_time_ms(1732530000123) == "2024-11-25T10:20:00.123Z"
    assert format_time_ms(1732530060000) == "2024-11-25T10:21:00.000Z"
    assert to_epoch_ms("2024-11-25T10:20:00") == 1732530000000  # naive means UTC
    assert to_epoch_ms("2024-11-25T11:20:00+01:00") == 1732530000000


def _cdc(names, **kw):
    norm = CdcNormaliser(**kw)
    events, failures = _run(norm, [debezium_record(n, offset=i) for i, n in enumerate(names)],
                            Decoder(tombstones="keep"))
    assert failures == []
    return norm, [e.body for e in events]


def test_cdc_postgres_domain_events():
    _, (created, updated, deleted, snap) = _cdc(
        ["postgres_create", "postgres_update", "postgres_delete", "postgres_snapshot_read"])
    assert [b["detail-type"] for b in (created, updated, deleted, snap)] == [
        "customers.created", "customers.updated", "customers.deleted", "customers.snapshot"]
    assert updated["detail"]["changed_fields"] == ["email"]
    assert updated["detail"]["before"]["email"] == "sally.thomas@acme.com"
    assert updated["detail"]["after"]["email"] == "sally@example.com"
    assert updated["detail"]["source_position"]["lsn"] == 24023512 and updated["detail"]["source_position"]["txId"] == 556
    assert updated["detail"]["lag_ms"] == 210
    assert updated["time"] == "2024-11-25T10:21:00Z"  # source.ts_ms: when the row changed
    assert updated["detail"]["key"] == {"id": 1001}
    assert deleted["detail"]["after"] is None and snap["detail"]["snapshot"] is True
    assert created["detail"]["snapshot"] is False
    for b in (created, updated, deleted, snap):
        _assert_envelope(b)


def test_cdc_mysql_wrapped_truncate_message_and_legacy_snapshot():
    _, (wrapped, update, legacy, trunc, msg) = _cdc(
        ["mysql_create_wrapped", "mysql_update", "mysql_snapshot_legacy_boolean", "postgres_truncate", "postgres_message"])
    assert wrapped["detail-type"] == "orders.created" and wrapped["detail"]["key"] == {"order_number": 10001}
    assert wrapped["detail"]["source_position"] == {"file": "mysql-bin.000003", "pos": 484, "row": 0}
    assert update["detail"]["changed_fields"] == ["quantity"]
    assert update["detail"]["source_position"]["gtid"].endswith(":23")
    assert legacy["detail-type"] == "orders.snapshot" and legacy["detail"]["snapshot"] is True
    assert legacy["detail"]["lag_ms"] is None  # source.ts_ms 0 in old snapshots: no honest lag
    assert trunc["detail-type"] == "customers.truncated"
    assert msg["detail-type"] == "audit.message" and msg["detail"]["message"]["prefix"] == "audit"


def test_cdc_flattened_records_and_tombstones():
    norm, bodies = _cdc(["flat_postgres_update", "flat_postgres_delete_rewrite", "flat_mysql_create", "tombstone_flat"])
    update, delete, create = bodies
    assert norm.skipped_tombstones == 1
    assert update["detail-type"] == "customers.updated" and "__op" not in update["detail"]["after"]
    assert update["detail"]["source_position"] == {"lsn": 24025000}
    assert delete["detail-type"] == "customers.deleted" and delete["detail"]["before"]["id"] == 1003
    assert create["detail-type"] == "orders.created" and create["detail"]["source_position"]["file"] == "mysql-bin.000004"

    _, bodies = _cdc(["tombstone_flat"], tombstones="delete")
    assert bodies[0]["detail-type"] == "customers.deleted" and bodies[0]["detail"]["key"] == {"id": 1003}
    assert bodies[0]["detail"]["tombstone"] is True


def test_cdc_samples_pass_validation_then_normalise():
    topics = {s["topic"] for s in debezium().values()}
    validator = SchemaValidator({t: ["debezium-flat@v1"] if t.startswith("flat") else ["debezium@v1"] for t in topics})
    names = list(debezium())
    failures = []
    events = Decoder(tombstones="keep").decode([debezium_record(n, i) for i, n in enumerate(names)], failures)
    events = validator.process(events, failures)
    events = CdcNormaliser().process(events, failures)
    assert failures == []
    assert len(events) == len(names) - 2  # two tombstones skipped
