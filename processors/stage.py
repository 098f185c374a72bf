"""The stage contract: what runs in a source's chain after decoding (validators, normalisers,
enrichment, windows), written once.

A stage is an object with

    process(events: list[Event], failures: list[Failure]) -> list[Event]            Stage
or  async process_async(events, failures) -> list[Event]                          AsyncStage

It returns the events that go on, in order (it may drop, add or rewrite them), and appends a
`Failure` for each event it rejects, with a reason a user can act on. It raises only for a bug or
for data it did not expect: the chain then re-runs it one event at a time, so only the poison
event is dead-lettered (chain.run_stage). So that the re-run starts from the events as they were,
a stage changes an event only once it cannot fail any more for the batch: make the new bodies
first, assign them at the end (the normalisers do), or change each event in one step that
cannot raise halfway. Optional attributes: `name` or `stage` (the label in
dead letters and metrics), `appends_json` (it only adds top-level keys: see core.Event),
`state` (a PartitionedState: a StatefulStage, whose state the native runtime keeps in a changelog
topic and restores on rebalance), `async close()` (what it holds open).

A stage the config can build (`sources[].enrich: [{type: <name>, ...}]`, one entry in
streams/config/enrich.py) takes its keys as its constructor's keyword arguments: they are
validated from the constructor's signature (`settings_model`), so an unknown key or a wrong type
names the key. A class whose keys are not its constructor's (a table by name, minutes rather
than milliseconds) declares `Settings` (a pydantic model) and `from_settings(settings, context)`.
"""
from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, create_model

from processors.core import Event, Failure
from processors.enrich.state import PartitionedState


@runtime_checkable
class Stage(Protocol):
    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]: ...


@runtime_checkable
class AsyncStage(Protocol):
    async def process_async(self, events: list[Event], failures: list[Failure]) -> list[Event]: ...


@runtime_checkable
class StatefulStage(Stage, Protocol):
    state: PartitionedState


@dataclass(frozen=True)
class StageContext:
    """What the runtime hands a stage's `from_settings`: reference tables by name, and the I/O a
    processor may not do itself (a fetcher factory and a metrics observer for HTTP lookups)."""

    tables: Mapping[str, Any] = field(default_factory=dict)
    make_fetcher: Callable[..., Any] | None = None
    observe_lookup: Callable[[str], Any] | None = None


# constructor parameters that are never settings: what the runtime or a test injects
INJECTED = frozenset({"self", "state", "fetch", "make_fetcher", "observer"})


@cache
def settings_model(cls: type) -> type[BaseModel]:
    """The model of the keys a configured `cls` takes: its `Settings`, else its constructor's
    keyword parameters (their annotations and defaults), unknown keys refused."""
    declared = cls.__dict__.get("Settings")
    if declared is not None:
        return declared
    hints = typing.get_type_hints(cls.__init__)  # type: ignore[misc]
    fields: dict[str, Any] = {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():  # type: ignore[misc]
        if name in INJECTED or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[name] = (hints.get(name, Any), default)
    return create_model(f"{cls.__name__}Settings", __config__=ConfigDict(extra="forbid", frozen=True,
                                                                          arbitrary_types_allowed=True), **fields)


def build_stage(cls: type, settings: BaseModel, context: StageContext) -> Any:
    """A stage of `cls` from its validated settings."""
    from_settings = getattr(cls, "from_settings", None)
    if from_settings is not None:
        return from_settings(settings, context)
    return cls(**dict(settings))
