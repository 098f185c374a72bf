"""The `bus` target: republish each event to another event bus, so that bus's rules route it.

A rule names the bus (`{type: bus, bus: orders}`), or, through PutTargets, its ARN
(arn:aws:events:<region>:<account>:event-bus/orders; the name picks the bus, whatever the account
and region, as eventweir is one account). The event goes to the bus's topic as it is: the same id,
source, detail-type, time and detail, so consumers can de-duplicate across buses (LocalStack
re-puts it with a new id; AWS's own hop refusal names the original event id). Its headers go with
it, plus a traceparent if it has none, and its hop count plus one (streams/targets/hops.py); an
event that would pass routing.max_hops is dead-lettered (MaxHopsExceeded) instead.

The bus's topic is looked up at each write in the worker's live table of buses, so a bus made or
deleted through the API is followed without rebuilding the target; an event for a bus that does
not exist is dead-lettered (EventBusNotFound), never dropped.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streams.config import BUS_NAME
from streams.kafka.producer import BatchProducer
from streams.targets.base import Item, RecordChunk, Target
from streams.targets.hops import hops_of, one_more_hop, too_many_hops
from streams.targets.kafka import KafkaTarget, TopicSender, trace_context

BUS_ARN = re.compile(r"^arn:aws[a-z-]*:events:[a-z0-9-]*:\d{12}:event-bus/(?P<name>.+)$")


def bus_name(value: str) -> str:
    """The bus a target names: its name, or the name in its event-bus ARN."""
    arn = BUS_ARN.match(value)
    return arn["name"] if arn else value


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bus: str = Field(description="bus: the event bus the rule's events are republished to, by name (`orders`) or ARN "
                     "(arn:aws:events:<region>:<account>:event-bus/orders); routing.max_hops bounds the republishing.")

    @field_validator("bus")
    @classmethod
    def _bus(cls, value: str) -> str:
        if not re.fullmatch(BUS_NAME, bus_name(value)):
            raise ValueError(f"expected a bus name or arn:aws:events:<region>:<account>:event-bus/<name>, got {value!r}")
        return value


class BusTarget(KafkaTarget):
    kind = "bus"

    def __init__(self, target_id: str, bus: str, bus_topics: Mapping[str, str], producer: BatchProducer,
                 max_in_flight: int, dead_letters, max_hops: int):
        super().__init__(target_id, "", producer, max_in_flight, dead_letters)  # the topic: looked up per write
        self.bus = bus
        self.bus_topics = bus_topics  # bus name -> topic, kept current by the worker
        self.max_hops = max_hops
        self._senders: dict[str, TopicSender] = {}

    async def start(self) -> None:
        pass  # a sender is attached per bus topic at its first write

    async def close(self) -> None:
        senders, self._senders = self._senders, {}
        for sender in senders.values():
            await sender.detach()

    def submit_records(self, chunk: RecordChunk) -> None:
        Target.submit_records(self, chunk)  # as items: the hop count is read per record

    def write(self, items: list[Item]) -> None:
        topic = self.bus_topics.get(self.bus)
        if topic is None:
            self.fail(items, "EventBusNotFound", f"Event bus {self.bus} does not exist: create it (CreateEventBus, or "
                      f"buses: in the config), or remove target {self.id}.")
            return
        over = [item for item in items if hops_of(item[0].record) >= self.max_hops]
        if over:
            hops = max(hops_of(item[0].record) for item in over)
            self.fail(over, "MaxHopsExceeded", too_many_hops(hops, self.max_hops, f"target {self.id} (to bus {self.bus})"))
            items = [item for item in items if hops_of(item[0].record) < self.max_hops]
            if not items:
                return
        sender = self._senders.get(topic)
        if sender is None:
            sender = self._senders[topic] = TopicSender.shared(topic, self.producer)
            sender.attach()
        sender.put(self, items)

    def output_headers(self, items: list[Item] | RecordChunk) -> list:
        """The source record's headers, a traceparent if it has none, and its hop count plus one."""
        out = []
        for delivery, _ in items:
            record = delivery.record
            headers = one_more_hop(record)
            if not any(h[0] == "traceparent" for h in headers):
                headers.insert(-1, trace_context(record))
            out.append(headers)
        return out


def build(context, name: str, settings: Settings) -> BusTarget:
    return BusTarget(name, bus_name(settings.bus), context.bus_topics, context.producer, context.max_in_flight,
                     context.dead_letters, context.max_hops)
