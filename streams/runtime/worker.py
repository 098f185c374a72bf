"""The worker: consume batches, run the pipeline, hand deliveries to targets, commit safely.

One worker is one consumer-group member. The loop never awaits a target: targets acknowledge
asynchronously and settle the batch's tickets; a separate tick commits whatever the watermarks
allow. A target over its in-flight bound pauses only the partitions feeding it (backpressure.py).
This module is the lifecycle, the loop, commits and rebalances; dispatch.py hands results to the
targets, state.py keeps stateful stages' changelogs, tuning.py sets up the process.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from processors.core import Failure, SourceRecord, TopicRecords
from streams import metrics
from streams.config import Config
from streams.kafka.admin import ensure_topics
from streams.kafka.fastpath import consumer_record, fetch_records
from streams.kafka.producer import BatchProducer
from streams.runtime.archives import ARCHIVE_RULE_PREFIX
from streams.runtime.backpressure import Backpressure
from streams.runtime.buses import all_buses
from streams.runtime.discovery import SchemaDiscovery
from streams.runtime.dispatch import (
    SkippedTombstones,
    WindowRecords,
    WorkerStats,
    count_batch,
    dispatch,
    export_routed,
    export_rule_engine,
    readiness,
)
from streams.runtime.enrichment import close_stages, start_tables
from streams.runtime.offsets import Watermarks
from streams.runtime.outputs import close_outputs, open_outputs
from streams.runtime.reload import RuleReloader
from streams.runtime.sequence_metrics import SequenceRecords
from streams.runtime.state import StateStores
from streams.runtime.topology import build_pipeline, bus_topic_table
from streams.runtime.tuning import tune_gc, tune_malloc
from streams.targets.deadletter import DeadLetterWriter
from streams.targets.hops import HOPS_HEADER, too_many_hops

log = logging.getLogger(__name__)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: Worker):
        self.worker = worker

    async def on_partitions_revoked(self, revoked):
        await self.worker._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned):
        await self.worker._on_assigned(set(assigned))


def make_consumer(config: Config) -> AIOKafkaConsumer:
    k, c = config.kafka, config.consumer
    consumer_record.install()  # its records go to the processors as they are
    fetch_records.install()
    return AIOKafkaConsumer(
        **k.client_options(),
        group_id=k.group_id,
        enable_auto_commit=False,
        auto_offset_reset=c.auto_offset_reset,
        max_partition_fetch_bytes=c.max_partition_fetch_bytes,
        fetch_max_bytes=c.fetch_max_bytes,
        session_timeout_ms=c.session_timeout_ms,
        heartbeat_interval_ms=c.heartbeat_interval_ms,
        max_poll_interval_ms=c.max_poll_interval_ms,
    )


class Worker:
    def __init__(self, config: Config, pipeline=None, waitingroom=None):
        self.config = config
        self.waitingroom = waitingroom  # the waiting-room service, for `waitingroom` targets
        self.pipeline = pipeline or build_pipeline(config)
        self.pipeline_is_async = getattr(self.pipeline, "is_async", False)
        self.watermarks = Watermarks()
        self.stats = WorkerStats()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer = None
        self.producer_batches: BatchProducer | None = None
        self.dead_letters: DeadLetterWriter | None = None
        self.targets: dict = {}
        self.control: RuleReloader | None = None  # when routing.control_topic is set
        self.assigned: set[TopicPartition] = set()
        self.joined = False  # the first rebalance has completed (possibly with no partitions)
        self.backpressure = Backpressure(config.runtime.max_in_flight_total)
        self.state = StateStores(config)
        self.discovery = SchemaDiscovery(config, getattr(self.pipeline, "discovery", {}))
        self._tombstones = SkippedTombstones()
        self._windows = WindowRecords()
        self._sequences = SequenceRecords()
        self.positions: dict[TopicPartition, int] = {}  # next offset to fetch, for lag
        self._stop = asyncio.Event()
        self._background: list[asyncio.Task] = []
        self._bus: BatchProducer | None = None
        self._bus_sends: set[asyncio.Task] = set()
        self._table_loaders: list = []
        self._last_commit = 0.0
        self._bus_topics: set[str] = set()  # the custom buses' topics this worker is subscribed to
        # bus name -> topic, what `bus` targets look up at each write; the rule reloader keeps it current
        self.bus_topics: dict[str, str] = bus_topic_table(all_buses(config))

    @property
    def paused(self) -> set[TopicPartition]:
        """Partitions left out of fetching by back-pressure."""
        return self.backpressure.paused

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        outputs = await open_outputs(self.config, self.waitingroom, self.bus_topics)
        self.producer, self.dead_letters, self.targets = outputs.producer, outputs.dead_letters, outputs.targets
        batch_producer = self.producer_batches = outputs.batches
        if self.config.bus.topic:
            self._bus = batch_producer
            await batch_producer.partitions(self.config.bus.topic)
        for target in self.targets.values():
            await self.start_target(target)
        await self._start_enrichment_state()
        if self.config.routing.control_topic:
            self.control = control = RuleReloader(self, batch_producer)
            await control.start()  # rules from the control topic apply before the first fetch
        bus_topics = self.control.bus_topics if self.control else set(getattr(self.pipeline, "bus_routers", {}))
        if bus_topics:  # a bus's topic is made with the bus; one named in the config file may not exist yet
            await ensure_topics(self.config.kafka.bootstrap_servers,
                                dict.fromkeys(bus_topics, self.config.bus.topic_partitions))
        self.consumer = consumer = make_consumer(self.config)
        await consumer.start()
        self.follow_bus_topics(bus_topics)
        self._background.append(asyncio.create_task(self._watch_loop_lag(), name="loop-lag"))
        tune_gc()
        tune_malloc()

    async def _start_enrichment_state(self) -> None:
        """Reference tables are read whole before the first fetch (joins must not miss rows that
        exist); stateful stages get their changelog topics, restored on assignment."""
        assert self.producer_batches is not None
        self._table_loaders = await start_tables(self.config, self.pipeline)
        await self.state.start(self.pipeline, self.producer, self.producer_batches)
        await self.discovery.start()

    async def start_target(self, target) -> None:
        """Start one target (at start-up, or when a rule reload adds it), wired to the worker."""
        assert self.producer_batches is not None
        if target.dead_letter_topic:
            await self.producer_batches.partitions(target.dead_letter_topic)  # fail now if it is missing
        # sinks that announce what they wrote (the S3 lake); not an archive's: its objects are its storage,
        # and announcing them on the bus it archives would archive the announcements too
        if self._bus is not None and hasattr(target, "on_object") and not target.id.startswith(ARCHIVE_RULE_PREFIX):
            target.on_object = self.publish_to_bus
        await target.start()

    def follow_bus_topics(self, topics: set[str]) -> None:
        """Consume the source topics and `topics` (the custom buses'): a bus made or deleted through
        the API is picked up by re-subscribing, which rebalances the group."""
        if self.consumer is None or (topics == self._bus_topics and self.consumer.subscription()):
            return
        self._bus_topics = set(topics)
        self.consumer.subscribe(sorted({*self.config.source_topics, *topics}), listener=_Rebalance(self))

    def swap_routes(self, router, targets: dict, bus_routers: dict | None = None, bus_stages: dict | None = None) -> None:
        """Route with `router` (and each custom bus's topic with its router in `bus_routers`) to
        `targets` from the next batch on (a rule reload): one synchronous step, so no batch sees
        the new rules with the old targets. `bus_stages`: the chains of bus topics new to the pipeline."""
        export_routed(self.pipeline)  # the old routers' counts, before they go
        self.pipeline.router = router
        if bus_routers is not None:
            self.pipeline.bus_routers = bus_routers
            for topic, stages in (bus_stages or {}).items():
                self.pipeline.add_topic(topic, stages)
        self.targets = targets
        self.backpressure.keep_targets(set(targets))

    def publish_to_bus(self, event: dict, hops: int = 1) -> asyncio.Task:
        """Produce one of eventweir's own events (an envelope) to the bus topic, with its hop count
        (streams/targets/hops.py). The task ends when the broker acknowledged it, or raises: the
        caller (the S3 lake) holds its records' offsets until then and retries, so these events are
        at-least-once like every other output. Past routing.max_hops the event is dead-lettered
        instead, and the task ends when the dead letter is acknowledged."""
        bus, topic = self._bus, self.config.bus.topic
        assert bus is not None and topic is not None
        max_hops = self.config.routing.max_hops

        async def send() -> None:
            value = orjson.dumps(event)
            if hops > max_hops:
                await self._dead_letter_own_event(event, value, hops, max_hops)
                return
            sent, _ = await bus.send(topic, [(None, value, [(HOPS_HEADER, b"%d" % hops)])])
            await asyncio.gather(*(future for future, _ in sent))

        task = asyncio.create_task(send())
        self._bus_sends.add(task)
        task.add_done_callback(self._bus_sends.discard)
        return task

    async def _dead_letter_own_event(self, event: dict, value: bytes, hops: int, max_hops: int) -> None:
        """An event of eventweir's own that would pass routing.max_hops: to the dead-letter topic,
        named after the records it announces (the lake's object: its topic, partition, first offset)."""
        assert self.dead_letters is not None
        offsets = (event.get("detail") or {}).get("offsets") or {}
        record = SourceRecord(offsets.get("topic", self.config.bus.topic or ""), offsets.get("partition", -1),
                              offsets.get("first", -1), int(time.time() * 1000), None, value)
        what = f"the {event.get('source')} `{event.get('detail-type')}` event of {event.get('resources')}"
        failure = Failure(record, "publish", "MaxHopsExceeded", too_many_hops(hops - 1, max_hops, what))
        written = asyncio.Event()
        self.dead_letters.write_failures([(failure, None)], on_done=written.set)
        await written.wait()

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> None:
        """Start, run until `request_stop()`, then drain, commit and leave the group."""
        try:
            await self.start()
            await self._loop()
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        grace = self.config.runtime.shutdown_grace_s
        deadline = time.monotonic() + grace
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.consumer is not None and self.consumer._closed is False:
            await self._flush_targets(max(0.1, deadline - time.monotonic()))
            # the changelog writer runs until the group is left: the open windows' (and every stateful
            # stage's) state reaches its changelog with the last batches, so the commit covers
            # them and a restart resumes them with nothing to replay or emit again
            self.state.flush()
            await self._drain(None, max(0.1, deadline - time.monotonic()))
            await self._commit(force=True)
            try:  # leaving the group revokes the partitions, which drains them through the writer too
                await asyncio.wait_for(self.consumer.stop(), max(0.5, deadline - time.monotonic()))
            except TimeoutError:
                log.error("consumer did not leave the group within the grace period")
        await self.state.close()
        if self._bus_sends:
            await asyncio.wait(self._bus_sends, timeout=max(0.1, deadline - time.monotonic()))
        await self.discovery.close()
        for loader in self._table_loaders:
            await loader.stop()
        await close_stages(self.pipeline)
        if self.control is not None:
            await self.control.close()
        await close_outputs(self.targets, self.dead_letters, self.producer)
        self.producer = None
        metrics.READY.set(0)
        log.info("worker stopped: consumed %d, committed %s", self.stats.consumed,
                 {f"{tp.topic}[{tp.partition}]": o for tp, o in self.stats.committed.items()})

    # --- the loop ----------------------------------------------------------------------------
    async def _loop(self) -> None:
        c, consumer = self.config.consumer, self.consumer
        assert consumer is not None
        # commits run beside the fetch loop, so a slow commit round trip never stalls fetching
        self._background.append(asyncio.create_task(self._commit_periodically(), name="committer"))
        while not self._stop.is_set():
            paused = self.backpressure.paused
            if not paused:
                batch = await consumer.getmany(timeout_ms=c.fetch_timeout_ms, max_records=c.max_batch_records)
            else:
                fetchable = self.assigned - paused
                if fetchable:
                    batch = await consumer.getmany(*fetchable, timeout_ms=c.fetch_timeout_ms,
                                                   max_records=c.max_batch_records)
                else:
                    await self._wait_for_relief(c.fetch_timeout_ms / 1000)
                    batch = None
            if batch and not self._stop.is_set():
                if self.pipeline_is_async:
                    await self._process_async(batch)
                else:
                    self._process(batch)
            if self.state and self.state.due(caught_up=not batch):
                self.state.flush()
            self._apply_backpressure()

    def _apply_backpressure(self) -> None:
        self.backpressure.apply(self.targets, self.assigned, self.consumer)

    async def _wait_for_relief(self, timeout: float) -> None:
        """Every partition is paused: wait (up to `timeout`) for a target to drain. A long stall
        pauses the partitions in the consumer too and polls it, so the group does not take a
        worker that waits on a sink outage for idle (max_poll_interval)."""
        assert self.consumer is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            await asyncio.sleep(0.002)
            self._apply_backpressure()
            if not self.paused or self.assigned - self.paused:
                return
        hard = self.backpressure.stalled_too_long()
        if hard is not None:
            if hard:
                self.consumer.pause(*hard)
            await self.consumer.getmany(timeout_ms=0)

    async def _commit_periodically(self) -> None:
        every = self.config.consumer.commit_interval_ms / 1000
        while True:
            await asyncio.sleep(every)
            await self._commit()
            self._update_lag()

    def _process(self, batch: dict) -> None:
        opened = self._open(batch)
        if opened is not None:
            # plain rules' records go to their targets as they are, where the pipeline can collect them
            plain = getattr(self.pipeline, "collects_plain", False)
            result = self.pipeline.run(opened[0], plain=True) if plain else self.pipeline.run(opened[0])
            self._dispatch(result, *opened[1:])

    async def _process_async(self, batch: dict) -> None:
        """For pipelines with async stages (HTTP lookups): the loop awaits them, so fetching waits
        too, which is the back-pressure a slow lookup service should get."""
        opened = self._open(batch)
        if opened is not None:
            self._dispatch(await self.pipeline.run_async(opened[0]), *opened[1:])

    def _open(self, batch: dict):
        """(records by topic, a ticket per partition, count, start time), or None if none are ours."""
        started = time.perf_counter()
        by_topic: dict[str, TopicRecords] = defaultdict(TopicRecords)
        tickets = {}
        count = 0
        for tp, messages in batch.items():
            if tp not in self.assigned:
                continue  # revoked while in flight: its new owner reads it again
            tickets[tp] = self.watermarks.open(tp, messages[-1].offset + 1)
            self.positions[tp] = messages[-1].offset + 1
            records = by_topic[tp.topic]
            records += messages
            records.parts.append((tp, len(messages)))
            count += len(messages)
            metrics.RECORDS_IN.labels(tp.topic).inc(len(messages))
        if not count:
            return None
        return by_topic, tickets, count, started

    def _dispatch(self, result, tickets: dict, count: int, started: float) -> None:
        dispatch(result, tickets, self.targets, self.dead_letters)
        if self.state:
            self.state.hold(tickets)
        for ticket in tickets.values():
            ticket.release()
        count_batch(self.stats, result, count, started)

    # --- offsets --------------------------------------------------------------------------------
    async def _commit(self, tps=None, force: bool = False) -> None:
        assert self.consumer is not None
        self._last_commit = time.monotonic()
        offsets = self.watermarks.committable(tps)
        offsets = {tp: o for tp, o in offsets.items() if tp in self.assigned or force}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            log.warning("commit of %d partitions failed (%s); they will be retried or re-read", len(offsets), exc)
            return
        self.watermarks.mark_committed(offsets)
        self.stats.committed.update(offsets)
        self.state.committed(offsets)
        for tp, offset in offsets.items():
            metrics.COMMITTED_OFFSET.labels(tp.topic, str(tp.partition)).set(offset)

    async def _flush_targets(self, timeout: float) -> None:
        """Buffering targets (the S3 lake) write out what they hold; the others just settle."""
        if self.targets:
            results = await asyncio.gather(*(t.flush(timeout) for t in self.targets.values()), return_exceptions=True)
            for name, ok in zip(self.targets, results):
                if ok is not True:
                    log.warning("target %s did not flush within %.1fs (%s)", name, timeout, ok)

    async def _drain(self, tps, timeout: float) -> None:
        """Wait until every delivery derived from `tps` (None = all) is settled, up to `timeout`."""
        deadline = time.monotonic() + timeout
        while not self.watermarks.drained(tps):
            if time.monotonic() > deadline:
                log.warning("drain timed out after %.1fs; committing what is acknowledged", timeout)
                return
            await asyncio.sleep(0.01)

    def _update_lag(self) -> None:
        assert self.consumer is not None
        lag = {}
        for tp in self.assigned:
            high = self.consumer.highwater(tp)
            if high is None:
                continue
            position = self.positions.get(tp, self.stats.committed.get(tp))
            if position is None:
                continue
            lag[tp] = max(0, high - position)
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag[tp])
        self.stats.lag = lag
        metrics.READY.set(1 if self.ready[0] else 0)
        export_rule_engine(getattr(self.pipeline, "router", None))
        export_routed(self.pipeline)
        self._tombstones.export(self.pipeline)
        self._windows.export(self.pipeline)
        self._sequences.export(self.pipeline)

    # --- rebalance --------------------------------------------------------------------------------
    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        metrics.REBALANCES.labels("revoked").inc()
        if not revoked:
            return
        await self._flush_targets(self.config.runtime.shutdown_grace_s)
        self.state.flush()
        await self._drain(revoked, self.config.runtime.shutdown_grace_s)
        await self._commit(revoked)
        for target in self.targets.values():
            target.revoked({(tp.topic, tp.partition) for tp in revoked})
        self.state.drop(revoked)
        for tp in revoked:
            self.watermarks.revoke(tp)
            self.stats.lag.pop(tp, None)
            self.positions.pop(tp, None)
        self.assigned -= revoked
        self.backpressure.revoke(revoked)
        metrics.ASSIGNED_PARTITIONS.set(len(self.assigned))
        log.info("gave up %d partitions after committing them", len(revoked))

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        metrics.REBALANCES.labels("assigned").inc()
        if self.state:
            assert self.consumer is not None
            # No record of these partitions may be processed (or skipped as not ours) before their
            # state is back: keep them paused in the consumer while their changelogs are read.
            self.consumer.pause(*assigned)
            try:
                await self.state.restore(assigned)
            finally:
                self.consumer.resume(*assigned)
        for tp in assigned:
            self.watermarks.assign(tp)
        self.assigned = set(assigned)
        self.joined = True
        metrics.ASSIGNED_PARTITIONS.set(len(self.assigned))
        log.info("assigned %d partitions: %s", len(assigned), sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))

    # --- health -----------------------------------------------------------------------------------
    @property
    def ready(self) -> tuple[bool, str]:
        return readiness(stopping=self.stopping, joined=self.joined, lag=self.stats.lag,
                         ready_max_lag=self.config.runtime.ready_max_lag, partitions=len(self.assigned))

    async def _watch_loop_lag(self) -> None:
        interval = 0.25
        while True:
            before = time.monotonic()
            await asyncio.sleep(interval)
            metrics.LOOP_LAG.set(max(0.0, time.monotonic() - before - interval))
