"""Running replays (StartReplay): read an archive's time range, republish it to the bus, save progress.

Every worker runs a ReplayRunner; one of them runs a given replay. Which one is decided by a
lease on the control topic, kept simple: a worker takes an active replay that has no owner or
whose owner's lease has run out by writing the replay back with itself as owner, and renews
the lease with each progress write. If two take it at once, both writes land on the one
partition of the control topic in some order; the earlier owner reads the later write and
stops. A killed worker stops renewing; after `archives.replay_lease_s` another takes over from
the last position saved. Positions are saved only after every event before them was
acknowledged by the bus topic, so nothing is lost; what was sent after the last save is sent
again (duplicates are allowed, as with any at-least-once delivery).

An archive partition is replayed in offset order to the bus partition of the same number (modulo
the bus's partitions), so per-partition order is kept; its range is from the first offset at or
after EventStartTime (Kafka's offsets-for-times: an event's time in an archive is its record's
timestamp, when it was archived) to the first record at or after EventEndTime, or the
partition's end. A replayed event is a hop (streams/targets/hops.py): it goes with its archived
hop count plus one, and one already at routing.max_hops goes to the dead-letter topic instead
(MaxHopsExceeded), acknowledged before the position past it is saved, as the replayed ones are.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from processors.core import Failure
from streams import metrics
from streams.config import Config
from streams.kafka.producer import BatchProducer, make_producer
from streams.kafka.read import partitions_of
from streams.runtime.archives import ACTIVE, STATES, StoredArchive, StoredReplay, read_lines, shown_state, stamp
from streams.runtime.buses import all_buses
from streams.targets.deadletter import dead_letter_headers
from streams.targets.hops import HOPS_HEADER, hops_of, one_more_hop, too_many_hops
from streams.targets.s3.layout import parse_object_key, parse_time
from streams.targets.s3.objectstore import S3Store

log = logging.getLogger(__name__)


class Lost(Exception):
    """Another worker owns the replay now: this one stops without writing."""


class ReplayRunner:
    def __init__(self, config: Config, store, poll_s: float = 0.5):
        self.config = config
        self.settings = config.archives
        self.store = store  # streams.runtime.reload.ControlTopic
        self.id = uuid.uuid4().hex  # this process: a restarted worker is a new owner
        self.poll_s = poll_s
        self._tasks: dict[str, asyncio.Task] = {}
        self._loop: asyncio.Task | None = None
        self._producer: AIOKafkaProducer | None = None
        self._batches: BatchProducer  # set by start()

    async def start(self) -> None:
        self._producer = producer = make_producer(self.config)
        await producer.start()
        self._batches = BatchProducer(producer)
        self._loop = asyncio.create_task(self._watch(), name="replays")

    async def close(self) -> None:
        tasks = [t for t in (self._loop, *self._tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._producer is not None:
            await self._producer.stop()

    async def _watch(self) -> None:
        while True:
            now = time.time()
            counts = dict.fromkeys(STATES, 0)
            for replay in list(self.store.replays.values()):
                state = shown_state(replay, self.store.cancelled)
                counts[state] = counts.get(state, 0) + 1
                if replay.state not in ACTIVE or replay.name in self._tasks:
                    continue
                if replay.owner in (None, self.id) or replay.lease_until < now:
                    task = asyncio.create_task(self._run(replay.name), name=f"replay-{replay.name}")
                    self._tasks[replay.name] = task
                    task.add_done_callback(self._done)
            for state, n in counts.items():
                metrics.REPLAYS.labels(state).set(n)
            await asyncio.sleep(self.poll_s)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.pop(task.get_name().removeprefix("replay-"), None)

    async def _save(self, replay: StoredReplay, **changes) -> StoredReplay:
        current = self.store.replays.get(replay.name)  # the latest write on the control topic: the log's order decides
        if current is None or current.owner not in (None, self.id) and current.lease_until >= time.time():
            raise Lost  # deleted, or held by another worker (claimed after us, or before our claim was made)
        new = dataclasses.replace(replay, owner=self.id, lease_until=time.time() + self.settings.replay_lease_s,
                                  **changes)
        await self.store.put_replay(new)
        return new

    async def _run(self, name: str) -> None:
        replay = self.store.replays[name]
        try:
            replay = await self._save(replay)  # the claim
            await self._replay(replay)
        except Lost:
            log.info("replay %s: taken over by another worker", name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("replay %s failed", name)
            try:
                await self._save(self.store.replays[name], state="FAILED", ended=time.time(),
                                 reason=f"{type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - the log has the first error; the lease lets another retry
                log.exception("replay %s: could not save FAILED", name)

    async def _replay(self, replay: StoredReplay) -> None:
        archive = self.store.archives.get(replay.archive)
        if archive is None:
            await self._save(replay, state="FAILED", ended=time.time(), reason=f"Archive {replay.archive} was deleted.")
            return
        bus = all_buses(self.config, self.store.buses).get(replay.bus)
        if bus is None or bus.topic is None:
            await self._save(replay, state="FAILED", ended=time.time(), reason=f"Event bus {replay.bus} does not exist.")
            return
        if archive.prefix:
            await self._replay_lake(replay, archive, bus.topic)
            return
        consumer = AIOKafkaConsumer(**self.config.kafka.client_options(), group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest")  # a position retention removed: its next record
        await consumer.start()
        try:
            tps = [TopicPartition(archive.topic, p) for p in await partitions_of(consumer, archive.topic, 30)]
            if replay.state == "STARTING":
                if await self._cancelled(replay, self.settings.replay_start_delay_s):
                    return
                found = await consumer.offsets_for_times({tp: int(replay.start * 1000) for tp in tps})
                # none at or after the start (Tansu answers timestamp -1): nothing to replay there
                empty = tuple(tp.partition for tp, f in found.items() if f is None or f.timestamp < 0)
                positions = {tp.partition: f.offset for tp, f in found.items() if tp.partition not in empty}
                replay = await self._save(replay, state="RUNNING", positions=positions, done=empty)
            await self._send(replay, consumer, tps, bus.topic)
        finally:
            await consumer.stop()

    async def _cancelled(self, replay: StoredReplay, wait: float) -> bool:
        deadline = time.monotonic() + wait
        while True:
            if replay.name in self.store.cancelled:
                await self._save(replay, state="CANCELLED", ended=time.time())
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(min(0.2, wait))

    async def _produce(self, topic: str, partition: int, chunk: list[tuple]) -> list[tuple[asyncio.Future, list[int]]]:
        """Send `chunk` (emptied) to one partition, in order, as record batches."""
        if not chunk:
            return []
        sent = await self._batches.send_to_partition(topic, partition, list(chunk))
        chunk.clear()
        return sent

    async def _send(self, replay: StoredReplay, consumer: AIOKafkaConsumer, tps: list[TopicPartition],
                    bus_topic: str) -> None:
        """Republish from the saved positions until each partition reaches EventEndTime or its end.

        A partition's end is where a fetch finds nothing more, not an end offset asked before:
        some brokers (Tansu) answer ListOffsets with the first offset of the last record batch + 1."""
        assert self._producer is not None, "start() first"
        end_ms = int(replay.end * 1000)
        positions, done = dict(replay.positions), set(replay.done)
        todo = [tp for tp in tps if tp.partition not in done]
        consumer.assign(todo)
        for tp in todo:
            consumer.seek(tp, positions.get(tp.partition, 0))
        bus_partitions = await self._batches.partitions(bus_topic)
        pace = Pace(self.settings.replay_events_per_second)
        pending: list[tuple[asyncio.Future, list[int]]] = []
        dead: list[tuple[asyncio.Future, list[int]]] = []  # dead letters, acknowledged before a save as well
        max_hops = self.config.routing.max_hops
        last = replay.last_replayed
        saved_at = time.monotonic()
        while True:
            if todo:
                batch = await consumer.getmany(*todo, timeout_ms=200, max_records=500)
                for tp in todo:  # caught up: a fetch came back empty at or past the partition's high watermark
                    high = consumer.highwater(tp)
                    if tp not in batch and high is not None and await consumer.position(tp) >= high:
                        done.add(tp.partition)
                cut = False  # set when it is time to save: the rest of the batch is fetched again
                for tp, records in batch.items():
                    p = tp.partition
                    target = bus_partitions[p % len(bus_partitions)]
                    chunk: list[tuple] = []
                    for rec in records:
                        if cut:
                            consumer.seek(tp, rec.offset)
                            break
                        if rec.timestamp >= end_ms:
                            done.add(p)  # past the range
                            break
                        hops = hops_of(rec)
                        if hops >= max_hops:  # a replay is a hop too: past the limit, a dead letter
                            failure = Failure(rec, "replay", "MaxHopsExceeded", too_many_hops(
                                hops, max_hops, f"replay {replay.name} (to bus {replay.bus})"))
                            sent_dead, _ = await self._batches.send(
                                self.config.dead_letter.topic, [(rec.key, rec.value, dead_letter_headers(failure))])
                            dead += sent_dead
                        else:
                            chunk.append((rec.key, stamp(rec.value, replay.name), one_more_hop(rec, hops)))
                        positions[p] = rec.offset + 1
                        last = rec.timestamp / 1000
                        wait = pace.wait()
                        if wait:  # ahead of the rate: send what is taken, then wait
                            pending += await self._produce(bus_topic, target, chunk)
                            await asyncio.sleep(wait)
                        cut = time.monotonic() - saved_at >= self.settings.replay_progress_interval_s
                    pending += await self._produce(bus_topic, target, chunk)
                todo = [tp for tp in todo if tp.partition not in done]
                if todo and time.monotonic() - saved_at < self.settings.replay_progress_interval_s:
                    continue
            await asyncio.gather(*(f for f, _ in dead))  # dead letters: acknowledged too, not counted as replayed
            saved = await self._checkpoint(replay, pending, positions, last, done, finished=not todo)
            pending, dead = [], []
            saved_at = time.monotonic()
            if saved is None or not todo:
                return
            replay = saved

    async def _checkpoint(self, replay: StoredReplay, sent: list[tuple[asyncio.Future, list[int]]],
                          positions: dict[int, int], last: float | None, done: set[int],
                          finished: bool) -> StoredReplay | None:
        """Save the progress once the events `sent` are acknowledged; None when
        the replay was cancelled (and is saved CANCELLED)."""
        await asyncio.gather(*(f for f, _ in sent))  # acknowledged before the position that covers them is saved
        metrics.REPLAYED_EVENTS.inc(sum(len(indexes) for _, indexes in sent))
        if replay.name in self.store.cancelled:
            await self._save(replay, state="CANCELLED", ended=time.time(), positions=dict(positions),
                             last_replayed=last, done=tuple(sorted(done)))
            return None
        return await self._save(replay, positions=dict(positions), last_replayed=last, done=tuple(sorted(done)),
                                **({"state": "COMPLETED", "ended": time.time()} if finished else {}))

    async def _replay_lake(self, replay: StoredReplay, archive: StoredArchive, bus_topic: str) -> None:
        """Republish an archive in the S3 lake: per archive partition, its objects in offset order and
        their events in order, those whose `time` is in [EventStartTime, EventEndTime). A partition's
        position is how many of its archived events were handled; a partition is done at its last
        object. The lake keeps no Kafka headers: a replayed event makes its first hop here."""
        lake = self.config.archives.s3
        if lake is None:
            await self._save(replay, state="FAILED", ended=time.time(),
                             reason=f"Archive {archive.name} is in the S3 lake, and archives.s3 is not configured.")
            return
        store = await asyncio.to_thread(S3Store, lake.bucket, endpoint_url=lake.endpoint_url, region=lake.region)
        try:
            if replay.state == "STARTING":
                if await self._cancelled(replay, self.settings.replay_start_delay_s):
                    return
                replay = await self._save(replay, state="RUNNING")
            objects: dict[int, list[tuple[int, str, str]]] = {}
            for key in await asyncio.to_thread(store.keys, archive.prefix):
                parsed = parse_object_key(key)
                if parsed is not None:
                    objects.setdefault(parsed[1], []).append((parsed[2], key, parsed[3]))
            bus_partitions = await self._batches.partitions(bus_topic)
            start_ms, end_ms = replay.start * 1000, replay.end * 1000
            positions, done, last = dict(replay.positions), set(replay.done), replay.last_replayed
            pace, saved_at = Pace(self.settings.replay_events_per_second), time.monotonic()
            pending: list[tuple[asyncio.Future, list[int]]] = []
            for p in sorted(set(objects) - done):
                target, seen = bus_partitions[p % len(bus_partitions)], 0
                for _, key, ext in sorted(objects[p]):
                    lines = await asyncio.to_thread(read_lines, store, key, ext)
                    chunk: list[tuple] = []
                    for line in lines:
                        seen += 1
                        if seen <= positions.get(p, 0):
                            continue  # handled before a restart
                        when = _event_ms(line)
                        if when is not None and start_ms <= when < end_ms:
                            chunk.append((None, stamp(line, replay.name), [(HOPS_HEADER, b"1")]))
                            last = when / 1000
                            wait = pace.wait()
                            if wait:
                                pending += await self._produce(bus_topic, target, chunk)
                                await asyncio.sleep(wait)
                        positions[p] = seen
                    pending += await self._produce(bus_topic, target, chunk)
                    if time.monotonic() - saved_at >= self.settings.replay_progress_interval_s:
                        saved = await self._checkpoint(replay, pending, positions, last, done, finished=False)
                        pending, saved_at = [], time.monotonic()
                        if saved is None:
                            return
                        replay = saved
                done.add(p)
            await self._checkpoint(replay, pending, positions, last, done, finished=True)
        finally:
            store.close()


class Pace:
    """At most `rate` events a second, with at most a second of burst after a stall."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self.at = time.monotonic()

    def wait(self) -> float:
        """How long to wait before the next event (0: go on)."""
        now = time.monotonic()
        self.at = max(self.at, now - 1.0) + self.interval
        return self.at - now if self.at - now > 0.01 else 0.0


def _event_ms(line: bytes) -> float | None:
    """The archived event's `time` in epoch milliseconds, or None when it has none readable (not replayed)."""
    try:
        return parse_time(orjson.loads(line).get("time")).timestamp() * 1000
    except (ValueError, AttributeError, orjson.JSONDecodeError):
        return None
