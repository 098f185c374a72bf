"""Schema discovery's metrics (streams/runtime/discovery.py). No label names a type: the number of
types is the users' to choose, so it is counted, never labelled."""
from __future__ import annotations

from prometheus_client import Counter, Gauge

DISCOVERED_TYPES = Gauge(
    "eventweir_discovered_schema_types", "Event types (source, detail-type) in the discovered-schema registry.")
DISCOVERED_VERSIONS = Counter(
    "eventweir_discovered_schema_versions_total", "New schema versions this worker wrote to the registry.")
DISCOVERY_SAMPLED = Counter(
    "eventweir_discovery_sampled_events_total", "Events whose schema was inferred (the sampled ones).")
DISCOVERY_OVERFLOW = Counter(
    "eventweir_discovery_overflow_events_total",
    "Events of types past discovery.max_types: not inferred. Raise max_types, or look for a detail-type made per event.")
