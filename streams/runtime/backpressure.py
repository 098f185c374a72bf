"""Back-pressure: which partitions the worker leaves out of fetching, and when it takes them back.

A target over its in-flight bound (`runtime.max_in_flight`) pauses only the partitions feeding
it; all targets together over `runtime.max_in_flight_total` pause every partition, until the
total is down to half. A paused partition is left out of getmany(), so its fetched records stay
buffered in the consumer (consumer.pause() would drop them, to be fetched again). A stall past
STALL_HARD_PAUSE_S also pauses them in the consumer, whose polls then keep the worker in its
group while it waits on a sink outage.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import TopicPartition

from streams import metrics

log = logging.getLogger(__name__)

# A stall this long (every partition waiting on a target) also pauses them in the consumer, whose
# polls then keep the worker in its group: well under the default max_poll_interval of 300 s.
STALL_HARD_PAUSE_S = 5.0


class Backpressure:
    def __init__(self, max_in_flight_total: int):
        self.max_in_flight_total = max_in_flight_total
        self.paused: set[TopicPartition] = set()
        self.hard_paused: set[TopicPartition] = set()  # also paused in the consumer: a long stall
        self.saturated: set[str] = set()  # targets over their own bound, not yet relieved
        self.over_total = False  # max_in_flight_total reached, not yet relieved
        self.paused_since = 0.0

    def apply(self, targets: Mapping[str, Any], assigned: set[TopicPartition], consumer: Any) -> None:
        """Pause and resume partitions for the targets' state now."""
        for name, target in targets.items():
            if target.saturated:
                self.saturated.add(name)
            elif name in self.saturated and target.relieved:
                self.saturated.discard(name)
        # the per-target bound alone would let memory grow with the number of targets
        total, limit = sum(t.in_flight for t in targets.values()), self.max_in_flight_total
        if total >= limit:
            self.over_total = True
        elif self.over_total and total <= limit // 2:
            self.over_total = False
        want: set[TopicPartition] = set(assigned) if self.over_total else set()
        for name in self.saturated:
            for topic, partition in targets[name].feeding_partitions():
                tp = TopicPartition(topic, partition)
                if tp in assigned:
                    want.add(tp)
        if want == self.paused:
            return
        to_pause, to_resume = want - self.paused, self.paused - want
        if to_pause and self.over_total:
            log.warning("back-pressure: pausing every partition (%d deliveries in flight over all targets, "
                        "runtime.max_in_flight_total is %d)", total, limit)
        elif to_pause:
            log.warning("back-pressure: pausing %s (targets over their in-flight bound: %s)",
                        sorted(to_pause), sorted(self.saturated))
        if to_resume & self.hard_paused:
            consumer.resume(*(to_resume & self.hard_paused))
            self.hard_paused -= to_resume
        if not self.paused:
            self.paused_since = time.monotonic()
        self.paused = want
        metrics.PAUSED_PARTITIONS.set(len(want))

    def stalled_too_long(self) -> set[TopicPartition] | None:
        """None while the stall is shorter than STALL_HARD_PAUSE_S; past it, the paused partitions
        not yet paused in the consumer (the caller pauses them there, then polls the consumer)."""
        if time.monotonic() - self.paused_since <= STALL_HARD_PAUSE_S:
            return None
        hard = self.paused - self.hard_paused
        self.hard_paused |= hard
        return hard

    def keep_targets(self, names: set[str]) -> None:
        """After a rule reload: forget targets that are gone."""
        self.saturated &= names

    def revoke(self, revoked: set[TopicPartition]) -> None:
        self.paused -= revoked
        self.hard_paused -= revoked
