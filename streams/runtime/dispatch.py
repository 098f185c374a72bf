"""From a pipeline's result to the targets: the one dispatch both runtimes share.

A batch's deliveries go to their targets and its failures to the dead-letter writer, each paired
with its partition's ticket, so a partition's offset is committed only once every output derived
from it is acknowledged. The caller releases the tickets after dispatching (the native worker
first adds the batch's state changes to them). Then the batch is counted: stats, and metrics.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter
from typing import Any

from processors.enrich.windows import WindowAggregate
from processors.routing.router import UNMATCHED_PREFIX
from streams import metrics
from streams.targets.base import RecordChunk

_partition = attrgetter("partition")
_topic_partition = attrgetter("topic", "partition")


@dataclass
class WorkerStats:
    consumed: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    matched: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    committed: dict = field(default_factory=dict)
    lag: dict = field(default_factory=dict)

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())


def partition_runs(records: list, tickets: Mapping) -> list[tuple]:
    """(ticket, count, (topic, partition)) per run of records of one partition. A batch's records
    come topic by topic, partition by partition, so a run can only span topics where one topic's
    last partition has the number of the next one's first: grouping by the partition number
    (no tuple per record) and splitting such runs by topic gives the same runs, faster."""
    runs = []
    start = 0
    for _, run in groupby(records, _partition):
        n = len(list(run))
        first, last = records[start], records[start + n - 1]
        if first.topic == last.topic:
            tp = (first.topic, first.partition)
            runs.append((tickets[tp], n, tp))
        else:
            runs += [(tickets[tp], len(list(r)), tp) for tp, r in groupby(records[start:start + n], _topic_partition)]
        start += n
    return runs


def dispatch(result: Any, tickets: Mapping, targets: Mapping[str, Any], dead_letters: Any) -> None:
    """Hand each delivery to its target and each failure to the dead-letter writer, with its
    partition's ticket (`tickets` is keyed by (topic, partition))."""
    per_target: dict[str, list] = defaultdict(list)
    last_record, ticket = None, None
    for delivery in result.deliveries:
        record = delivery.record
        if record is not last_record:  # fan-out repeats a record; batches repeat a partition
            last_record, ticket = record, tickets[(record.topic, record.partition)]
        per_target[delivery.target].append((delivery, ticket))
    for name, items in per_target.items():
        targets[name].submit(items)
    if result.plain:
        _dispatch_plain(result, tickets, targets)
    if result.failures:
        dead_letters.write_failures([(f, tickets[(f.record.topic, f.record.partition)]) for f in result.failures])


def _dispatch_plain(result: Any, tickets: Mapping, targets: Mapping[str, Any]) -> None:
    """Each plain rule's records to each of its targets, with the runs of records that share
    a partition (and so a ticket): the records of a batch come partition by partition."""
    made: dict[int, Any] = {}  # shared by the batch's chunks (RecordChunk.made)
    for rule, matches in result.plain.items():
        if matches.runs is not None:  # counted while routing (processors.core.TopicRecords)
            runs = [(tickets[tp], n, tp) for tp, n in matches.runs]
        else:
            runs = partition_runs(matches.records, tickets)
        for name in result.plain_targets[rule]:
            targets[name].submit_records(RecordChunk.of(rule, matches.records, matches.keys, matches.values, runs, made))


def count_batch(stats: WorkerStats, result: Any, count: int, started: float) -> None:
    """The batch in the worker's stats and metrics (`started`: time.perf_counter() at its start)."""
    stats.consumed += count
    stats.delivered += result.delivery_count if result.plain else len(result.deliveries)
    stats.dead_lettered += len(result.failures)
    for rule, n in result.matched.items():
        stats.matched[rule] += n
        if rule.startswith(UNMATCHED_PREFIX):  # a bus's events no rule matched (Router.unmatched)
            metrics.UNMATCHED_EVENTS.labels(rule[len(UNMATCHED_PREFIX):]).inc(n)
        else:
            metrics.RULE_MATCHES.labels(rule).inc(n)
    metrics.BATCH_SIZE.observe(count)
    metrics.BATCH_SECONDS.observe(time.perf_counter() - started)


class SkippedTombstones:
    """eventweir_tombstones_skipped_total, from the counts the decoders and CDC normalisers keep."""

    def __init__(self) -> None:
        self._exported: dict[str, int] = {}

    def export(self, pipeline: Any) -> None:
        for topic, chain in getattr(pipeline, "chains", {}).items():
            total = sum(getattr(part, "skipped_tombstones", 0) for part in (chain.decoder, *chain.stages))
            new = total - self._exported.get(topic, 0)
            if new > 0:
                metrics.TOMBSTONES_SKIPPED.labels(topic).inc(new)
                self._exported[topic] = total


class StageCounts:
    """A counter labelled (stage name, outcome) fed from the running totals that stages of one type keep:
    each export adds what is new since the last. Subclasses name the counter, the type and the totals."""

    counter: Any
    stage_type: Any  # the stages counted (typed Any: isinstance must not narrow them to object)

    def __init__(self) -> None:
        self._exported: dict[tuple[str, str], int] = {}

    @staticmethod
    def counts(stage: Any) -> dict[str, int]:
        raise NotImplementedError

    def export(self, pipeline: Any) -> None:
        totals: dict[tuple[str, str], int] = defaultdict(int)
        for chain in getattr(pipeline, "chains", {}).values():
            for stage in chain.stages:
                if isinstance(stage, self.stage_type):
                    for outcome, count in self.counts(stage).items():
                        totals[(stage.name, outcome)] += count
        for labels, total in totals.items():
            new = total - self._exported.get(labels, 0)
            if new > 0:
                self.counter.labels(*labels).inc(new)
                self._exported[labels] = total


class WindowRecords(StageCounts):
    """eventweir_window_records_total, from the late and skipped counts the windows stages keep."""

    counter = metrics.WINDOW_RECORDS
    stage_type = WindowAggregate

    @staticmethod
    def counts(stage: Any) -> dict[str, int]:
        return {"late": stage.late, "skipped": stage.skipped}


RULE_ENGINES = ("index", "bitmask", "reference", "choosing", "none")
DECODERS = ("msgspec", "orjson", "simdjson")


def export_rule_engine(router: Any) -> str:
    """Set eventweir_rule_engine to the engine the router's rule set uses now (a timing trial
    decides it on the first events, so this runs on every commit tick); returns its name."""
    ruleset = getattr(router, "ruleset", None)
    current = ruleset.engine if ruleset is not None else "none"
    for engine in RULE_ENGINES:
        metrics.RULE_ENGINE.labels(engine).set(1 if engine == current else 0)
    return current


def export_routed(pipeline: Any) -> None:
    """Add the events each router of the pipeline routed since the last call to
    eventweir_routed_events_total, per engine and decoder (Router.read_by)."""
    routers = [getattr(pipeline, "router", None), *getattr(pipeline, "bus_routers", {}).values()]
    for router in {id(r): r for r in routers if r is not None}.values():
        for (engine, decoder), n in router.take_read_by().items():
            if engine in RULE_ENGINES and decoder in DECODERS:  # bounded, whatever a router reports
                metrics.ROUTED_EVENTS.labels(engine, decoder).inc(n)


def readiness(*, stopping: bool, joined: bool, lag: Mapping, ready_max_lag: int | None,
              partitions: int, runtime: str = "") -> tuple[bool, str]:
    """(ready, why) for /readyz: not while stopping, before joining, or lagging past the limit."""
    if stopping:
        return False, "stopping"
    if not joined:
        return False, "waiting for the consumer group to assign partitions"
    behind = {tp: n for tp, n in lag.items() if ready_max_lag is not None and n > ready_max_lag}
    if behind:
        worst = max(behind, key=lambda tp: behind[tp])
        return False, f"catching up: {worst.topic}[{worst.partition}] is {behind[worst]} records behind"
    where = f" ({runtime} runtime)" if runtime else ""
    if not partitions and not runtime:
        return True, "ready (idle: no partitions assigned; more replicas than partitions?)"
    return True, f"ready{where}: {partitions} partitions"
