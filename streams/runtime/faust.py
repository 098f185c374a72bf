"""eventweir on faust-streaming: the same pipeline, targets, dead letters and metrics as the native
worker, with faust doing the consuming, group membership and offset commits.

Two ways in:

1. `eventweir run --runtime faust -c config.yaml` runs `FaustWorker`: one faust agent over the
   config's source topics takes batches (`stream.take_events`), runs the pipeline that
   `streams.runtime.topology.build_pipeline(config)` builds for the native worker too, hands deliveries
   to the same targets (`build_targets`) and failures to the same dead-letter writer. The agent
   waits until every output of a batch is acknowledged before taking the next one; faust acks
   (and later commits) a batch's events only then, so delivery stays at-least-once.

2. In your own faust app, `EventweirProcessor` runs eventweir's stages and router on a batch of
   faust events and sends the results with the app's producer:

       from streams.runtime.faust import EventweirProcessor

       processor = EventweirProcessor.from_rules(
           {"hot": {"pattern": {"detail": {"temperature": [{"numeric": [">", 30]}]}}, "topic": "alerts"}},
           stages={"iot.telemetry": [ReferenceJoin(devices, "device_id", ["site", "owner"])]},
           dead_letter_topic="iot.dlq")

       @app.agent(app.topic("iot.telemetry", value_serializer="raw"))
       async def route(stream):
           async for events in stream.take_events(1000, within=0.5):
               await processor.process(app, events)   # returns the PipelineResult

Faust on Tansu (the embedded broker): consumer groups, commits and faust's own assignor work;
Tansu has no idempotent or transactional producer, so `processing_guarantee="exactly_once"`
cannot work there and `make_app` keeps faust's default at-least-once. Tansu delays a new group's
first JoinGroup by up to the rebalance timeout (30 s with faust's default of 60 s), so `make_app`
keeps that timeout at the session timeout.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import faust
import orjson
from aiokafka import TopicPartition

from processors.core import SourceRecord
from processors.pipeline import Pipeline, PipelineResult
from processors.routing.router import Route, Router, RouteTarget
from streams import metrics
from streams.config import Config, ConfigError
from streams.runtime.dispatch import (
    SkippedTombstones,
    WorkerStats,
    count_batch,
    dispatch,
    export_routed,
    export_rule_engine,
    readiness,
)
from streams.runtime.enrichment import close_stages, start_tables, stateful_sources
from streams.runtime.offsets import Ticket
from streams.runtime.outputs import close_outputs, open_outputs
from streams.runtime.topology import build_pipeline, target_name
from streams.targets.deadletter import DeadLetterWriter, dead_letter_headers

log = logging.getLogger(__name__)


# --- shared by both ways in -------------------------------------------------------------------------

def records_from_events(events: Iterable[Any]) -> list[SourceRecord]:
    """faust events (from `take_events` or `stream.events()`) -> the records processors take."""
    out = []
    for event in events:
        m = event.message
        out.append(SourceRecord(m.topic, m.partition, m.offset, int(m.timestamp * 1000), m.key, m.value,
                                tuple(m.headers or ())))
    return out


def group_by_topic(records: list[SourceRecord]) -> dict[str, list[SourceRecord]]:
    by_topic: dict[str, list[SourceRecord]] = defaultdict(list)
    for record in records:
        by_topic[record.topic].append(record)
    return by_topic


def make_app(config: Config, app_id: str | None = None, **overrides) -> faust.App:
    """A faust App for the config's cluster, with settings that work on Kafka and on Tansu."""
    k, c = config.kafka, config.consumer
    settings: dict[str, Any] = dict(
        broker=[f"kafka://{host.strip()}" for host in k.bootstrap_servers.split(",")],
        broker_client_id=k.client_id,
        store="memory://",
        web_enabled=False,  # eventweir serves /healthz, /readyz and /metrics itself
        topic_allow_declare=False,  # topics come from config and exist (or --create-topics made them)
        topic_disable_leader=True,  # no extra __assignor-__leader topic to create on the cluster
        consumer_auto_offset_reset=c.auto_offset_reset,
        broker_commit_interval=c.commit_interval_ms / 1000,
        broker_session_timeout=c.session_timeout_ms / 1000,
        broker_heartbeat_interval=c.heartbeat_interval_ms / 1000,
        # Tansu delays a new group's first JoinGroup by up to the rebalance timeout (faust's
        # default of 60 s stalled start-up for 30 s); a session timeout is plenty
        broker_rebalance_timeout=min(c.session_timeout_ms, c.max_poll_interval_ms) / 1000,
        broker_max_poll_records=c.max_batch_records,
        consumer_max_fetch_size=c.max_partition_fetch_bytes,
        stream_buffer_maxsize=max(4096, 2 * c.max_batch_records),
        stream_recovery_delay=0.0,
        producer_acks=-1 if config.producer.acks == "all" else int(config.producer.acks),
        producer_linger=config.producer.linger_ms / 1000,
        producer_max_batch_size=config.producer.max_batch_bytes,
        producer_max_request_size=config.producer.max_request_size,
        processing_guarantee="at_least_once",  # exactly_once needs transactions (not on Tansu)
    )
    if k.security_protocol != "PLAINTEXT":
        settings["broker_credentials"] = faust.SASLCredentials(
            username=k.sasl_username, password=k.sasl_password, mechanism=k.sasl_mechanism or "PLAIN"
        ) if k.security_protocol.startswith("SASL") else None
    settings.update(overrides)
    return faust.App(app_id or k.group_id, **settings)


# --- the Python API for faust users ------------------------------------------------------------------

class EventweirProcessor:
    """eventweir's stages and EventBridge-pattern router, for a faust agent's batches.

    `run(events)` is pure (decode, stages, route -> PipelineResult); `process(app, events)` also
    produces each delivery to its topic and each failure to the dead-letter topic (with the
    eventweir-* headers) through the app's producer, and returns once all are acknowledged, so
    the events it was given may be acked.
    """

    def __init__(self, pipeline: Pipeline, topics: Mapping[str, str], dead_letter_topic: str | None = None):
        self.pipeline = pipeline
        self.topics = dict(topics)  # target name ("<rule>/<target id>") -> output topic
        self.dead_letter_topic = dead_letter_topic

    @classmethod
    def from_config(cls, config: Config) -> EventweirProcessor:
        topics = {target_name(r.name, t.id): t.option("topic") for r in config.rules if r.state == "ENABLED"
                  for t in r.targets if t.type == "kafka"}
        return cls(build_pipeline(config), topics, config.dead_letter.topic)

    @classmethod
    def from_rules(cls, rules: Mapping[str, Mapping[str, Any]], stages: Mapping[str, list] | None = None,
                   dead_letter_topic: str | None = None, decoders: Mapping | None = None) -> EventweirProcessor:
        """`rules`: {name: {"pattern": EventBridge pattern or None (every event), "topic": output}};
        `stages`: {source topic: [stage, ...]} run after decode (validators, enrichers)."""
        routes, topics = [], {}
        for name, spec in rules.items():
            if not isinstance(spec, Mapping) or not spec.get("topic"):
                raise ValueError(f"rules[{name}]: expected {{'pattern': ..., 'topic': 'output topic'}}, got {spec!r}")
            target = f"{name}/{spec['topic']}"
            topics[target] = spec["topic"]
            routes.append(Route(name, (RouteTarget(target),), spec.get("pattern")))
        return cls(Pipeline(dict(stages or {}), Router(routes), dict(decoders or {})), topics, dead_letter_topic)

    def run(self, events: Sequence[Any]) -> PipelineResult:
        return self.pipeline.run(group_by_topic(records_from_events(events)))

    async def process(self, app: faust.App, events: Sequence[Any]) -> PipelineResult:
        result = self.run(events)
        await self.send(app, result)
        return result

    async def send(self, app: faust.App, result: PipelineResult) -> None:
        producer = app.producer
        futures = []
        for d in result.deliveries:
            topic = self.topics.get(d.target)
            if topic is None:
                raise KeyError(f"delivery for target {d.target!r}, which has no topic (known: {sorted(self.topics)})")
            payload = d.payload if isinstance(d.payload, (bytes, type(None))) else _dumps(d.payload)
            futures.append(await producer.send(topic, d.key, payload, partition=None, timestamp=None, headers=None))
        if result.failures:
            if not self.dead_letter_topic:
                raise ValueError(f"{len(result.failures)} failures but no dead_letter_topic to write them to")
            for f in result.failures:
                futures.append(await producer.send(self.dead_letter_topic, f.record.key, f.record.value,
                                                   partition=None, timestamp=None, headers=dead_letter_headers(f)))
        await asyncio.gather(*futures)


def _dumps(value) -> bytes:
    return orjson.dumps(value)


# --- `eventweir run --runtime faust` -------------------------------------------------------------------

class _BatchTicket(Ticket):
    """A partition's ticket for one batch; tells the batch when its last output is acknowledged."""

    __slots__ = ("batch",)

    def __init__(self, end_offset: int, batch: _Batch):
        super().__init__(end_offset)
        self.batch = batch

    def done(self, n: int = 1) -> None:
        self.pending -= n
        if self.pending <= 0:
            self.batch.settled_one()

    release = done


class _Batch:
    def __init__(self):
        self.open = 0
        self.settled = asyncio.Event()

    def ticket(self, end_offset: int) -> _BatchTicket:
        self.open += 1
        return _BatchTicket(end_offset, self)

    def settled_one(self) -> None:
        self.open -= 1
        if self.open <= 0:
            self.settled.set()


class FaustWorker:
    """The worker's interface (run, request_stop, ready, stats) with faust underneath."""

    runtime = "faust"

    def __init__(self, config: Config, pipeline: Pipeline | None = None, waitingroom=None, app: faust.App | None = None):
        self.config = config
        self.waitingroom = waitingroom
        self.pipeline = pipeline or build_pipeline(config)
        stateful = stateful_sources(config, self.pipeline)
        if stateful:
            raise ConfigError(f"{', '.join(stateful)}: stateful enrichment keeps its state in changelog topics, "
                              "which only the native runtime writes; run without --runtime faust")
        self._table_loaders: list = []
        self._pipeline_is_async = getattr(self.pipeline, "is_async", False)  # a wrapped pipeline may not say
        self.app = app or make_app(config)
        self.stats = WorkerStats()
        self._tombstones = SkippedTombstones()
        self.assigned: set[TopicPartition] = set()
        self.joined = False
        self.producer = None
        self.dead_letters: DeadLetterWriter | None = None
        self.targets: dict = {}
        self._stop = asyncio.Event()
        self._sources = set(config.source_topics)
        self._agent_done = asyncio.Event()
        self._agent_error: BaseException | None = None
        self._declare()

    def _declare(self) -> None:
        app, c = self.app, self.config.consumer
        topic = app.topic(*self.config.source_topics, key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")

        async def eventweir_pipeline(stream):
            try:
                async for events in stream.take_events(c.max_batch_records, within=c.fetch_timeout_ms / 1000):
                    if not self._stop.is_set():
                        await self._process(events)
                    else:
                        await asyncio.sleep(0.05)  # stopping: leave them un-acked for the next owner
            except Exception as exc:
                # faust would log this and carry on with a dead agent: nothing consumed, nothing
                # committed, the process alive. run() raises it instead, so the worker exits.
                self._agent_error = exc
                raise
            finally:
                self._agent_done.set()

        app.agent(topic, name="eventweir-pipeline")(eventweir_pipeline)
        app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]  # faust's stubs want sync
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]

    async def _on_assigned(self, app, assigned, **kwargs) -> None:
        self.assigned = {TopicPartition(tp.topic, tp.partition) for tp in assigned if tp.topic in self._sources}
        self.joined = True
        metrics.REBALANCES.labels("assigned").inc()
        metrics.ASSIGNED_PARTITIONS.set(len(self.assigned))

    async def _on_revoked(self, app, revoked, **kwargs) -> None:
        metrics.REBALANCES.labels("revoked").inc()
        self.assigned -= {TopicPartition(tp.topic, tp.partition) for tp in revoked}
        metrics.ASSIGNED_PARTITIONS.set(len(self.assigned))

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        outputs = await open_outputs(self.config, self.waitingroom)
        self.producer, self.dead_letters, self.targets = outputs.producer, outputs.dead_letters, outputs.targets
        for target in self.targets.values():
            await target.start()
        self._table_loaders = await start_tables(self.config, self.pipeline)  # joins see every row from the start
        await self.app.start()

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> None:
        try:
            await self.start()
            watcher = asyncio.create_task(self._watch())
            stopped = asyncio.create_task(self._stop.wait())
            agent_ended = asyncio.create_task(self._agent_done.wait())
            try:
                await asyncio.wait({stopped, agent_ended}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (watcher, stopped, agent_ended):
                    task.cancel()
                await asyncio.gather(watcher, stopped, agent_ended, return_exceptions=True)
            if not self._stop.is_set():
                raise RuntimeError(
                    f"the faust agent stopped ({self._agent_error!r}): nothing is consumed any more, so "
                    "the worker exits; the last committed offsets are where it resumes once restarted"
                ) from self._agent_error
        finally:
            await self.shutdown()

    async def _watch(self) -> None:
        """Committed offsets and lag for stats, metrics and /readyz, every commit interval."""
        while True:
            await asyncio.sleep(self.config.consumer.commit_interval_ms / 1000)
            self._update_offsets()

    def _update_offsets(self) -> None:
        consumer = self.app.consumer
        committed = getattr(consumer, "_committed_offset", {})
        for tp, offset in list(committed.items()):
            if tp.topic in self._sources and offset is not None:
                key = TopicPartition(tp.topic, tp.partition)
                self.stats.committed[key] = offset
                metrics.COMMITTED_OFFSET.labels(tp.topic, str(tp.partition)).set(offset)
        lag = {}
        for tp in self.assigned:
            high = consumer.highwater(tp) if hasattr(consumer, "highwater") else None
            position = self.stats.committed.get(tp)
            if high is not None and position is not None:
                lag[tp] = max(0, high - position)
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag[tp])
        self.stats.lag = lag
        metrics.READY.set(1 if self.ready[0] else 0)
        export_rule_engine(getattr(self.pipeline, "router", None))
        export_routed(self.pipeline)
        self._tombstones.export(self.pipeline)

    async def shutdown(self) -> None:
        grace = self.config.runtime.shutdown_grace_s
        deadline = time.monotonic() + grace
        if self.app.started:
            try:  # acked events are committed now, not at the next commit interval
                await asyncio.wait_for(self.app.consumer.commit(), max(0.5, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - a failed final commit means a re-read, not a loss
                log.warning("final commit failed (%s); uncommitted events will be read again", exc)
            self._update_offsets()
            try:
                await asyncio.wait_for(self.app.stop(), max(0.5, deadline - time.monotonic()))
            except TimeoutError:
                log.error("faust app did not stop within the grace period")
        for loader in self._table_loaders:
            await loader.stop()
        await close_stages(self.pipeline)
        await close_outputs(self.targets, self.dead_letters, self.producer)
        self.producer = None
        metrics.READY.set(0)
        log.info("faust worker stopped: consumed %d, committed %s", self.stats.consumed,
                 {f"{tp.topic}[{tp.partition}]": o for tp, o in self.stats.committed.items()})

    # --- one batch -----------------------------------------------------------------------------------
    async def _process(self, events: Sequence[Any]) -> None:
        started = time.perf_counter()
        records = records_from_events(events)
        by_topic = group_by_topic(records)
        batch = _Batch()
        tickets: dict[tuple[str, int], _BatchTicket] = {}
        for record in records:
            tp = (record.topic, record.partition)
            ticket = tickets.get(tp)
            if ticket is None:
                ticket = tickets[tp] = batch.ticket(record.offset + 1)
            ticket.end_offset = record.offset + 1
        for topic, recs in by_topic.items():
            metrics.RECORDS_IN.labels(topic).inc(len(recs))
        result = await self.pipeline.run_async(by_topic) if self._pipeline_is_async else self.pipeline.run(by_topic)
        dispatch(result, tickets, self.targets, self.dead_letters)
        for ticket in tickets.values():
            ticket.release()
        count_batch(self.stats, result, len(records), started)
        # faust acks the batch when this returns: only once every output is acknowledged
        await batch.settled.wait()

    # --- health ----------------------------------------------------------------------------------------
    @property
    def ready(self) -> tuple[bool, str]:
        return readiness(stopping=self.stopping, joined=self.joined, lag=self.stats.lag,
                         ready_max_lag=self.config.runtime.ready_max_lag, partitions=len(self.assigned),
                         runtime="faust")
