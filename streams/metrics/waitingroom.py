"""Prometheus metrics of the waiting room (the one place they are declared)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WAITING = Gauge("eventweir_waitingroom_waiting", "Requests waiting in the queue", ["room"])
ACTIVE = Gauge("eventweir_waitingroom_active_sessions", "Admitted sessions holding a slot (admitted or token issued)", ["room"])
ADMITTED = Counter("eventweir_waitingroom_admitted_total",
                   "Queue positions admitted by this worker's inlet (rate() = admitted per second)", ["room"])
EXPIRED_POSITIONS = Gauge("eventweir_waitingroom_expired_positions",
                          "Queue positions lost by waiters that stopped polling (room total)", ["room"])
EXPIRED_SESSIONS = Gauge("eventweir_waitingroom_expired_sessions", "Admitted sessions that expired (room total)", ["room"])
WAIT_SECONDS = Histogram("eventweir_waitingroom_wait_seconds", "Time from join to admission", ["room"],
                         buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400))
JOIN_LATENCY = Histogram("eventweir_waitingroom_join_latency_seconds", "Join request latency inside the worker", ["room"],
                         buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
REQUESTS = Counter("eventweir_waitingroom_requests_total", "Waiting-room HTTP requests by endpoint and status",
                   ["endpoint", "status"])
CHALLENGES = Counter("eventweir_waitingroom_challenges_total",
                     "Bot-protection challenges issued, and solutions accepted or refused by reason (missing, "
                     "malformed, invalid, expired, reused)", ["room", "outcome"])


class PrometheusObserver:
    """Feeds the gauges from each inlet tick's counters and the histogram from each admission."""

    def on_counters(self, room, counters) -> None:
        WAITING.labels(room).set(counters.waiting)
        ACTIVE.labels(room).set(counters.active)
        EXPIRED_POSITIONS.labels(room).set(counters.expired_waiters)
        EXPIRED_SESSIONS.labels(room).set(counters.expired_sessions)

    def on_challenge(self, room, outcome) -> None:
        CHALLENGES.labels(room, outcome).inc()

    def on_admitted(self, room, waits_s) -> None:
        ADMITTED.labels(room).inc(len(waits_s))
        hist = WAIT_SECONDS.labels(room)
        for w in waits_s:
            hist.observe(w)
