"""Enrichment stages from the config: `sources[].enrich` -> processor objects, `tables` -> ReferenceTables.

Each entry's `type` picks a stage class (streams/config/enrich.py STAGES); its other keys are that
stage's settings, checked when the config was parsed. A stage that rejects its settings beyond
their types (a value out of range, a table that is not configured) becomes a ConfigError naming
`sources[i].enrich[j]`, and the worker does not start.
"""
from __future__ import annotations

import asyncio
import logging

from processors.enrich import ReferenceTable
from processors.enrich.state import PartitionedState
from processors.stage import StageContext, build_stage
from streams.config import Config, ConfigError, EnrichSettings
from streams.config.enrich import STAGES, parse_stage
from streams.kafka.tables import ReferenceTableLoader
from streams.runtime.http_fetcher import LookupMetrics, make_fetcher


def build_tables(config: Config) -> dict[str, ReferenceTable]:
    return {name: ReferenceTable(name) for name in config.tables}


def stage_context(tables: dict[str, ReferenceTable]) -> StageContext:
    """What stages get from the runtime: the tables, and HTTP lookups' fetcher and metrics."""
    return StageContext(tables=tables, make_fetcher=make_fetcher, observe_lookup=LookupMetrics)


def build_enrichment(config: Config, index: int, entries: list[EnrichSettings],
                     tables: dict[str, ReferenceTable]) -> list:
    """The stages of `sources[index].enrich`, in order (their settings were checked at parse)."""
    context = stage_context(tables)
    stages: list = []
    for j, entry in enumerate(entries):
        path = f"sources[{index}].enrich[{j}]"
        try:
            stage = build_stage(STAGES[entry.type], parse_stage(path, entry.type, entry.settings()), context)
        except (TypeError, ValueError) as exc:  # what a stage checks beyond its keys' types
            message = str(exc)
            raise ConfigError(message if message.startswith(path) else f"{path} ({entry.type}): {message}") from None
        state = getattr(stage, "state", None)
        if isinstance(state, PartitionedState):  # one changelog topic per store name and source
            clash = [k for k, s in enumerate(stages) if getattr(getattr(s, "state", None), "name", None) == state.name]
            if clash:
                raise ConfigError(f"{path} ({entry.type}): its state {state.name!r} would share a changelog with "
                                  f"sources[{index}].enrich[{clash[0]}]; give each its own `name`")
        stages.append(stage)
    return stages


def state_stores(stages: list) -> list[PartitionedState]:
    """The state of the stateful stages among `stages` (kept in changelog topics by the worker)."""
    return [s.state for s in stages if isinstance(getattr(s, "state", None), PartitionedState)]


def changelog_name(config: Config, topic: str, store: str) -> str:
    return f"{config.kafka.group_id}-{topic}-{store}-changelog"


async def start_tables(config: Config, pipeline) -> list:
    """Read every reference table whole from its topic, then follow it; returns the loaders (stop
    them at shutdown). Raises with what to do when a table topic cannot be read."""
    loaders: list[ReferenceTableLoader] = []
    for name, table in getattr(pipeline, "tables", {}).items():
        topic = config.tables[name].topic
        loader = ReferenceTableLoader(config.kafka.bootstrap_servers, topic, table, client_id=f"eventweir-table-{name}")
        try:
            await loader.start()
        except Exception as exc:
            for started in loaders:
                await started.stop()
            raise RuntimeError(f"table {name!r}: could not read topic {topic!r} ({exc}); create it (compacted) "
                               f"or fix tables.{name}.topic") from exc
        logging.getLogger(__name__).info("table %s: %d rows from %s", name, len(table), topic)
        loaders.append(loader)
    return loaders


async def close_stages(pipeline) -> None:
    """Release what stages hold open (HTTP lookup sessions)."""
    for chain in getattr(pipeline, "chains", {}).values():
        for stage in chain.stages:
            if asyncio.iscoroutinefunction(getattr(stage, "close", None)):
                await stage.close()


def stateful_sources(config: Config, pipeline) -> list[str]:
    """`sources[i].enrich[j] (type)` of every stage that keeps state, for runtimes without changelogs."""
    out = []
    for i, source in enumerate(config.sources):
        chain = getattr(pipeline, "chains", {}).get(source.topic)
        if chain is None:
            continue
        stateful = {id(s) for s in chain.stages if isinstance(getattr(s, "state", None), PartitionedState)}
        if not stateful:
            continue
        enrich_stages = chain.stages[len(chain.stages) - len(source.enrich):]
        out += [f"sources[{i}].enrich[{j}] ({entry.type})" for j, (entry, stage) in
                enumerate(zip(source.enrich, enrich_stages)) if id(stage) in stateful]
    return out
