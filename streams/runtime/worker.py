"""The worker: consume batches, run the pipeline, hand deliveries to targets, commit safely.

One worker is one consumer-group member. The loop never awaits a target: targets acknowledge
asynchronously and settle the batch's tickets; a separate tick commits whatever the watermarks
allow. A target over its in-flight bound pauses only the partitions feeding it.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from processors.core import TopicRecords
from streams import metrics
from streams.config import Config
from streams.kafka.fastpath import fetch_records
from streams.kafka.producer import BatchProducer, make_producer
from streams.runtime.offsets import Watermarks
from streams.runtime.topology import build_pipeline, build_targets
from streams.targets.base import RecordChunk
from streams.targets.deadletter import DeadLetterWriter

log = logging.getLogger(__name__)
_partition = attrgetter("partition")
_topic_partition = attrgetter("topic", "partition")


def _partition_runs(records: list, tickets: dict) -> list[tuple]:
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


# A stall this long (every partition waiting on a target) also pauses them in the consumer, whose
# polls then keep the worker in its group: well under the default max_poll_interval of 300 s.
STALL_HARD_PAUSE_S = 5.0

# aiokafka's ConsumerRecord already carries every field of processors.core.SourceRecord, but
# names the timestamp `timestamp`. One alias lets consumed records flow into the processors as
# they are, instead of copying every record (a copy cost as much as parsing its JSON).
if not hasattr(ConsumerRecord, "timestamp_ms"):
    ConsumerRecord.timestamp_ms = property(lambda record: record.timestamp)


def tune_gc() -> None:
    """Garbage-collector settings for batch processing, applied once start-up is done.

    Compiled rules, validators and tables live for the whole run: keep them out of every GC pass.
    A batch allocates tens of thousands of short-lived objects (parsed JSON); with the default
    gen-0 threshold of 700 the collector runs dozens of times per batch, costing a third of the
    per-event time. A higher threshold collects as often per batch as the default does per event.

    The threshold counts allocations net of frees, so it must sit above the objects the worker
    keeps alive in normal operation: deliveries waiting for their acks (with their records and
    target items) are young objects, 100-250k of them in tests/bench/routing.py. At 50,000 every
    gen-0 pass walked that whole in-flight set, found nothing (acks free it by refcount), and ran
    14 times per 200k events: ~12% of the worker's CPU. Above it, a pass runs only when objects
    accumulate (cyclic garbage, growing state), which is what it is for.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(300_000, 20, 100)


MALLOC_KEEP_BYTES = 256 << 20


def tune_malloc() -> bool:
    """Keep freed memory for reuse instead of handing it back to the kernel (glibc only).

    Produce requests and fetch responses are megabytes each. glibc serves such blocks with fresh
    mmap()s, or trims the freed heap top back to the kernel, so every request's buffers are new
    pages: a page fault and a zeroed page per 4 KB, several times per produced byte (aiokafka
    copies a request as it encodes it): encoding a 3 MB produce request cost 0.6 µs per 400-byte
    record, 0.2 µs with this. Freed blocks are kept up to MALLOC_KEEP_BYTES; a worker's memory
    settles at its peak batch working set instead of going up and down with every request.
    Returns False where there is no glibc (musl, macOS): nothing changes there.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    # 32 MB is glibc's largest mmap threshold: blocks up to it come from the reusable heap
    return bool(mallopt(m_trim_threshold, MALLOC_KEEP_BYTES)) and bool(mallopt(m_mmap_threshold, 32 << 20))


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


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: Worker):
        self.worker = worker

    async def on_partitions_revoked(self, revoked):
        await self.worker._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned):
        await self.worker._on_assigned(set(assigned))


def make_consumer(config: Config) -> AIOKafkaConsumer:
    k, c = config.kafka, config.consumer
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
        self.dead_letters: DeadLetterWriter | None = None
        self.targets: dict = {}
        self.control = None  # a streams.runtime.reload.RuleReloader when routing.control_topic is set
        self.assigned: set[TopicPartition] = set()
        self.joined = False  # the first rebalance has completed (possibly with no partitions)
        # Back-pressure pauses a partition by leaving it out of getmany(): its fetched records
        # stay buffered in the consumer. consumer.pause() would drop them, to be fetched again.
        self.paused: set[TopicPartition] = set()
        self._hard_paused: set[TopicPartition] = set()  # also paused in the consumer: a long stall
        self._paused_since = 0.0
        self.positions: dict[TopicPartition, int] = {}  # next offset to fetch, for lag
        self._saturated: set[str] = set()
        self._over_total = False  # runtime.max_in_flight_total reached, not yet relieved
        self._stop = asyncio.Event()
        self._background: list[asyncio.Task] = []
        self._bus = None
        self._bus_sends: set[asyncio.Task] = set()
        self._table_loaders: list = []
        # (source topic, state store, changelog topic) of the stateful enrichment stages
        self._stores: list[tuple[str, object, str]] = []
        self._changelog_queue: asyncio.Queue | None = None
        self._last_commit = 0.0

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self.producer = make_producer(self.config)
        await self.producer.start()
        batch_producer = self.producer_batches = BatchProducer(self.producer)
        self.dead_letters = DeadLetterWriter(self.config.dead_letter.topic, batch_producer)
        await self.dead_letters.start()
        self.targets = build_targets(self.config, batch_producer, self.dead_letters, self.waitingroom)
        if self.config.bus.topic:
            self._bus = batch_producer
            await batch_producer.partitions(self.config.bus.topic)
        for target in self.targets.values():
            await self.start_target(target)
        await self._start_enrichment_state()
        if self.config.routing.control_topic:
            from streams.runtime.reload import RuleReloader

            self.control = RuleReloader(self, batch_producer)
            await self.control.start()  # rules from the control topic apply before the first fetch
        self.consumer = make_consumer(self.config)
        await self.consumer.start()
        self.consumer.subscribe(self.config.source_topics, listener=_Rebalance(self))
        self._background.append(asyncio.create_task(self._watch_loop_lag(), name="loop-lag"))
        tune_gc()
        tune_malloc()

    async def _start_enrichment_state(self) -> None:
        """Reference tables are read whole before the first fetch (joins must not miss rows that
        exist); stateful stages get their changelog topics, restored on assignment."""
        from streams.kafka.changelog import ensure_changelog_topic
        from streams.runtime.enrichment import changelog_name, start_tables, state_stores

        bootstrap = self.config.kafka.bootstrap_servers
        self._table_loaders = await start_tables(self.config, self.pipeline)
        for topic, chain in getattr(self.pipeline, "chains", {}).items():
            for store in state_stores(chain.stages):
                changelog = changelog_name(self.config, topic, store.name)
                partitions = await self.producer.partitions_for(topic)
                await ensure_changelog_topic(bootstrap, changelog, max(1, len(partitions or ())))
                await self.producer_batches.partitions(changelog)
                self._stores.append((topic, store, changelog))
        if self._stores:
            self._changelog_queue = asyncio.Queue()
            self._background.append(asyncio.create_task(self._write_changelogs(), name="changelogs"))

    def _queue_state_changes(self, tickets: dict) -> None:
        """Hand this batch's state changes to the changelog writer; each holds its partition's
        ticket, so offsets are committed only once the state they produced is durable."""
        for topic, store, changelog in self._stores:
            by_partition: dict[int, list] = defaultdict(list)
            for partition, key, value in store.changes():
                by_partition[partition].append((key.encode(), None if value is None else orjson.dumps(value), None))
            for partition, records in by_partition.items():
                ticket = tickets.get(TopicPartition(topic, partition))
                if ticket is not None:
                    ticket.add(1)
                self._changelog_queue.put_nowait((changelog, partition, records, ticket, store.name))

    async def _write_changelogs(self) -> None:
        """One writer, in batch order: a key's changes reach the changelog in the order they happened."""
        while True:
            changelog, partition, records, ticket, store = await self._changelog_queue.get()
            try:
                sent = await self.producer_batches.send_to_partition(changelog, partition, records)
                await asyncio.gather(*(future for future, _ in sent))
            except Exception:
                # the ticket stays held: this partition's offsets stop advancing, so after a restart
                # its events are processed again and the state rebuilt, rather than lost
                log.exception("could not write %d state changes to %s[%d]; holding the partition's commits "
                              "(restart the worker once the topic is writable)", len(records), changelog, partition)
                metrics.STATE_CHANGES.labels(store, "failed").inc(len(records))
                continue
            metrics.STATE_CHANGES.labels(store, "written").inc(len(records))
            if ticket is not None:
                ticket.done(1)

    async def start_target(self, target) -> None:
        """Start one target (at start-up, or when a rule reload adds it), wired to the worker."""
        if target.dead_letter_topic:
            await self.producer_batches.partitions(target.dead_letter_topic)  # fail now if it is missing
        if self._bus is not None and hasattr(target, "on_object"):
            target.on_object = self.publish_to_bus  # sinks that announce what they wrote (the S3 lake)
        await target.start()

    def publish_to_bus(self, event: dict) -> None:
        """Produce one of eventweir's own events (an envelope) to the bus topic, in the background."""
        import orjson

        async def send() -> None:
            try:
                sent, _ = await self._bus.send(self.config.bus.topic, [(None, orjson.dumps(event), None)])
                await asyncio.gather(*(future for future, _ in sent))
            except Exception:
                log.exception("could not publish %s event to the bus topic", event.get("detail-type"))

        task = asyncio.create_task(send())
        self._bus_sends.add(task)
        task.add_done_callback(self._bus_sends.discard)

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
            await self._drain(None, max(0.1, deadline - time.monotonic()))
            await self._commit(force=True)
            try:
                await asyncio.wait_for(self.consumer.stop(), max(0.5, deadline - time.monotonic()))
            except TimeoutError:
                log.error("consumer did not leave the group within the grace period")
        if self._bus_sends:
            await asyncio.wait(self._bus_sends, timeout=max(0.1, deadline - time.monotonic()))
        for loader in self._table_loaders:
            await loader.stop()
        from streams.runtime.enrichment import close_stages

        await close_stages(self.pipeline)
        if self.control is not None:
            await self.control.close()
        for target in self.targets.values():
            await target.close()
        if self.dead_letters:
            await self.dead_letters.close()
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
        metrics.READY.set(0)
        log.info("worker stopped: consumed %d, committed %s", self.stats.consumed,
                 {f"{tp.topic}[{tp.partition}]": o for tp, o in self.stats.committed.items()})

    # --- the loop ----------------------------------------------------------------------------
    async def _loop(self) -> None:
        c = self.config.consumer
        # commits run beside the fetch loop, so a slow commit round trip never stalls fetching
        self._background.append(asyncio.create_task(self._commit_periodically(), name="committer"))
        while not self._stop.is_set():
            if not self.paused:
                batch = await self.consumer.getmany(timeout_ms=c.fetch_timeout_ms, max_records=c.max_batch_records)
            else:
                fetchable = self.assigned - self.paused
                if fetchable:
                    batch = await self.consumer.getmany(*fetchable, timeout_ms=c.fetch_timeout_ms,
                                                        max_records=c.max_batch_records)
                else:
                    await self._wait_for_relief(c.fetch_timeout_ms / 1000)
                    batch = None
            if batch and not self._stop.is_set():
                if self.pipeline_is_async:
                    await self._process_async(batch)
                else:
                    self._process(batch)
            self._apply_backpressure()

    async def _wait_for_relief(self, timeout: float) -> None:
        """Every partition is paused: wait (up to `timeout`) for a target to drain. A stall longer
        than STALL_HARD_PAUSE_S pauses the partitions in the consumer too and polls it, so the
        group does not take a worker that waits on a sink outage for idle (max_poll_interval)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            await asyncio.sleep(0.002)
            self._apply_backpressure()
            if not self.paused or self.assigned - self.paused:
                return
        if time.monotonic() - self._paused_since > STALL_HARD_PAUSE_S:
            hard = self.paused - self._hard_paused
            if hard:
                self.consumer.pause(*hard)
                self._hard_paused |= hard
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
        # fan deliveries out, tagged with their partition's ticket
        per_target: dict[str, list] = defaultdict(list)
        last_record, ticket = None, None
        for delivery in result.deliveries:
            record = delivery.record
            if record is not last_record:  # fan-out repeats a record; batches repeat a partition
                last_record, ticket = record, tickets[(record.topic, record.partition)]
            per_target[delivery.target].append((delivery, ticket))
        for name, items in per_target.items():
            self.targets[name].submit(items)
        if result.plain:
            self._dispatch_plain(result, tickets)
        if result.failures:
            self.dead_letters.write_failures(
                [(f, tickets[(f.record.topic, f.record.partition)]) for f in result.failures]
            )
        if self._stores:
            self._queue_state_changes(tickets)
        for ticket in tickets.values():
            ticket.release()
        stats = self.stats
        stats.consumed += count
        stats.delivered += result.delivery_count if result.plain else len(result.deliveries)
        stats.dead_lettered += len(result.failures)
        for rule, n in result.matched.items():
            stats.matched[rule] += n
            metrics.RULE_MATCHES.labels(rule).inc(n)
        metrics.BATCH_SIZE.observe(count)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    def _dispatch_plain(self, result, tickets: dict) -> None:
        """Each plain rule's records to each of its targets, with the runs of records that share
        a partition (and so a ticket): the records of a batch come partition by partition."""
        for rule, matches in result.plain.items():
            if matches.runs is not None:  # counted while routing (processors.core.TopicRecords)
                runs = [(tickets[tp], n, tp) for tp, n in matches.runs]
            else:
                runs = _partition_runs(matches.records, tickets)
            for name in result.plain_targets[rule]:
                self.targets[name].submit_records(
                    RecordChunk.of(rule, matches.records, matches.keys, matches.values, runs))

    # --- back-pressure -------------------------------------------------------------------------
    def _apply_backpressure(self) -> None:
        for name, target in self.targets.items():
            if target.saturated:
                self._saturated.add(name)
            elif name in self._saturated and target.relieved:
                self._saturated.discard(name)
        # the per-target bound alone would let memory grow with the number of targets
        total, limit = sum(t.in_flight for t in self.targets.values()), self.config.runtime.max_in_flight_total
        if total >= limit:
            self._over_total = True
        elif self._over_total and total <= limit // 2:
            self._over_total = False
        want: set[TopicPartition] = set(self.assigned) if self._over_total else set()
        for name in self._saturated:
            for topic, partition in self.targets[name].feeding_partitions():
                tp = TopicPartition(topic, partition)
                if tp in self.assigned:
                    want.add(tp)
        if want == self.paused:
            return
        to_pause, to_resume = want - self.paused, self.paused - want
        if to_pause and self._over_total:
            log.warning("back-pressure: pausing every partition (%d deliveries in flight over all targets, "
                        "runtime.max_in_flight_total is %d)", total, limit)
        elif to_pause:
            log.warning("back-pressure: pausing %s (targets over their in-flight bound: %s)",
                        sorted(to_pause), sorted(self._saturated))
        if to_resume & self._hard_paused:
            self.consumer.resume(*(to_resume & self._hard_paused))
            self._hard_paused -= to_resume
        if not self.paused:
            self._paused_since = time.monotonic()
        self.paused = want
        metrics.PAUSED_PARTITIONS.set(len(want))

    # --- offsets --------------------------------------------------------------------------------
    async def _commit(self, tps=None, force: bool = False) -> None:
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

    # --- rebalance --------------------------------------------------------------------------------
    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        metrics.REBALANCES.labels("revoked").inc()
        if not revoked:
            return
        await self._flush_targets(self.config.runtime.shutdown_grace_s)
        await self._drain(revoked, self.config.runtime.shutdown_grace_s)
        await self._commit(revoked)
        for target in self.targets.values():
            target.revoked({(tp.topic, tp.partition) for tp in revoked})
        for topic, store, _ in self._stores:
            for tp in revoked:
                if tp.topic == topic:
                    store.drop(tp.partition)  # its changelog holds it for the next owner
        for tp in revoked:
            self.watermarks.revoke(tp)
            self.stats.lag.pop(tp, None)
            self.positions.pop(tp, None)
        self.assigned -= revoked
        self.paused -= revoked
        self._hard_paused -= revoked
        metrics.ASSIGNED_PARTITIONS.set(len(self.assigned))
        log.info("gave up %d partitions after committing them", len(revoked))

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        metrics.REBALANCES.labels("assigned").inc()
        if self._stores:
            from streams.kafka.changelog import restore_state

            # No record of these partitions may be processed (or skipped as not ours) before their
            # state is back: keep them paused in the consumer while their changelogs are read.
            self.consumer.pause(*assigned)
            try:
                for topic, store, changelog in self._stores:
                    partitions = sorted(tp.partition for tp in assigned if tp.topic == topic)
                    if partitions:
                        await restore_state(store, self.config.kafka.bootstrap_servers, changelog, partitions)
                        log.info("restored %s state of %s%s from %s", store.name, topic, partitions, changelog)
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
        if self.stopping:
            return False, "stopping"
        if not self.joined:
            return False, "waiting for the consumer group to assign partitions"
        limit = self.config.runtime.ready_max_lag
        behind = {tp: n for tp, n in self.stats.lag.items() if limit is not None and n > limit}
        if behind:
            worst = max(behind, key=behind.get)
            return False, f"catching up: {worst.topic}[{worst.partition}] is {behind[worst]} records behind"
        if not self.assigned:
            return True, "ready (idle: no partitions assigned; more replicas than partitions?)"
        return True, f"ready: {len(self.assigned)} partitions"

    async def _watch_loop_lag(self) -> None:
        interval = 0.25
        while True:
            before = time.monotonic()
            await asyncio.sleep(interval)
            metrics.LOOP_LAG.set(max(0.0, time.monotonic() - before - interval))
