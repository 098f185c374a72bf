"""Every Prometheus metric the worker exports, declared in one place.

Hot paths increment per batch (`.inc(n)`), never per event.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS_IN = Counter("eventweir_records_consumed_total", "Records consumed from source topics.", ["topic"])
RECORDS_OUT = Counter("eventweir_records_produced_total", "Records acknowledged by an output topic.", ["topic"])
DELIVERIES = Counter(
    "eventweir_target_deliveries_total", "Deliveries to targets by outcome (delivered, failed, dead_lettered).",
    ["target", "outcome"],
)
RULE_MATCHES = Counter("eventweir_rule_matches_total", "Events matched by each rule.", ["rule"])
UNMATCHED_EVENTS = Counter(
    "eventweir_unmatched_events_total", "Events no rule matched, sent to their bus's unmatched_topic (only buses "
    "of the config file have one, so `bus` is bounded).", ["bus"])
DEAD_LETTERS = Counter(
    "eventweir_dead_letters_total", "Records written to the dead-letter topic, by stage and error.", ["stage", "error"]
)
BATCH_SIZE = Histogram(
    "eventweir_batch_records", "Records per consumed batch.",
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 50000),
)
BATCH_SECONDS = Histogram(
    "eventweir_batch_processing_seconds", "Time to run the pipeline over one batch (decode to deliveries).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
DELIVERY_SECONDS = Histogram(
    "eventweir_delivery_latency_seconds", "From a batch being consumed to its outputs being acknowledged.",
    ["target"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CONSUMER_LAG = Gauge("eventweir_consumer_lag", "High watermark minus next offset to fetch.", ["topic", "partition"])
COMMITTED_OFFSET = Gauge("eventweir_committed_offset", "Last committed offset.", ["topic", "partition"])
IN_FLIGHT = Gauge("eventweir_target_in_flight", "Deliveries handed to a target and not yet acknowledged.", ["target"])
PAUSED_PARTITIONS = Gauge("eventweir_paused_partitions", "Partitions paused by back-pressure.")
ASSIGNED_PARTITIONS = Gauge("eventweir_assigned_partitions", "Partitions assigned to this worker.")
REBALANCES = Counter("eventweir_rebalances_total", "Consumer group rebalances seen by this worker.", ["kind"])
LOOP_LAG = Gauge("eventweir_event_loop_lag_seconds", "How late a periodic event-loop tick ran (blocking work shows here).")
READY = Gauge("eventweir_ready", "1 when /readyz reports ready.")

# --- sinks (s3 lake, timestream, influxdb) ---------------------------------------------------------
SINK_ERRORS = Counter(
    "eventweir_sink_errors_total", "Failed requests to a sink's destination (each retry counts), by error.",
    ["target", "error"],
)
SINK_BACKING_OFF = Gauge(
    "eventweir_sink_backing_off", "1 while a sink is retrying a failing destination (S3 down, throttled).", ["target"]
)
SINK_BUFFERED = Gauge("eventweir_sink_buffered_records", "Records buffered in open lake objects.", ["target"])
SINK_REQUEST_SECONDS = Histogram(
    "eventweir_sink_request_seconds", "Duration of one successful request to a sink's destination.",
    ["target", "operation"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SINK_REJECTED = Counter(
    "eventweir_sink_rejected_records_total", "Records a sink refused before or after sending, by reason.",
    ["target", "reason"],
)
LAKE_OBJECTS = Counter(
    "eventweir_lake_objects_total", "Lake objects completed (created) or found already complete on replay (existing).",
    ["target", "outcome"],
)
LAKE_BYTES = Counter("eventweir_lake_bytes_total", "Bytes of lake objects created.", ["target"])
LAKE_RECORDS = Counter("eventweir_lake_records_total", "Records in lake objects created.", ["target"])

# --- rules, control topic and the EventBridge API ----------------------------------------------
RULE_RELOADS = Counter("eventweir_rule_reloads_total", "Rule-set reloads from the control topic, by result.", ["result"])
CONTROL_RULES = Gauge("eventweir_control_rules", "Rules currently defined in the control topic.")
CONTROL_RULES_INVALID = Counter(
    "eventweir_control_rules_invalid_total", "Rules read from the control topic that cannot be built (e.g. stored "
    "by an older version that accepted them) and were left out; the log names each.")
TOMBSTONES_SKIPPED = Counter(
    "eventweir_tombstones_skipped_total", "Records with a null value (tombstones) skipped, per source topic "
    "(sources[].tombstones).", ["topic"])
WINDOW_RECORDS = Counter(
    "eventweir_window_records_total", "Records a windows stage left out of every window: late (past the allowed "
    "lateness) or skipped (no key or event time), per stage name (sources[].enrich[].name).", ["window", "outcome"])
SEQUENCE_RECORDS = Counter(
    "eventweir_sequence_records_total", "Records a sequence stage checked, per stage name (sources[].enrich[].name) "
    "and outcome: in_order, gap (it jumped ahead: a Gap Detected event), duplicate, out_of_order (it filled a gap), "
    "skipped (no key or sequence field).", ["stage", "outcome"])
RULE_ENGINE = Gauge(
    "eventweir_rule_engine", "1 for the matching engine the rule set uses: index, bitmask, reference (no generated "
    "code), choosing (the timing trial is running) or none (no rule has a pattern).", ["engine"])
ROUTED_EVENTS = Counter(
    "eventweir_routed_events_total", "Events routed, by matching engine (as eventweir_rule_engine) and decoder: "
    "msgspec (read only as far as the rules read), orjson (read whole: chosen by the timing trial, while it "
    "runs, for events the partial decoder hands over, and after enrichment stages) or simdjson (only checked: "
    "no rule has a pattern, every target forwards the event unchanged).", ["engine", "decoder"])
API_REQUESTS = Counter(
    "eventweir_api_requests_total", "EventBridge-compatible API calls, by operation and outcome.", ["operation", "outcome"]
)
PUT_EVENTS_ENTRIES = Counter(
    "eventweir_put_events_entries_total", "PutEvents entries, by result: accepted, failed, unknown_bus (an "
    "EventBusName that is not this bus: answered with an EventId as AWS does, delivered nowhere).", ["result"])

# --- enrichment lookups (processors.enrich.lookup.HttpLookup) -----------------------------------
LOOKUP_REQUESTS = Counter(
    "eventweir_lookup_requests_total",
    "Events an HTTP lookup joined, by outcome: hit (answered from the cache, found or not found), "
    "miss (its key was fetched), error (the fetch failed; the event took the on_missing path).",
    ["lookup", "outcome"],
)
LOOKUP_SECONDS = Histogram(
    "eventweir_lookup_seconds", "Duration of one request to a lookup's HTTP service, errors and timeouts included.",
    ["lookup"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

# --- stateful enrichment (sessions, order checks, CDC positions): changelog topics ----------------
STATE_CHANGES = Counter(
    "eventweir_state_changes_total",
    "State-store changes written to changelog topics, by result: written, or failed (the partition's "
    "commits then stop until a restart reprocesses its events and rebuilds the state).",
    ["store", "result"],
)
REPLAYED_EVENTS = Counter("eventweir_replayed_events_total", "Archived events a replay (StartReplay) republished to "
                          "its bus, acknowledged, counted by the worker that ran it.")
REPLAYS = Gauge("eventweir_replays", "Replays on the control topic, by state (STARTING, RUNNING, CANCELLING, COMPLETED, "
                "CANCELLED, FAILED), as this worker reads them.", ["state"])
