"""Run a decoder and its stages over a batch, in sub-batches sized for the CPU cache.

Every stage walks the whole list it is given; with a few thousand events each pass evicts the
events the next pass needs, so the stages are fed sub-batches small enough to stay in cache
(DEFAULT_CHUNK; tests/bench/enrich.py measures it, figures in tests/bench/results/NOTES.md). The
runtime can hand a whole `getmany()` batch to `Chain.run`, or to `Chain.run_async`, which yields
to the event loop between sub-batches so fetches, heartbeats and HTTP requests keep
moving while a large batch is processed.

A stage may be async (`async process_async(events, failures) -> events`, e.g. an HTTP lookup that
awaits its fetches): only `run_async` can run it, and `Chain.run` refuses such a chain.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence

from processors.core import Event, Failure, SourceRecord
from processors.decode import Decoder


def run_stage(stage, events: list[Event], failures: list[Failure]) -> list[Event]:
    """Run one stage; if it raises for the batch (a bug, or data it did not expect), re-run it one
    event at a time so only the poison events are dead-lettered and the rest flow on. The retry
    starts clean: the failures the broken attempt recorded are dropped (they are recorded again),
    and stages change an event only once they have succeeded for the batch (processors/stage.py)."""
    recorded = len(failures)
    try:
        return stage.process(events, failures)
    except Exception:
        del failures[recorded:]
    survivors: list[Event] = []
    name = stage_name(stage)
    for event in events:
        try:
            survivors.extend(stage.process([event], failures))
        except Exception as exc:
            failures.append(Failure(event.record, name, "ProcessorError", f"{type(exc).__name__}: {exc}"))
    return survivors


async def run_stage_async(stage, events: list[Event], failures: list[Failure]) -> list[Event]:
    """`run_stage` for a stage with `process_async`: the same poison isolation."""
    recorded = len(failures)
    try:
        return await stage.process_async(events, failures)
    except Exception:
        del failures[recorded:]
    survivors: list[Event] = []
    name = stage_name(stage)
    for event in events:
        try:
            survivors.extend(await stage.process_async([event], failures))
        except Exception as exc:
            failures.append(Failure(event.record, name, "ProcessorError", f"{type(exc).__name__}: {exc}"))
    return survivors


def stage_name(stage) -> str:
    return getattr(stage, "name", None) or getattr(stage, "stage", None) or type(stage).__name__


DEFAULT_CHUNK = 128


class Chain:
    def __init__(self, decoder, stages: Sequence, chunk: int = DEFAULT_CHUNK):
        if chunk < 1:
            raise ValueError(f"Chain chunk={chunk}: expected a positive number of records")
        self.decoder, self.stages, self.chunk = decoder, list(stages), chunk
        # events serialise by splicing what stages appended into their record's bytes when the
        # decoder keeps bodies as parsed and every stage keeps Event.added true (`appends_json`)
        self.splice = (type(decoder) is Decoder and bool(self.stages)
                       and all(getattr(stage, "appends_json", False) for stage in self.stages))
        # a stage that masks personal data decides what the sub-batch's earlier failures (decode,
        # validate: still the clear records) may carry to the dead-letter topic (processors/mask.py)
        self.seal = next((stage.seal_failures for stage in self.stages if hasattr(stage, "seal_failures")), None)

    @property
    def is_async(self) -> bool:
        """True when a stage has `process_async`: run the chain with `run_async`."""
        return any(hasattr(stage, "process_async") for stage in self.stages)

    def sub_batches(self, records: list[SourceRecord], failures: list[Failure]):
        """Each sub-batch's surviving events, decoded and through every stage."""
        decode, stages, chunk = self.decoder.decode, self.stages, self.chunk
        for stage in stages:
            if not hasattr(stage, "process"):
                raise TypeError(f"stage {stage_name(stage)!r} ({type(stage).__name__}) is async-only "
                                "(it has process_async and no process): run this chain with "
                                "Chain.run_async / Pipeline.run_async")
        splice, seal = self.splice, self.seal
        for start in range(0, len(records), chunk):
            failed = len(failures)
            events = decode(records[start:start + chunk], failures, splice) if splice else \
                decode(records[start:start + chunk], failures)
            for stage in stages:
                if not events:
                    break
                events = run_stage(stage, events, failures)
            if seal is not None and len(failures) > failed:
                seal(failures, failed)
            yield events

    def run(self, records: list[SourceRecord], failures: list[Failure]) -> list[Event]:
        """Events out of all stages, in input order per sub-batch; failures appended to `failures`."""
        out: list[Event] = []
        for events in self.sub_batches(records, failures):
            out.extend(events)
        return out

    async def sub_batches_async(self, records: list[SourceRecord], failures: list[Failure]):
        """`sub_batches`, awaiting the async stages (a stage with both kinds runs its async one)."""
        decode, chunk = self.decoder.decode, self.chunk
        stages = [(stage, getattr(stage, "process_async", None)) for stage in self.stages]
        for start in range(0, len(records), chunk):
            failed = len(failures)
            events = decode(records[start:start + chunk], failures)
            for stage, process_async in stages:
                if not events:
                    break
                if process_async is None:
                    events = run_stage(stage, events, failures)
                else:
                    events = await run_stage_async(stage, events, failures)
            if self.seal is not None and len(failures) > failed:
                self.seal(failures, failed)
            yield events

    async def run_async(self, records: list[SourceRecord], failures: list[Failure]) -> list[Event]:
        """`run`, giving the loop a turn between sub-batches; the only way to run async stages."""
        out: list[Event] = []
        async for events in self.sub_batches_async(records, failures):
            out.extend(events)
            await asyncio.sleep(0)
        return out
