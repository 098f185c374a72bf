"""A pipeline: per source topic, a Chain (decode, then its stages, in cache-sized sub-batches),
then the router of the topic's bus (`bus_routers`, topic -> router; every other topic:
`router`, the main bus's). A stage is an object with `process(events, failures) -> events`; one that
raises only loses its poison events (see processors.chain.run_stage). A pipeline with an async
stage (one with `process_async`, e.g. an HTTP lookup) is run with `run_async`; `is_async` says so.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from processors.chain import Chain
from processors.core import Delivery, Failure, PlainMatches, SourceRecord
from processors.decode import Decoder


@dataclass
class PipelineResult:
    deliveries: list[Delivery] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    consumed: int = 0
    matched: dict[str, int] = field(default_factory=dict)
    # with run(plain=True): rule -> the records it matched, for rules whose every target takes
    # the record as it came (Router.plain_targets); they have no Delivery in `deliveries`
    plain: dict[str, PlainMatches] = field(default_factory=dict)
    plain_targets: dict[str, tuple] = field(default_factory=dict, repr=False)  # rule -> its targets

    @property
    def delivery_count(self) -> int:
        """Deliveries, counting each plain record once per target of its rule."""
        targets = self.plain_targets
        return len(self.deliveries) + sum(len(matches) * len(targets[rule]) for rule, matches in self.plain.items())


class Pipeline:
    collects_plain = True  # run(plain=True) is supported (see PipelineResult.plain)

    def __init__(self, stages_by_topic: dict[str, list], router, decoders: dict[str, Decoder] | None = None,
                 bus_routers: dict | None = None):
        self.router = router
        self.bus_routers: dict = bus_routers or {}
        self.tables: dict = {}  # name -> ReferenceTable the stages join on, fed by the runtime
        self.discovery: dict = {}  # bus -> (its schema discovery stage, settings), for the runtime's registry writer
        decoders = decoders or {}
        self.chains = {topic: Chain(decoders.get(topic) or Decoder(), stages) for topic, stages in stages_by_topic.items()}
        self.default_chain = Chain(Decoder(), [])

    def add_topic(self, topic: str, stages: list) -> None:
        """A chain for a topic the pipeline does not have yet (a bus made while running)."""
        if topic not in self.chains:
            self.chains[topic] = Chain(Decoder(), stages)

    @property
    def is_async(self) -> bool:
        """True when a chain has an async stage: then only `run_async` can run the pipeline."""
        return any(chain.is_async for chain in self.chains.values())

    def run(self, records_by_topic: dict[str, list[SourceRecord]], plain: bool = False) -> PipelineResult:
        """`plain`: collect plain rules' records in `result.plain` instead of making Deliveries
        (for a runtime that hands records to its targets as they are)."""
        result = PipelineResult()
        if plain:
            result.plain_targets = self.router.plain_targets
            for router in self.bus_routers.values():  # rule names are unique across buses
                result.plain_targets = {**result.plain_targets, **router.plain_targets}
        for topic, records in records_by_topic.items():
            self._run_topic(self.chains.get(topic, self.default_chain), records, result, plain,
                            self.bus_routers.get(topic, self.router))
        if plain:
            result.plain = {rule: matches for rule, matches in result.plain.items() if matches.records}
        return result

    async def run_async(self, records_by_topic: dict[str, list[SourceRecord]]) -> PipelineResult:
        """`run`, awaiting the async stages; topics without one take exactly run's path."""
        result = PipelineResult()
        failures = result.failures
        for topic, records in records_by_topic.items():
            chain = self.chains.get(topic, self.default_chain)
            router = self.bus_routers.get(topic, self.router)
            if not chain.is_async:
                self._run_topic(chain, records, result, router=router)
                continue
            result.consumed += len(records)
            async for events in chain.sub_batches_async(records, failures):
                if events:  # routed per sub-batch, as in run
                    result.deliveries += router.route(events, failures, result.matched, raw_bodies=False)
                await asyncio.sleep(0)  # a sub-batch answered from the cache never yielded
        return result

    def _run_topic(self, chain: Chain, records: list[SourceRecord], result: PipelineResult,
                   plain: bool = False, router=None) -> None:
        router = self.router if router is None else router
        failures = result.failures
        result.consumed += len(records)
        raw_bodies = not chain.stages  # the bodies are the records' own JSON: no need to re-serialise
        if raw_bodies and router.forwards_raw:
            # nothing reads the bodies: check the records are JSON objects, forward their bytes
            result.deliveries += router.route_raw(chain.decoder.check(records, failures), result.matched)
            return
        if raw_bodies and type(chain.decoder) is Decoder:
            result.deliveries += router.route_records(records, chain.decoder, failures, result.matched,
                                                      result.plain if plain else None)
            return
        # Route each sub-batch as it comes out of the chain: its decoded bodies are garbage as
        # soon as it is routed, so a batch never holds thousands of parsed events at once
        # (which would make every young-generation GC pass walk them all).
        for events in chain.sub_batches(records, failures):
            if events:
                result.deliveries += router.route(events, failures, result.matched, raw_bodies=raw_bodies,
                                                  plain_out=result.plain if plain else None)
