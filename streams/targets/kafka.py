"""The `kafka` target: produce each delivery to a topic, keyed as configured, in order.

Every `kafka` target writing to the same topic shares one `TopicSender`. aiokafka keeps one
pending batch per partition and makes the next wait for it to drain, so a hundred rules each
producing their own small batches to the same few topics queue up behind one another, one
broker round trip each, until produce times out. The sender instead takes the chunks queued by
different targets and produces them in one batched call. It never merges two chunks of the same
target into one call, so a single busy target produces (and is acknowledged, and commits) chunk
by chunk as before. One sender per topic drains its queue in order, so each target's
per-partition order survives produce.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import weakref
from array import array
from binascii import hexlify
from collections import deque
from functools import partial
from itertools import compress, groupby, repeat
from operator import attrgetter, is_, itemgetter
from typing import Any
from zlib import crc32

from pydantic import BaseModel, ConfigDict, Field

from streams import metrics
from streams.kafka.producer import BatchProducer
from streams.targets.base import Item, RecordChunk, Target

log = logging.getLogger(__name__)

_SENDERS: weakref.WeakKeyDictionary[BatchProducer, dict[str, TopicSender]] = weakref.WeakKeyDictionary()


class TopicSender:
    """Produces what any number of targets queue for one topic, in queue order."""

    def __init__(self, topic: str, producer: BatchProducer):
        self.topic = topic
        self.producer = producer
        self.users = 0
        self._queue: deque[tuple[KafkaTarget, list[Item]]] = deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._produced = metrics.RECORDS_OUT.labels(topic)

    @classmethod
    def shared(cls, topic: str, producer: BatchProducer) -> TopicSender:
        senders = _SENDERS.setdefault(producer, {})
        sender = senders.get(topic)
        if sender is None:
            sender = senders[topic] = cls(topic, producer)
        return sender

    def attach(self) -> None:
        self.users += 1
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"produce-{self.topic}")

    async def detach(self) -> None:
        self.users -= 1
        if self.users <= 0 and self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            _SENDERS.get(self.producer, {}).pop(self.topic, None)

    def put(self, target: KafkaTarget, items: list[Item]) -> None:
        self._queue.append((target, items))
        self._ready.set()

    def _take(self) -> list[tuple[KafkaTarget, list[Item]]]:
        queue = self._queue
        chunks = [queue.popleft()]
        taken = {id(chunks[0][0])}
        while queue and id(queue[0][0]) not in taken:  # one chunk per target per call
            chunks.append(queue.popleft())
            taken.add(id(chunks[-1][0]))
        return chunks

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            chunks = self._take()
            call = _Call(self, chunks)
            with_headers = any(target.forward_headers or target.traceparent for target, _ in chunks)
            if len(chunks) == 1:
                keys, values = _columns(chunks[0][1])
                headers = chunks[0][0].output_headers(chunks[0][1]) if with_headers else None
            else:
                keys, values, headers = [], [], [] if with_headers else None
                for target, items in chunks:
                    k, v = _columns(items)
                    keys += k
                    values += v
                    if headers is not None:
                        headers += target.output_headers(items)
            try:
                sent, too_large = await self.producer.send_columns(self.topic, keys, values, headers)
            except Exception as exc:  # never let one bad chunk stop the topic
                log.exception("produce to %s failed", self.topic)
                call.failed(range(call.count), "ProduceFailed", f"{type(exc).__name__}: {exc}")
                call.finish()
                continue
            if too_large:
                call.failed(too_large, "RecordTooLarge", f"record exceeds producer.max_batch_bytes for topic {self.topic}")
            call.waiting = len(sent)
            if not sent:
                call.finish()
            for future, indexes in sent:
                future.add_done_callback(partial(call.acked, indexes))


_delivery = itemgetter(0)
_key, _payload = attrgetter("key"), attrgetter("payload")


def _columns(items: list[Item] | RecordChunk) -> tuple[list, list]:
    """The items' keys and values, as two lists. A RecordChunk already holds them."""
    if type(items) is RecordChunk:
        return items.keys, items.values
    deliveries = list(map(_delivery, items))
    return list(map(_key, deliveries)), list(map(_payload, deliveries))


_record = attrgetter("record")
_record_headers = attrgetter("headers")
_topic_partition, _offset = attrgetter("topic", "partition"), attrgetter("offset")


def _headers(target: KafkaTarget, items: list[Item] | RecordChunk) -> list:
    """Each output record's headers: its source record's, carried through (a trace id survives),
    and a W3C traceparent where there is none."""
    records = items if type(items) is RecordChunk else list(map(_record, map(_delivery, items)))
    if not target.traceparent:
        return list(map(_record_headers, records)) if target.forward_headers else [()] * len(records)
    if type(items) is RecordChunk and not any(map(_record_headers, records)):
        # the usual case: no record has a header of its own, each gets a traceparent, made once
        # per record for every chunk of its batch (an archive takes the same records as the rules)
        return trace_headers(records, items.made)
    out = []
    forward = target.forward_headers
    for record in records:
        headers = record.headers
        own = next((h for h in headers if h[0] == "traceparent"), None) if headers else None
        if own:
            out.append(headers if forward else [own])
        else:  # lists: the producer's batch builder takes headers as lists, so none is copied again
            out.append([*headers, trace_context(record)] if forward else [trace_context(record)])
    return out


_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15     # odd: multiplying by it mod 2^64 is a bijection that spreads bits
_TRACE_HIGH: dict[tuple[str, int], tuple[int, bytes]] = {}  # (topic, partition) -> high half, prefix


def _trace_high(topic: str, partition: int) -> tuple[int, bytes]:
    """The trace id's high half for a partition, and the header's text up to its low half."""
    high = crc32(topic.encode()) << 32 | partition
    trace = _TRACE_HIGH[(topic, partition)] = (high, b"00-%016x" % high)
    return trace


def trace_context(record) -> tuple[str, bytes]:
    """A W3C traceparent header for a source record that has none. The ids are a function of the
    record's topic, partition and offset, so every output of one input record (fan-out to several
    topics, a retry, a replay from the same offsets) carries the same trace: the trace id's high
    half is the topic's CRC-32 and the partition, its low half the offset mixed by a bijection
    (unique per partition, and looking random to samplers that read the low bytes). A hash of all
    three cost 1.2 µs a record, a third of a passthrough record's budget; this costs ~0.4 µs.
    Flagged sampled: the trace starts here."""
    trace = _TRACE_HIGH.get((record.topic, record.partition))
    if trace is None:
        trace = _trace_high(record.topic, record.partition)
    low = ((record.offset ^ trace[0]) * _GOLDEN) & _MASK64
    # the parent (span) id: the low half again, flipped and made odd (never all zeros, as W3C requires)
    return "traceparent", b"%s%016x-%016x-01" % (trace[1], low, low ^ _GOLDEN | 1)


def trace_headers(records: list, made: dict[int, Any]) -> list[list[tuple[str, bytes]]]:
    """The headers of each record's outputs when it has none of its own: [trace_context(record)],
    one list per record for every chunk of its batch, found in `made` (id(record) -> that list;
    RecordChunk.made) when another chunk of the batch made it, else made and put there. The lists
    are shared by the record's outputs (the producer's batch builder only reads them): an archive
    and the rules taking the same records format each header once and make no list per output."""
    ids = list(map(id, records))
    missing = records
    if made:  # another chunk of the batch came first
        found = list(map(made.get, ids))
        if None not in found:
            return found  # type: ignore[return-value]  # no None in it
        missing = list(compress(records, map(is_, found, repeat(None))))
    new: list[list[tuple[str, bytes]]] = []
    for tp, run in groupby(missing, _topic_partition):  # a partition's run at a time
        new += _traceparents(tp, list(map(_offset, run)))
    made.update(zip(map(id, missing), new))
    return new if missing is records else list(map(made.__getitem__, ids))


def _traceparents(tp: tuple[str, int], offsets: list[int]) -> list[list[tuple[str, bytes]]]:
    """[trace_context] of the records at `offsets` of partition `tp`. The ids' hex is made for the
    whole run by one hexlify of their 64-bit words (formatting two ids per record with `%` costs
    most of a header): b"<low>-<span>-<low>-<span>-...", each record's 34 bytes a slice."""
    trace = _TRACE_HIGH.get(tp)
    if trace is None:
        trace = _trace_high(*tp)
    high, prefix = trace
    lows = [((offset ^ high) * _GOLDEN) & _MASK64 for offset in offsets]
    words = [0] * (2 * len(lows) + 1)  # low, span per record; the last word gives the last record its "-"
    words[0:-1:2] = lows
    words[1:-1:2] = [low ^ _GOLDEN | 1 for low in lows]
    packed = array("Q", words)  # 8-byte words, made big-endian for the hex
    if sys.byteorder == "little":
        packed.byteswap()
    text = hexlify(packed, b"-", 8)
    return [[("traceparent", prefix + text[i:i + 34] + b"01")] for i in range(0, 34 * len(lows), 34)]


class _Call:
    """One produce call: its chunks (one per target) settle together once every batch is acked,
    so acknowledging costs nothing per record unless a record failed. A failed record is
    dead-lettered by its own target; the rest of the call settles as delivered."""

    __slots__ = ("sender", "chunks", "count", "waiting", "bad")

    def __init__(self, sender: TopicSender, chunks: list):
        self.sender, self.chunks = sender, chunks
        self.count = sum(len(items) for _, items in chunks)  # records, numbered across the chunks
        self.waiting = 0
        self.bad: set[int] | None = None  # record numbers already failed

    def acked(self, indexes: list[int], future: asyncio.Future) -> None:
        if future.cancelled():
            self.failed(indexes, "ProduceCancelled", f"produce to {self.sender.topic} was cancelled")
        elif future.exception() is not None:
            exc = future.exception()
            self.failed(indexes, "ProduceFailed", f"{type(exc).__name__}: {exc}")
        self.waiting -= 1
        if self.waiting == 0:
            self.finish()

    def failed(self, indexes, error: str, message: str) -> None:
        """Dead-letter the records at `indexes`, each through the target that queued it."""
        if self.bad is None:
            self.bad = set()
        self.bad.update(indexes)
        for target, items in self._by_target(indexes):
            target.fail(items, error, message)

    def finish(self) -> None:
        bad = self.bad
        if bad is None:
            for target, items in self.chunks:
                target.settle(items)
            self.sender._produced.inc(self.count)
            return
        good = [i for i in range(self.count) if i not in bad]
        for target, items in self._by_target(good):
            target.settle(items)
        self.sender._produced.inc(len(good))

    def _by_target(self, indexes) -> list[tuple[KafkaTarget, list[Item]]]:
        """(target, its items) for the records at `indexes` (ascending), in chunk order."""
        out = []
        start = 0
        indexes = sorted(indexes)
        i = 0
        for target, items in self.chunks:
            if type(items) is RecordChunk:
                items = items.as_items(target.id)
            end = start + len(items)
            picked = []
            while i < len(indexes) and indexes[i] < end:
                picked.append(items[indexes[i] - start])
                i += 1
            if picked:
                out.append((target, picked))
            start = end
        return out


class KafkaTarget(Target):
    kind = "kafka"

    def __init__(self, target_id: str, topic: str, producer: BatchProducer, max_in_flight: int, dead_letters,
                 forward_headers: bool = True, traceparent: bool = True):
        super().__init__(target_id, max_in_flight, dead_letters)
        self.forward_headers = forward_headers  # the source record's headers go with each output record
        self.traceparent = traceparent  # a W3C traceparent is added to records that carry none
        self.topic = topic
        self.producer = producer
        self._sender: TopicSender | None = None

    async def start(self) -> None:
        await self.producer.partitions(self.topic)  # fail at start-up, not mid-stream, if the topic is missing
        self._sender = TopicSender.shared(self.topic, self.producer)
        self._sender.attach()

    async def close(self) -> None:
        if self._sender:
            sender, self._sender = self._sender, None
            await sender.detach()

    def write(self, items: list[Item]) -> None:
        sender = self._sender
        assert sender is not None, "start() attaches the sender"
        sender.put(self, items)

    def submit_records(self, chunk: RecordChunk) -> None:
        self.submit(chunk)  # produced from the chunk's own keys and values (_columns)

    def output_headers(self, items: list[Item] | RecordChunk) -> list:
        """Each output record's headers (the `bus` target adds its hop count)."""
        return _headers(self, items)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str = Field(description="kafka: the topic matched events are produced to.")
    forward_headers: bool = Field(True, description="kafka: give each output record its source record's headers "
                                                     "(a trace id, a tenant): on by default, as Kafka Connect does.")
    traceparent: bool = Field(True, description="kafka: add a W3C `traceparent` header to each output record whose "
                              "headers have none, derived from the source record's topic, partition and offset (all "
                              "outputs of one input record, and its retries and replays, share one trace).")


def build(context, name: str, settings: Settings) -> KafkaTarget:
    return KafkaTarget(name, settings.topic, context.producer, context.max_in_flight, context.dead_letters,
                       forward_headers=settings.forward_headers, traceparent=settings.traceparent)
