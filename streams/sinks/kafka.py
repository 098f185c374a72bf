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
import weakref
from collections import deque

from streams import metrics
from streams.producer import BatchProducer
from streams.sinks.base import Item, Target

log = logging.getLogger(__name__)

_SENDERS: "weakref.WeakKeyDictionary[BatchProducer, dict[str, TopicSender]]" = weakref.WeakKeyDictionary()


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
    def shared(cls, topic: str, producer: BatchProducer) -> "TopicSender":
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

    def put(self, target: "KafkaTarget", items: list[Item]) -> None:
        self._queue.append((target, items))
        self._ready.set()

    def _take(self) -> list[tuple["KafkaTarget", list[Item]]]:
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
            if len(chunks) == 1:
                target, items = chunks[0]
                owners = None
                records = [(d.key, d.payload, None) for d, _ in items]
            else:
                owners = []
                for target, items in chunks:
                    owners += [(target, item) for item in items]
                records = [(item[0].key, item[0].payload, None) for _, item in owners]
            try:
                sent, too_large = await self.producer.send(self.topic, records)
            except Exception as exc:  # never let one bad chunk stop the topic
                log.exception("produce to %s failed", self.topic)
                self._each(chunks, owners, None, lambda t, its: t.fail(its, "ProduceFailed", f"{type(exc).__name__}: {exc}"))
                continue
            if too_large:
                self._each(chunks, owners, too_large, lambda t, its: t.fail(
                    its, "RecordTooLarge", f"record exceeds producer.max_batch_bytes for topic {self.topic}"))
            for future, indexes in sent:
                future.add_done_callback(lambda f, idx=indexes, c=chunks, o=owners: self._acked(f, c, o, idx))

    def _acked(self, future: asyncio.Future, chunks, owners, indexes: list[int]) -> None:
        if future.cancelled():
            self._each(chunks, owners, indexes, lambda t, its: t.fail(
                its, "ProduceCancelled", f"produce to {self.topic} was cancelled"))
        elif future.exception() is not None:
            exc = future.exception()
            self._each(chunks, owners, indexes, lambda t, its: t.fail(its, "ProduceFailed", f"{type(exc).__name__}: {exc}"))
        else:
            self._produced.inc(len(indexes))
            self._each(chunks, owners, indexes, lambda t, its: t.settle(its))

    @staticmethod
    def _each(chunks, owners, indexes, action) -> None:
        """Apply `action(target, items)` once per target to the records at `indexes` (None = all)."""
        if owners is None:
            target, items = chunks[0]
            action(target, items if indexes is None else [items[i] for i in indexes])
            return
        picked = owners if indexes is None else [owners[i] for i in indexes]
        groups: dict[int, tuple] = {}
        for target, item in picked:
            group = groups.get(id(target))
            if group is None:
                groups[id(target)] = (target, [item])
            else:
                group[1].append(item)
        for target, items in groups.values():
            action(target, items)


class KafkaTarget(Target):
    kind = "kafka"

    def __init__(self, target_id: str, topic: str, producer: BatchProducer, max_in_flight: int, dead_letters):
        super().__init__(target_id, max_in_flight, dead_letters)
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
        self._sender.put(self, items)
