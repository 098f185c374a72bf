"""Writes the Grafana dashboards in deploy/grafana/dashboards/ from the panel lists below.

Edit the lists here, then run `python deploy/grafana/generate.py`; the test suite fails while the
committed JSON differs from what this script writes, and while a panel's metric is not exported by
the worker (tests/integration/test_observability.py). Selectors use the dashboard variables
$namespace and $instance (and $room on the waiting-room dashboard).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
W = 'namespace=~"$namespace", instance=~"$instance"'
WR = W + ', room=~"$room"'


def ts(title, exprs, unit="short", description="", legend=None):
    """A time-series panel; exprs is a list of (expr, legend) pairs."""
    return {"type": "timeseries", "title": title, "description": description, "unit": unit,
            "targets": [{"expr": e, "legendFormat": lf} for e, lf in exprs]}


def stat(title, expr, unit="short", description=""):
    return {"type": "stat", "title": title, "description": description, "unit": unit,
            "targets": [{"expr": expr, "legendFormat": ""}]}


def q(quantile, metric, by, sel):
    by_le = ", ".join([*by, "le"])
    return f"histogram_quantile({quantile}, sum by ({by_le}) (rate({metric}_bucket{{{sel}}}[$__rate_interval])))"


WORKER = {
    "uid": "eventweir-worker",
    "title": "eventweir / worker",
    "description": "Throughput, lag, latency, routing, deliveries and failures of the eventweir workers.",
    "rows": [
        ("Overview", [
            stat("Consumed / s", f"sum(rate(eventweir_records_consumed_total{{{W}}}[$__rate_interval]))", "ops"),
            stat("Produced / s", f"sum(rate(eventweir_records_produced_total{{{W}}}[$__rate_interval]))", "ops"),
            stat("Total lag (records)", 'sum(eventweir:consumer_lag:sum{namespace=~"$namespace"})', "short",
                 "Sum over partitions of high watermark minus next offset (recording rule)."),
            stat("Ready workers", f"sum(eventweir_ready{{{W}}})", "short",
                 "Workers whose /readyz is 200. More workers than partitions do nothing."),
            stat("Dead letters (5m)", f"sum(increase(eventweir_dead_letters_total{{{W}}}[5m]))", "short"),
        ]),
        ("Throughput", [
            ts("Records in per topic", [(f"sum by (topic) (rate(eventweir_records_consumed_total{{{W}}}[$__rate_interval]))", "{{topic}}")], "ops"),
            ts("Records out per topic", [(f"sum by (topic) (rate(eventweir_records_produced_total{{{W}}}[$__rate_interval]))", "{{topic}}")], "ops",
               "Records acknowledged by output Kafka topics."),
            ts("Rule matches per rule", [(f"sum by (rule) (rate(eventweir_rule_matches_total{{{W}}}[$__rate_interval]))", "{{rule}}")], "ops"),
            ts("Unmatched events per bus", [(f"sum by (bus) (rate(eventweir_unmatched_events_total{{{W}}}[$__rate_interval]))", "{{bus}}")], "ops",
               "Events no rule matched, sent to their bus's unmatched_topic (buses with one only)."),
            ts("Deliveries per target", [(f"sum by (target, outcome) (rate(eventweir_target_deliveries_total{{{W}}}[$__rate_interval]))", "{{target}} {{outcome}}")], "ops",
               "delivered, failed (retried) and dead_lettered, per target."),
        ]),
        ("Lag and offsets", [
            ts("Consumer lag per partition", [(f"max by (topic, partition) (eventweir_consumer_lag{{{W}}})", "{{topic}}/{{partition}}")], "short"),
            ts("Total lag and its trend", [('sum(eventweir:consumer_lag:sum{namespace=~"$namespace"})', "lag"),
                                           ('sum(eventweir:consumer_lag:deriv5m{namespace=~"$namespace"})', "growth / s")], "short",
               "A positive growth for long means the group falls behind (alert EventweirConsumerLagGrowing)."),
            ts("Commit progress per topic", [(f"sum by (topic) (deriv(eventweir_committed_offset{{{W}}}[5m]))", "{{topic}}")], "ops",
               "Offsets committed per second: flat while records wait means no progress."),
            ts("Partitions assigned and paused", [(f"sum by (instance) (eventweir_assigned_partitions{{{W}}})", "assigned {{instance}}"),
                                                   (f"sum by (instance) (eventweir_paused_partitions{{{W}}})", "paused {{instance}}")], "short",
               "Paused = back-pressure from a target holding too many unacknowledged deliveries."),
        ]),
        ("Latency", [
            ts("Batch processing time", [(q(0.5, "eventweir_batch_processing_seconds", [], W), "p50"),
                                         (q(0.99, "eventweir_batch_processing_seconds", [], W), "p99")], "s",
               "Decode to deliveries handed to the targets, per consumed batch."),
            ts("Delivery latency per target (p99)", [(q(0.99, "eventweir_delivery_latency_seconds", ["target"], W), "{{target}}")], "s",
               "From a batch being consumed to the target acknowledging it (sink flush latency)."),
            ts("Records per batch (mean)", [(f"sum(rate(eventweir_batch_records_sum{{{W}}}[$__rate_interval])) / sum(rate(eventweir_batch_records_count{{{W}}}[$__rate_interval]))", "records")], "short"),
            ts("In flight per target", [(f"sum by (target) (eventweir_target_in_flight{{{W}}})", "{{target}}")], "short",
               "Deliveries handed to a target and not yet acknowledged (flush buffer size)."),
        ]),
        ("Failures", [
            ts("Dead letters by stage and error", [(f"sum by (stage, error) (rate(eventweir_dead_letters_total{{{W}}}[$__rate_interval]))", "{{stage}} {{error}}")], "ops"),
            ts("Tombstones skipped", [(f"sum by (topic) (rate(eventweir_tombstones_skipped_total{{{W}}}[$__rate_interval]))", "{{topic}}")], "ops",
               "Records with a null value that a source skips (sources[].tombstones); on a flattened CDC topic these are deletes."),
            ts("Target failures (S3, Timestream, InfluxDB, HTTP, Kafka)", [(f'sum by (target) (rate(eventweir_target_deliveries_total{{{W}, outcome="failed"}}[$__rate_interval]))', "{{target}}")], "ops",
               "Failed delivery attempts; the worker retries, and the partitions feeding the target stop committing."),
        ]),
        ("Sinks: S3 lake, Timestream, InfluxDB", [
            ts("Lake objects created", [(f"sum by (target, outcome) (rate(eventweir_lake_objects_total{{{W}}}[$__rate_interval]))", "{{target}} {{outcome}}")], "ops",
               "created = new object; existing = found complete on replay (exactly-once keys at work)."),
            ts("Lake flush size", [(f"sum by (target) (rate(eventweir_lake_bytes_total{{{W}}}[$__rate_interval])) / sum by (target) (rate(eventweir_lake_objects_total{{{W}, outcome=\"created\"}}[$__rate_interval]))", "bytes/object {{target}}"),
                                   (f"sum by (target) (rate(eventweir_lake_records_total{{{W}}}[$__rate_interval]))", "records/s {{target}}")], "short",
               "Mean object size and records written per second."),
            ts("Records buffered in open objects", [(f"sum by (target) (eventweir_sink_buffered_records{{{W}}})", "{{target}}")], "short"),
            ts("Sink request latency (p99)", [(q(0.99, "eventweir_sink_request_seconds", ["target", "operation"], W), "{{target}} {{operation}}")], "s"),
            ts("Sink errors and back-off", [(f"sum by (target, error) (rate(eventweir_sink_errors_total{{{W}}}[$__rate_interval]))", "{{target}} {{error}}"),
                                            (f"max by (target) (eventweir_sink_backing_off{{{W}}})", "backing off {{target}}")], "short",
               "S3/Timestream/InfluxDB request failures (every retry counts); backing off = 1 while the destination is down."),
            ts("Records rejected by sinks", [(f"sum by (target, reason) (rate(eventweir_sink_rejected_records_total{{{W}}}[$__rate_interval]))", "{{target}} {{reason}}")], "ops",
               "Refused before sending (limits, schema) or by the destination (RejectedRecords); dead-lettered."),
        ]),
        ("Rules and the EventBridge API", [
            ts("Rule reloads from the control topic", [(f"sum by (result) (increase(eventweir_rule_reloads_total{{{W}}}[$__rate_interval]))", "{{result}}")], "short",
               "applied = a new rule set is live on the worker; failed = the previous rules stay in force (see logs)."),
            ts("Rules in the control topic", [(f"max(eventweir_control_rules{{{W}}})", "rules"),
                                                (f"max(increase(eventweir_control_rules_invalid_total{{{W}}}[$__rate_interval]))",
                                                 "left out: cannot be built")], "short",
               "Rules stored through the API; `left out` counts stored rules this version cannot build (the log names each)."),
            ts("Rule matching engine", [(f"count by (engine) (eventweir_rule_engine{{{W}}} == 1)", "{{engine}}")], "short",
               "Workers per matching engine: index or bitmask (generated code, picked by a timing trial on the first "
               "events), reference (EVENTWEIR_NO_FASTPATH=1), choosing while the trial runs."),
            ts("Events routed by engine and decoder", [(f"sum by (engine, decoder) (rate(eventweir_routed_events_total{{{W}}}[$__rate_interval]))", "{{engine}} {{decoder}}")], "ops",
               "msgspec: read only as far as the rules read (chosen per rule set by a timing trial); orjson: read "
               "whole (today's path: chosen by the trial, while it runs, events the partial decoder hands over, "
               "sources with stages); simdjson: only checked (no patterns, targets forward events unchanged)."),
            ts("API calls by operation", [(f"sum by (operation, outcome) (rate(eventweir_api_requests_total{{{W}}}[$__rate_interval]))", "{{operation}} {{outcome}}")], "reqps"),
            ts("PutEvents entries", [(f"sum by (result) (rate(eventweir_put_events_entries_total{{{W}}}[$__rate_interval]))", "{{result}}")], "ops",
               "Entries accepted onto the bus topic, or failed with AWS's per-entry error code."),
            ts("Replays", [(f"sum(rate(eventweir_replayed_events_total{{{W}}}[$__rate_interval]))", "events replayed/s"),
                           (f"max by (state) (eventweir_replays{{{W}}})", "{{state}}")], "short",
               "Archived events republished to their bus by replays (StartReplay), and replays by state as the control "
               "topic holds them (each worker reads the same, hence max)."),
        ]),
        ("Enrichment state (changelogs)", [
            ts("State changes written to changelogs", [(f"sum by (store, result) (rate(eventweir_state_changes_total{{{W}}}[$__rate_interval]))", "{{store}} {{result}}")], "ops",
               "Changes of stateful stages (sessions, order checks, CDC positions). Any `failed` holds that partition's commits until a restart."),
            ts("Window records left out", [(f"sum by (window, outcome) (rate(eventweir_window_records_total{{{W}}}[$__rate_interval]))", "{{window}} {{outcome}}")], "ops",
               "windows stages: late = past the allowed lateness (in no window); skipped = no key or event time."),
            ts("Sequence records by outcome", [(f"sum by (stage, outcome) (rate(eventweir_sequence_records_total{{{W}}}[$__rate_interval]))", "{{stage}} {{outcome}}")], "ops",
               "sequence stages: gap = a record jumped ahead (a Gap Detected event); out_of_order = it filled a gap; duplicate = seen before."),
        ]),
        ("Enrichment lookups (HTTP)", [
            ts("Lookups by outcome", [(f"sum by (lookup, outcome) (rate(eventweir_lookup_requests_total{{{W}}}[$__rate_interval]))", "{{lookup}} {{outcome}}")], "ops",
               "Events joined per lookup: hit = from the cache, miss = fetched, error = the service failed and the event took the on_missing path."),
            ts("Lookup cache hit ratio", [(f'sum by (lookup) (rate(eventweir_lookup_requests_total{{{W}, outcome="hit"}}[$__rate_interval])) / sum by (lookup) (rate(eventweir_lookup_requests_total{{{W}}}[$__rate_interval]))', "{{lookup}}")], "percentunit"),
            ts("Lookup request latency", [(q(0.5, "eventweir_lookup_seconds", ["lookup"], W), "p50 {{lookup}}"),
                                          (q(0.99, "eventweir_lookup_seconds", ["lookup"], W), "p99 {{lookup}}")], "s",
               "One request to the lookup's service, timeouts included (they show at the configured timeout_s)."),
        ]),
        ("Runtime", [
            ts("Event-loop lag", [(f"max by (instance) (eventweir_event_loop_lag_seconds{{{W}}})", "{{instance}}")], "s",
               "How late a periodic tick ran: blocking work or CPU starvation shows here."),
            ts("Rebalances", [(f"sum by (kind) (increase(eventweir_rebalances_total{{{W}}}[$__rate_interval]))", "{{kind}}")], "short"),
            ts("Memory per worker", [(f"max by (instance) (process_resident_memory_bytes{{{W}}})", "{{instance}}")], "bytes",
               "Resident memory; size the pod's memory limit at about 1.5x the peak here."),
            ts("CPU per worker", [(f"sum by (instance) (rate(process_cpu_seconds_total{{{W}}}[$__rate_interval]))", "{{instance}}")], "percentunit"),
        ]),
        ("Schema discovery", [
            ts("Discovered schema types and versions", [(f"max(eventweir_discovered_schema_types{{{W}}})", "types"),
                                                        (f"sum(increase(eventweir_discovered_schema_versions_total{{{W}}}[$__rate_interval]))", "new versions")], "short",
               "Types (source, detail-type) in the registry topic, and the new versions workers wrote: a steady stream of "
               "versions means producers keep changing their events (`eventweir schemas discovered` lists them)."),
            ts("Discovery sampling", [(f"sum(rate(eventweir_discovery_sampled_events_total{{{W}}}[$__rate_interval]))", "inferred"),
                                      (f"sum(rate(eventweir_discovery_overflow_events_total{{{W}}}[$__rate_interval]))", "past max_types")], "ops",
               "Events whose schema was inferred (the sample), and events of types past discovery.max_types, left out."),
        ]),
    ],
}

WAITINGROOM = {
    "uid": "eventweir-waitingroom",
    "title": "eventweir / waiting room",
    "description": "Queue, admissions and sessions of eventweir's virtual waiting rooms.",
    "room_variable": True,
    "rows": [
        ("Queue", [
            ts("Waiting", [(f"max by (room) (eventweir_waitingroom_waiting{{{WR}}})", "{{room}}")], "short",
               "Requests in the queue (room total, reported by every worker)."),
            ts("Admissions / s", [(f"sum by (room) (rate(eventweir_waitingroom_admitted_total{{{WR}}}[$__rate_interval]))", "{{room}}")], "ops"),
            ts("Active sessions", [(f"max by (room) (eventweir_waitingroom_active_sessions{{{WR}}})", "{{room}}")], "short"),
            ts("Wait until admission", [(q(0.5, "eventweir_waitingroom_wait_seconds", ["room"], WR), "p50 {{room}}"),
                                        (q(0.95, "eventweir_waitingroom_wait_seconds", ["room"], WR), "p95 {{room}}")], "s"),
        ]),
        ("Sessions and API", [
            ts("Expired positions and sessions", [(f"max by (room) (eventweir_waitingroom_expired_positions{{{WR}}})", "positions {{room}}"),
                                                 (f"max by (room) (eventweir_waitingroom_expired_sessions{{{WR}}})", "sessions {{room}}")], "short"),
            ts("Join latency (p99)", [(q(0.99, "eventweir_waitingroom_join_latency_seconds", ["room"], WR), "{{room}}")], "s"),
            ts("API requests by endpoint and status", [(f"sum by (endpoint, status) (rate(eventweir_waitingroom_requests_total{{{W}}}[$__rate_interval]))", "{{endpoint}} {{status}}")], "reqps"),

            ts("Bot-protection challenges by outcome", [(f"sum by (room, outcome) (rate(eventweir_waitingroom_challenges_total{{{WR}}}[$__rate_interval]))", "{{outcome}} {{room}}")], "ops",
               "Challenges issued, and solutions accepted or refused by reason (missing, malformed, invalid, expired, reused). "
               "Many refused: a bot at work or a client that does not solve; issued far above accepted: visitors who give up."),
        ]),
    ],
}


def variables(room: bool) -> list[dict]:
    def query_var(name, query, multi, all_value=None):
        v = {"name": name, "label": name, "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": query, "refId": name}, "definition": query, "refresh": 2, "sort": 1,
             "multi": multi, "includeAll": multi, "current": {}}
        if all_value:
            v["allValue"] = all_value
        return v

    out = [{"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus", "current": {}},
           query_var("namespace", "label_values(eventweir_ready, namespace)", False),
           query_var("instance", 'label_values(eventweir_ready{namespace=~"$namespace"}, instance)', True, ".*")]
    if room:
        out.append(query_var("room", 'label_values(eventweir_waitingroom_waiting{namespace=~"$namespace"}, room)', True, ".*"))
    return out


def build(spec: dict) -> dict:
    panels, pid, y = [], 1, 0
    for row_title, row in spec["rows"]:
        panels.append({"type": "row", "title": row_title, "id": pid, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        width = 24 // len(row) if row[0]["type"] == "stat" else 12
        height = 4 if row[0]["type"] == "stat" else 8
        for i, p in enumerate(row):
            x = (i * width) % 24
            if i and x == 0:
                y += height
            panels.append({
                "id": pid, "type": p["type"], "title": p["title"], "description": p["description"],
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": height, "w": width, "x": x, "y": y},
                "fieldConfig": {"defaults": {"unit": p["unit"]}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if p["type"] == "timeseries" else {},
                "targets": [dict(t, refId=chr(65 + j), datasource={"type": "prometheus", "uid": "${datasource}"})
                            for j, t in enumerate(p["targets"])],
            })
            pid += 1
        y += height
    return {
        "uid": spec["uid"], "title": spec["title"], "description": spec["description"],
        "tags": ["eventweir"], "timezone": "browser", "editable": True, "schemaVersion": 39, "version": 1,
        "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables(spec.get("room_variable", False))},
        "annotations": {"list": []}, "links": [], "panels": panels,
    }


def render() -> dict[str, str]:
    """File name -> JSON text, exactly as committed."""
    return {f"{spec['uid']}.json": json.dumps(build(spec), indent=2, ensure_ascii=False) + "\n"
            for spec in (WORKER, WAITINGROOM)}


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}", file=sys.stderr)
