"""Event buses: the `bus:` section's bus, the config file's `buses:` and those made through the API.

A bus is a Kafka topic. Rules name their bus (none = the `bus:` section's) and see only its
events: a custom bus's topic is routed to its rules only, and every other topic the worker reads
(the `bus:` topic, iot, clickstream, cdc sources ...) to the main bus's rules, as before buses.
Buses made through the API are stored on the control topic (streams/runtime/reload.py) under the
key `event-bus/<name>`, which no rule name can be (rule names have no `/`).
"""
from __future__ import annotations

from dataclasses import dataclass

import orjson

from streams.config import Config, EventBusSettings

CONTROL_KEY_PREFIX = "event-bus/"


@dataclass(frozen=True)
class Bus:
    name: str
    topic: str | None  # None: the main bus with no topic (PutEvents to it is refused)
    description: str = ""
    created: float | None = None  # epoch seconds, for buses made through the API
    modified: float | None = None
    from_config: bool = True


@dataclass(frozen=True)
class StoredBus:
    """A bus as the API stores it on the control topic."""

    settings: EventBusSettings
    created: float
    modified: float

    def to_json(self) -> bytes:
        return orjson.dumps({"bus": self.settings.model_dump(mode="json", exclude_defaults=True),
                             "created": self.created, "modified": self.modified})

    @classmethod
    def from_json(cls, value: bytes) -> StoredBus:
        doc = orjson.loads(value)
        return cls(EventBusSettings.model_validate(doc["bus"]), float(doc["created"]), float(doc["modified"]))


def main_bus_topic(config: Config) -> str | None:
    """Where events for the `bus:` section's bus go: api.bus_topic, bus.topic, else the first envelope source."""
    return config.api.bus_topic or config.bus.topic or next(
        (s.topic for s in config.sources if s.kind == "envelope"), None)


def all_buses(config: Config, stored: dict[str, StoredBus] | None = None) -> dict[str, Bus]:
    """Every bus by name: the main one, the config file's, then the API's (which cannot shadow them)."""
    buses = {config.bus.name: Bus(config.bus.name, main_bus_topic(config))}
    for b in config.buses:
        buses[b.name] = Bus(b.name, b.topic_of(config.bus), b.description)
    for name, s in sorted((stored or {}).items()):
        if name not in buses:
            buses[name] = Bus(name, s.settings.topic_of(config.bus), s.settings.description, s.created, s.modified,
                              from_config=False)
    return buses


def custom_bus_topics(config: Config, buses: dict[str, Bus]) -> dict[str, str]:
    """topic -> bus name, for every bus but the main one: the topics routed to their own bus's rules."""
    return {b.topic: name for name, b in buses.items() if name != config.bus.name and b.topic}
