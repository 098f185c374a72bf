"""Run a decoder and its stages over a batch, in sub-batches sized for the CPU cache.

Every stage walks the whole list it is given; with a few thousand events each pass evicts the
events the next pass needs. Measured on this pipeline (tests/bench/enrich.py), feeding the stages
128 records at a time instead of 4000 made CDC ~2.5x and clickstream ~1.8x faster, for the same
work. The runtime can hand a whole `getmany()` batch to `Chain.run`, or to `Chain.run_async`, which
yields to the event loop between sub-batches so fetches, heartbeats and HTTP requests keep
moving while a large batch is processed (no I/O happens here: it only gives the loop a turn).
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence

from processors.core import Event, Failure, SourceRecord


def run_stage(stage, events: list[Event], failures: list[Failure]) -> list[Event]:
    """Run one stage; if it raises for the batch (a bug, or data it did not expect), re-run it one
    event at a time so only the poison events are dead-lettered and the rest flow on."""
    try:
        return stage.process(events, failures)
    except Exception:
        pass
    survivors: list[Event] = []
    name = getattr(stage, "name", None) or getattr(stage, "stage", None) or type(stage).__name__
    for event in events:
        try:
            survivors.extend(stage.process([event], failures))
        except Exception as exc:
            failures.append(Failure(event.record, name, "ProcessorError", f"{type(exc).__name__}: {exc}"))
    return survivors

DEFAULT_CHUNK = 128


class Chain:
    def __init__(self, decoder, stages: Sequence, chunk: int = DEFAULT_CHUNK):
        if chunk < 1:
            raise ValueError(f"Chain chunk={chunk}: expected a positive number of records")
        self.decoder, self.stages, self.chunk = decoder, list(stages), chunk

    def sub_batches(self, records: list[SourceRecord], failures: list[Failure]):
        """Each sub-batch's surviving events, decoded and through every stage."""
        decode, stages, chunk = self.decoder.decode, self.stages, self.chunk
        for start in range(0, len(records), chunk):
            events = decode(records[start:start + chunk], failures)
            for stage in stages:
                if not events:
                    break
                events = run_stage(stage, events, failures)
            yield events

    def run(self, records: list[SourceRecord], failures: list[Failure]) -> list[Event]:
        """Events out of all stages, in input order per sub-batch; failures appended to `failures`."""
        out: list[Event] = []
        for events in self.sub_batches(records, failures):
            out.extend(events)
        return out

    async def run_async(self, records: list[SourceRecord], failures: list[Failure]) -> list[Event]:
        out: list[Event] = []
        for events in self.sub_batches(records, failures):
            out.extend(events)
            await asyncio.sleep(0)
        return out
