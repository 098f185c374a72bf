"""The `waitingroom` target: join / complete / abandon requests from a rule, answered on a topic.

Each matched event is a request (`{"action": "join", "room": ..., "request_id": ...}`, or an
envelope whose `detail` is one). Joins are idempotent per request id, so a replay after a crash
gets the same positions. The reply, keyed by request id, goes to `reply_topic`; the room's own
events (joined, admitted, ...) go to `bus_topic` when set. A request is settled once its reply is
acknowledged by Kafka; a malformed one is dead-lettered with the reason.
"""
from __future__ import annotations

import asyncio

import orjson
from pydantic import BaseModel, ConfigDict, Field

from processors.core import Event, Failure
from processors.waitingroom.stream import EventOutbox, handle_waitingroom_batch
from streams.kafka.producer import BatchProducer
from streams.targets.base import Item, QueuedTarget


class WaitingRoomTarget(QueuedTarget):
    kind = "waitingroom"
    failure_code = "WaitingRoomFailed"  # Redis down, a bug: dead-letter with the reason, keep going

    def __init__(self, target_id: str, service, reply_topic: str, producer: BatchProducer, max_in_flight: int,
                 dead_letters, bus_topic: str | None = None):
        super().__init__(target_id, max_in_flight, dead_letters)
        self.service = service
        self.reply_topic = reply_topic
        self.bus_topic = bus_topic
        self.producer = producer
        self.outbox = EventOutbox()
        if bus_topic:
            service.emit = self.outbox.append

    async def start(self) -> None:
        await self.producer.partitions(self.reply_topic)
        if self.bus_topic:
            await self.producer.partitions(self.bus_topic)
        await super().start()

    async def handle(self, items: list[Item]) -> None:
        by_record: dict[int, Item] = {}
        events: list[Event] = []
        failures: list[Failure] = []
        for item in items:
            delivery = item[0]
            by_record[id(delivery.record)] = item
            try:
                body = orjson.loads(delivery.payload)
            except orjson.JSONDecodeError as exc:
                self.fail([item], "invalid_request", f"payload is not JSON: {exc}")
                continue
            events.append(Event(delivery.record, body))
        replies = await handle_waitingroom_batch(
            self.service, events, failures, reply_target="reply",
            bus_target="bus" if self.bus_topic else None, outbox=self.outbox if self.bus_topic else None,
        )
        failed = {id(f.record) for f in failures}
        for failure in failures:
            self.fail([by_record[id(failure.record)]], failure.error, failure.message)
        ok = [item for item in items if id(item[0].record) not in failed]
        futures = []
        outputs = [("reply", self.reply_topic)]
        if self.bus_topic:  # else no reply is for the bus
            outputs.append(("bus", self.bus_topic))
        for name, topic in outputs:
            records = [(d.key, d.payload, None) for d in replies if d.target == name]
            if records:
                sent, _ = await self.producer.send(topic, records)
                futures += [future for future, _ in sent]
        try:
            await asyncio.gather(*futures)
        except Exception as exc:
            self.fail(ok, "ProduceFailed", f"reply not written: {type(exc).__name__}: {exc}")
            return
        self.settle(ok)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reply_topic: str = Field(description="waitingroom: where each join's queue position (or error) is produced.")
    bus_topic: str | None = Field(None, description="waitingroom: where the room's own events go (admissions ...).")


def build(context, name: str, settings: Settings) -> WaitingRoomTarget:
    if context.waitingroom is None:
        raise ValueError("a waitingroom target needs the `waitingroom` section (rooms, redis_url, admin_token)")
    return WaitingRoomTarget(name, context.waitingroom, settings.reply_topic, context.producer, context.max_in_flight,
                             context.dead_letters, bus_topic=settings.bus_topic)
