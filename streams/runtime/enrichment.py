"""Enrichment stages from the config: `sources[].enrich` -> processor objects, `tables` -> ReferenceTables.

Each entry's `type` picks a stage; its other keys are that stage's settings, passed through with
the names below. A stage that rejects its settings (an unknown key, a bad value) becomes a
ConfigError naming `sources[i].enrich[j]`, and the worker does not start.
"""
from __future__ import annotations

from typing import Any

from processors.enrich import (
    CdcDeduplicator,
    CidrTable,
    DerivedFields,
    DeviceOrderCheck,
    IpEnricher,
    ReferenceJoin,
    ReferenceTable,
    Scd2History,
    Sessioniser,
    ThresholdAlerts,
    UnitNormaliser,
    UserAgentEnricher,
)
from processors.enrich.state import PartitionedState
from streams.config import Config, ConfigError, EnrichSettings


def _join(settings: dict, tables: dict[str, ReferenceTable]):
    name = settings.pop("table", None)
    if name not in tables:
        known = ", ".join(sorted(tables)) or "none are configured"
        raise ValueError(f"table: expected the name of a table under `tables` ({known}), got {name!r}")
    if "key" not in settings:
        raise ValueError("key: required (the event path to join on, e.g. detail.device_id)")
    return ReferenceJoin(tables[name], key_path=settings.pop("key"), **settings)


def _lookup(settings: dict, tables):
    from streams.runtime.http_fetcher import http_lookup

    return http_lookup(**settings)


def _sessions(settings: dict, tables):
    if "gap_minutes" in settings:
        settings["gap_ms"] = int(float(settings.pop("gap_minutes")) * 60_000)
    return Sessioniser(**settings)


def _ip(settings: dict, tables):
    cidrs = settings.pop("cidrs", None)  # {"203.0.113.0/24": "eu-west" or {...}}
    if cidrs is not None and not isinstance(cidrs, dict):
        raise ValueError("cidrs: expected a mapping of CIDR -> region (a name or an object)")
    return IpEnricher(CidrTable(cidrs.items()) if cidrs else None, **settings)


BUILDERS = {
    "join": _join,
    "lookup": _lookup,
    "units": lambda s, t: UnitNormaliser(**s),
    "derived": lambda s, t: DerivedFields(**s),
    "order_check": lambda s, t: DeviceOrderCheck(**s),
    "alerts": lambda s, t: ThresholdAlerts(**s),
    "sessions": _sessions,
    "user_agent": lambda s, t: UserAgentEnricher(**s),
    "ip": _ip,
    "dedupe": lambda s, t: CdcDeduplicator(**s),
    "scd2": lambda s, t: Scd2History(**s),
}


def build_tables(config: Config) -> dict[str, ReferenceTable]:
    return {name: ReferenceTable(name) for name in config.tables}


def build_enrichment(config: Config, index: int, entries: list[EnrichSettings],
                     tables: dict[str, ReferenceTable]) -> list:
    stages = []
    for j, entry in enumerate(entries):
        settings: dict[str, Any] = dict(entry.model_extra or {})
        try:
            stage = BUILDERS[entry.type](settings, tables)
        except (TypeError, ValueError) as exc:
            message = str(exc)
            if isinstance(exc, TypeError) and "unexpected keyword argument" in message:
                message = f"unknown setting {message.rsplit(' ', 1)[-1]} for a {entry.type} stage"
            raise ConfigError(f"sources[{index}].enrich[{j}] ({entry.type}): {message}") from None
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
    import logging

    from streams.kafka.tables import ReferenceTableLoader

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
    import asyncio

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
