"""A pipeline: per source topic, decode then a chain of stages, then the router.

A stage is an object with `process(events, failures) -> events`. If a stage raises for a whole
batch (a bug, or data it did not expect), the batch is re-run through that stage one event at a
time, so only the poison events are dead-lettered and the rest flow on.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from processors.core import Delivery, Event, Failure, SourceRecord
from processors.decode import Decoder


@dataclass
class PipelineResult:
    deliveries: list[Delivery] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    consumed: int = 0
    matched: dict[str, int] = field(default_factory=dict)


def run_stage(stage, events: list[Event], failures: list[Failure]) -> list[Event]:
    try:
        return stage.process(events, failures)
    except Exception:
        pass
    survivors: list[Event] = []
    name = getattr(stage, "name", type(stage).__name__)
    for event in events:
        try:
            survivors.extend(stage.process([event], failures))
        except Exception as exc:
            failures.append(Failure(event.record, name, "ProcessorError", f"{type(exc).__name__}: {exc}"))
    return survivors


class Pipeline:
    def __init__(self, stages_by_topic: dict[str, list], router, decoders: dict[str, Decoder] | None = None):
        self.stages_by_topic = stages_by_topic
        self.router = router
        self.decoders = decoders or {}
        self.default_decoder = Decoder()

    def run(self, records_by_topic: dict[str, list[SourceRecord]]) -> PipelineResult:
        result = PipelineResult()
        failures = result.failures
        for topic, records in records_by_topic.items():
            result.consumed += len(records)
            events = self.decoders.get(topic, self.default_decoder).decode(records, failures)
            stages = self.stages_by_topic.get(topic, ())
            for stage in stages:
                if not events:
                    break
                events = run_stage(stage, events, failures)
            if events:
                # with no stage after decode, bodies are the records' own JSON: no need to re-serialise
                result.deliveries += self.router.route(events, failures, result.matched, raw_bodies=not stages)
        return result
