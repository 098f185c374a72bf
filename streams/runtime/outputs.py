"""Where a runtime's results go: the producer, the dead-letter writer and the rule targets, opened
and closed the same way by both runtimes (the native worker and faust)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.config import Config
from streams.kafka.producer import BatchProducer, make_producer
from streams.runtime.topology import build_targets
from streams.targets.deadletter import DeadLetterWriter


@dataclass
class Outputs:
    producer: AIOKafkaProducer
    batches: BatchProducer
    dead_letters: DeadLetterWriter
    targets: dict[str, Any]  # built, not started: the runtime starts them (and wires them to itself)


async def open_outputs(config: Config, waitingroom: Any = None, bus_topics: dict[str, str] | None = None) -> Outputs:
    """`bus_topics`: bus name -> topic, kept current by the caller, for `bus` targets (default: the config's)."""
    producer = make_producer(config)
    await producer.start()
    batches = BatchProducer(producer)
    dead_letters = DeadLetterWriter(config.dead_letter.topic, batches)
    await dead_letters.start()
    return Outputs(producer, batches, dead_letters, build_targets(config, batches, dead_letters, waitingroom,
                                                                       bus_topics=bus_topics))


async def close_outputs(targets: dict[str, Any], dead_letters: DeadLetterWriter | None,
                        producer: AIOKafkaProducer | None) -> None:
    """Targets first (they may still write dead letters), then the dead-letter writer, then the producer."""
    for target in targets.values():
        await target.close()
    if dead_letters is not None:
        await dead_letters.close()
    if producer is not None:
        await producer.stop()
