"""Enrichment stages on normalised envelopes built from the sample data."""
from __future__ import annotations

import copy

import pytest

from processors.decode import Decoder
from processors.enrich import (
    CdcDeduplicator,
    CidrTable,
    DerivedFields,
    DeviceOrderCheck,
    IpEnricher,
    PartitionedState,
    ReferenceJoin,
    ReferenceTable,
    Scd2History,
    Sessioniser,
    ThresholdAlerts,
    UnitNormaliser,
    UserAgentEnricher,
    change_hash,
    heat_index_c,
)
from processors.enrich.cdc import VALID_TO_OPEN
from processors.normalise import CdcNormaliser, ClickstreamNormaliser, IotNormaliser
from tests.samples import debezium_record, jsonl, record


def _normalised(normaliser, records, tombstones="fail"):
    failures = []
    events = normaliser.process(Decoder(tombstones=tombstones).decode(records, failures), failures)
    assert failures == []
    return events


def iot_events(docs, partition=0):
    return _normalised(IotNormaliser(), [record("iot", d, offset=i, partition=partition) for i, d in enumerate(docs)])


def click(user, ts, offset, anonymous="anon-1", partition=0, **extra):
    doc = {"event_id": f"e{offset}", "event_name": "page_view", "anonymous_id": anonymous, "user_id": user,
           "platform": "web", "timestamp": ts, **extra}
    return _normalised(ClickstreamNormaliser(), [record("clicks", doc, offset=offset, partition=partition)])[0]


# --- reference tables -------------------------------------------------------------------------

def test_reference_join_copies_fields_and_honours_on_missing():
    table = ReferenceTable("device", {"sensor-0042": {"site": "greenhouse-3", "owner": "ops", "secret": "x"}})
    events = iot_events(jsonl("iot.jsonl")[:3])  # sensor-0042 twice, then pump-17 (not in the table)
    failures = []
    out = ReferenceJoin(table, "detail.device_id", fields={"site": "site", "owner": "team"}).process(
        copy.deepcopy(events), failures)
    assert [e.body["detail"].get("device") for e in out] == [{"site": "greenhouse-3", "team": "ops"}] * 2 + [None]

    out = ReferenceJoin(table, "detail.device_id", ["site"], into="detail.registry", on_missing="default",
                        default={"site": "unknown"}).process(copy.deepcopy(events), failures)
    assert [e.body["detail"]["registry"]["site"] for e in out] == ["greenhouse-3", "greenhouse-3", "unknown"]

    join = ReferenceJoin(table, "detail.device_id", ["site"], on_missing="dead-letter")
    out = join.process(copy.deepcopy(events), failures)
    assert len(out) == 2 and [f.error for f in failures] == ["reference_missing"]
    assert "pump-17" in failures[0].message and (join.hits, join.misses) == (2, 1)

    table.apply("sensor-0042", None)  # tombstone: the device left the registry
    table.apply("pump-17", {"site": "well-field"})
    failures = []
    out = join.process(copy.deepcopy(events), failures)
    assert [e.body["detail"]["device"]["site"] for e in out] == ["well-field"] and len(failures) == 2
    with pytest.raises(ValueError, match="expected one of"):
        ReferenceJoin(table, "detail.device_id", on_missing="ignore")


# --- clickstream ------------------------------------------------------------------------------

def test_sessions_split_on_thirty_minute_gap_with_sequence_and_boundaries():
    s = Sessioniser(source="acme.web")
    events = [click("u1", "2024-11-25T10:00:00Z", 0), click("u1", "2024-11-25T10:10:00Z", 1),
              click("u1", "2024-11-25T10:39:59Z", 2), click("u1", "2024-11-25T11:10:00Z", 3)]
    out = s.process(events, [])
    kinds = [e.body["detail-type"] for e in out]
    assert kinds == ["Session Started", "Clickstream Event", "Clickstream Event", "Clickstream Event",
                     "Session Ended", "Session Started", "Clickstream Event"]
    first, second = out[0].body["detail"]["session_id"], out[5].body["detail"]["session_id"]
    assert first != second
    assert [e.body["detail"]["session"] for e in out if e.body["detail-type"] == "Clickstream Event"] == [
        {"id": first, "sequence": 1}, {"id": first, "sequence": 2}, {"id": first, "sequence": 3},
        {"id": second, "sequence": 1}]
    ended = out[4].body
    assert ended["detail"]["events"] == 3 and ended["detail"]["duration_ms"] == 39 * 60_000 + 59_000
    assert ended["time"] == "2024-11-25T10:39:59Z" and ended["source"] == "acme.web"
    # the same input replayed gives the same session ids
    again = Sessioniser().process([click("u1", "2024-11-25T10:00:00Z", 0)], [])
    assert again[0].body["detail"]["session_id"] == first


def test_sessions_are_per_user_and_idle_sessions_end_by_event_time():
    s = Sessioniser(gap_ms=60_000)
    out = s.process([click(None, "2024-11-25T10:00:00Z", 0, anonymous="anon-a"),
                     click("u2", "2024-11-25T10:00:30Z", 1)], [])
    assert sum(e.body["detail-type"] == "Session Started" for e in out) == 2
    out = s.process([click("u2", "2024-11-25T10:01:20Z", 2)], [])  # anon-a idle > 60 s by event time
    ended = [e.body["detail"] for e in out if e.body["detail-type"] == "Session Ended"]
    assert [d["user"] for d in ended] == ["anon-a"]
    clicks = [e.body["detail"] for e in out if e.body["detail-type"] == "Clickstream Event"]
    assert [c["session"]["sequence"] for c in clicks] == [2]


def test_session_state_snapshot_restore_continues_sessions():
    first = Sessioniser()
    out = first.process([click("u1", "2024-11-25T10:00:00Z", 0, partition=3)], [])
    sid = out[-1].body["detail"]["session"]["id"]
    changes = first.state.changes()
    assert [(p, k) for p, k, _ in changes] == [(3, "u1")] and first.state.changes() == []
    second = Sessioniser()
    second.state.restore(3, {k: v for _, k, v in changes})
    out = second.process([click("u1", "2024-11-25T10:20:00Z", 1, partition=3)], [])
    assert [e.body["detail-type"] for e in out] == ["Clickstream Event"]
    assert out[0].body["detail"]["session"] == {"id": sid, "sequence": 2}


def test_user_agent_and_ip_enrichment():
    events = _normalised(ClickstreamNormaliser(), [record("c", d, offset=i) for i, d in enumerate(jsonl("clickstream.jsonl"))])
    out = UserAgentEnricher().process(events, [])
    ua = [e.body["detail"]["ua"] for e in out]
    assert (ua[0]["browser"], ua[0]["os"], ua[0]["os_version"], ua[0]["device"]) == ("Chrome", "Windows", "10", "desktop")
    assert (ua[2]["browser"], ua[2]["os"], ua[2]["device"]) == ("Safari", "iOS", "mobile")
    assert [u["is_bot"] for u in ua] == [False, False, False, True]
    failures = []
    assert len(UserAgentEnricher(drop_bots=True).process(list(out), failures)) == 3 and failures[0].error == "bot"

    table = CidrTable([("203.0.113.0/24", {"region": "eu-west", "country": "NL"}), ("203.0.0.0/16", "eu"),
                       ("2001:db8::/32", "lab")])
    out = IpEnricher(table, truncate=True).process(out, [])
    assert [e.body["detail"]["geo"] for e in out] == [{"region": "eu-west", "country": "NL"}] * 2 + [{"region": "lab"}, None]
    assert [e.body["detail"]["ip"] for e in out] == ["203.0.113.0", "203.0.113.0", "2001:db8:85a3::", "66.249.66.0"]
    with pytest.raises(ValueError, match="expected a network"):
        CidrTable([("10.0.0.0/33", "x")])


# --- IoT --------------------------------------------------------------------------------------

def test_unit_normalisation_and_derived_fields():
    events = iot_events(jsonl("iot.jsonl"))
    out = DerivedFields().process(UnitNormaliser().process(events, []), [])
    first, _, pump, tracker = (e.body["detail"] for e in out)
    assert first["measurements"]["temperature"] == pytest.approx(31.3889, abs=1e-3)  # 88.5 F
    assert first["measurements"]["pressure"] == pytest.approx(1013.2) and first["units"]["pressure"] == "hPa"
    assert pump["measurements"]["motor_temp"] == pytest.approx(65.0) and pump["units"]["motor_temp"] == "C"
    assert tracker["measurements"]["speed"] == pytest.approx(15.0)  # 54 km/h
    assert first["derived"]["heat_index"] == heat_index_c(first["measurements"]["temperature"], 62.0)
    assert "derived" not in pump
    with_dew = DerivedFields(dew_point=True).process(iot_events([{"device_id": "d", "timestamp": 1,
                                                                  "measurements": {"temperature": 20.0, "humidity": 50.0}}]), [])
    assert with_dew[0].body["detail"]["derived"]["dew_point"] == pytest.approx(9.3, abs=0.1)
    failures = []
    bad = iot_events([{"device_id": "d", "timestamp": 1, "measurements": {"t": {"value": 1, "unit": "furlong"}}}])
    assert UnitNormaliser().process(bad, failures) == [] and failures[0].error == "unknown_unit"
    assert "measurements.t.unit" in failures[0].message


def test_heat_index_matches_noaa_table():
    # NOAA heat index chart: 90 F at 70 % -> 106 F; 80 F at 40 % -> 80 F (below the regression range)
    assert heat_index_c((90 - 32) * 5 / 9, 70) == pytest.approx((106 - 32) * 5 / 9, abs=0.6)
    assert heat_index_c((80 - 32) * 5 / 9, 40) == pytest.approx((80 - 32) * 5 / 9, abs=0.6)


def test_duplicates_and_out_of_order_per_device():
    docs = [{"device_id": dev, "timestamp": ts, "measurements": {"t": 1}}
            for dev, ts in [("a", 1000), ("a", 2000), ("b", 1500), ("a", 2000), ("a", 1500), ("b", 1500)]]
    check = DeviceOrderCheck()
    failures = []
    out = check.process(iot_events(docs), failures)
    assert [(e.body["detail"]["device_id"], e.body["detail"]["timestamp"]) for e in out] == [
        ("a", 1000), ("a", 2000), ("b", 1500), ("a", 1500)]
    assert out[3].body["detail"]["quality"] == {"out_of_order": True}
    assert [(f.record.offset, f.error) for f in failures] == [(3, "duplicate"), (5, "duplicate")]
    # state survives a restore: the same reading after a restart is still a duplicate
    restored = DeviceOrderCheck(on_duplicate="drop")
    restored.state.restore(0, check.state.snapshot(0))
    assert restored.process(iot_events(docs[:1]), []) == [] and restored.duplicates == 1


def test_threshold_alerts_are_new_events():
    events = UnitNormaliser().process(iot_events(jsonl("iot.jsonl")[:2]), [])
    alerts = ThresholdAlerts([{"name": "hot", "measurement": "temperature", "op": ">", "value": 31.3, "severity": "high"}])
    out = alerts.process(events, [])
    kinds = [e.body["detail-type"] for e in out]
    assert kinds == ["IoT Telemetry", "IoT Threshold Alert", "IoT Telemetry"]  # 31.39 C alerts, 31.2 C does not
    alert = out[1].body
    assert alert["detail"]["device_id"] == "sensor-0042" and alert["detail"]["unit"] == "C"
    assert alert["time"] == out[0].body["time"] and alert["detail"]["reading_id"] == out[0].body["id"]
    with pytest.raises(ValueError, match="expected measurement"):
        ThresholdAlerts([{"measurement": "t", "op": "~", "value": 1}])


# --- CDC --------------------------------------------------------------------------------------

def cdc_events(names, offset=0):
    return _normalised(CdcNormaliser(tombstones="delete"),
                       [debezium_record(n, offset + i) for i, n in enumerate(names)], tombstones="keep")


def test_cdc_dedupe_latest_position_wins():
    dedupe = CdcDeduplicator()
    seq = ["postgres_create", "postgres_update"]
    assert len(dedupe.process(cdc_events(seq), [])) == 2
    # a replay of the same changes (connector restart) goes nowhere; an older one neither
    assert dedupe.process(cdc_events(seq, offset=10), []) == [] and dedupe.stale == 2
    assert len(dedupe.process(cdc_events(["postgres_delete"]), [])) == 1

    compacting = CdcDeduplicator(compact=True)
    out = compacting.process(cdc_events(["postgres_create", "postgres_update", "mysql_update"]), [])
    assert [e.body["detail-type"] for e in out] == ["customers.updated", "orders.updated"]
    assert compacting.superseded == 1


def test_scd2_history_versions():
    scd = Scd2History(tracked=["first_name", "last_name", "email"])
    out = scd.process(cdc_events(["postgres_create", "postgres_update", "postgres_delete"]), [])
    history = [e.body["detail"] for e in out if e.body["detail-type"] == "customers.history"]
    v1_open, v1_closed, v2_open, v2_closed = history
    assert v1_open["valid_to"] == VALID_TO_OPEN and v1_open["is_current"]
    assert v1_closed["valid_from"] == v1_open["valid_from"] == "2024-11-25T10:20:00.123Z"
    assert v1_closed["valid_to"] == v2_open["valid_from"] == "2024-11-25T10:21:00.000Z" and not v1_closed["is_current"]
    assert v2_open["row"]["email"] == "sally@example.com" and v2_closed["valid_to"] == "2024-11-25T10:22:00.000Z"
    assert v1_open["change_hash"] != v2_open["change_hash"]
    # an update that does not touch tracked fields makes no new version
    scd2 = Scd2History(tracked=["last_name"])
    out = scd2.process(cdc_events(["postgres_create", "postgres_update"]), [])
    assert sum(e.body["detail-type"] == "customers.history" for e in out) == 1


def test_change_hash_separator_and_null_marker():
    assert change_hash({"a": "ab", "b": "c"}, ["a", "b"]) != change_hash({"a": "a", "b": "bc"}, ["a", "b"])
    assert change_hash({"a": None}, ["a"]) != change_hash({"a": "null"}, ["a"])
    assert change_hash({"a": None}, ["a"]) != change_hash({"a": ""}, ["a"])
    # values that contain the separator or the marker cannot forge another row's hash
    from processors.enrich.cdc import NULL_MARKER, SEPARATOR
    assert change_hash({"a": f"a{SEPARATOR}b"}, ["a"]) != change_hash({"a": "a", "b": "b"}, ["a", "b"])
    assert change_hash({"a": NULL_MARKER}, ["a"]) != change_hash({"a": None}, ["a"])
    assert change_hash({"a": "a\\x1fb"}, ["a"]) != change_hash({"a": f"a{SEPARATOR}b"}, ["a"])
    assert change_hash({"a": 1, "b": 2}, ["a", "b"]) == change_hash({"b": 2, "a": 1}, ["a", "b"])


def test_partitioned_state_changes_snapshot_restore_drop():
    st = PartitionedState("t")
    st.put(0, "k", [1])
    st.put(0, "k", [2])
    st.put(1, "j", {"x": 1})
    st.delete(1, "j")
    assert sorted(st.changes()) == [(0, "k", [2]), (1, "j", None)] and st.changes() == []
    st.restore(2, [("a", 1), ("b", 2), ("a", None)])
    assert st.snapshot(2) == {"b": 2} and st.changes() == []
    st.drop(2)
    assert st.snapshot(2) == {} and st.partitions() == [0, 1]
