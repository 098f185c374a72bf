"""The `kafka` target: produce each delivery to a topic, keyed as configured, in order."""
from __future__ import annotations

import asyncio

from streams import metrics
from streams.producer import BatchProducer
from streams.sinks.base import Item, QueuedTarget


class KafkaTarget(QueuedTarget):
    kind = "kafka"
    failure_code = "ProduceFailed"

    def __init__(self, target_id: str, topic: str, producer: BatchProducer, max_in_flight: int, dead_letters):
        super().__init__(target_id, max_in_flight, dead_letters)
        self.topic = topic
        self.producer = producer
        self._produced = metrics.RECORDS_OUT.labels(topic)

    async def start(self) -> None:
        await self.producer.partitions(self.topic)  # fail at start-up, not mid-stream, if the topic is missing
        await super().start()  # one task sends in order, so per-partition order survives produce

    async def handle(self, items: list[Item]) -> None:
        sent, too_large = await self.producer.send(self.topic, [(d.key, d.payload, None) for d, _ in items])
        if too_large:
            self.fail([items[i] for i in too_large], "RecordTooLarge",
                      f"record exceeds producer.max_batch_bytes for topic {self.topic}")
        for future, indexes in sent:
            chunk = [items[i] for i in indexes]
            future.add_done_callback(lambda f, chunk=chunk: self._acked(f, chunk))

    def _acked(self, future: asyncio.Future, chunk: list[Item]) -> None:
        if future.cancelled():
            self.fail(chunk, "ProduceCancelled", f"produce to {self.topic} was cancelled")
        elif future.exception() is not None:
            exc = future.exception()
            self.fail(chunk, "ProduceFailed", f"{type(exc).__name__}: {exc}")
        else:
            self._produced.inc(len(chunk))
            self.settle(chunk)
