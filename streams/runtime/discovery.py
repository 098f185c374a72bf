"""Schema discovery on the buses that turn it on: a `Discovery` stage at the end of each of the
bus's chains (processors/discovery.py) and, every `flush_interval_s`, the new versions written to
the registry topic (streams/kafka/discovered.py).

Concurrent workers: each writes `versions + [latest ⊔ what it observed]` when the latest version
does not take what it observed. When two write at once the later record wins the key, and the
other, reading it, finds its observations no longer covered and writes the join on top: the
registry converges on one chain of versions, each wider than the one before.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from functools import partial

from processors.discovery import Discovery, Schema, TypeKey, merge, next_versions
from streams.config import Config, DiscoverySettings
from streams.kafka.discovered import RegistryTopic
from streams.metrics import discovery as discovery_metrics

log = logging.getLogger(__name__)


def attach_discovery(config: Config, stages: dict[str, list], bus_routers) -> dict[str, tuple[Discovery, DiscoverySettings]]:
    """Append a Discovery stage to the chains of every bus with discovery on; bus name -> (stage,
    settings). The main bus's events are those of every topic that is no other bus's."""
    found: dict[str, tuple[Discovery, DiscoverySettings]] = {}
    if config.bus.discovery.enabled:
        stage = config.bus.discovery.stage()
        for topic in stages:
            if topic not in bus_routers:
                stages[topic] = [*stages[topic], stage]
        found[config.bus.name] = (stage, config.bus.discovery)
    for bus in config.buses:
        if bus.discovery.enabled:
            stage = bus.discovery.stage()
            topic = bus.topic_of(config.bus)
            stages[topic] = [*stages.get(topic, []), stage]
            found[bus.name] = (stage, bus.discovery)
    return found


class SchemaDiscovery:
    """One registry topic per distinct `discovery.topic`, and the loop that writes to it."""

    def __init__(self, config: Config, found: dict[str, tuple[Discovery, DiscoverySettings]]):
        self.config = config
        self.groups: dict[str, list[tuple[Discovery, DiscoverySettings]]] = {}
        for stage, settings in found.values():
            self.groups.setdefault(settings.topic, []).append((stage, settings))
        self.registries: dict[str, RegistryTopic] = {}
        self._recheck: dict[str, set[TypeKey]] = {topic: set() for topic in self.groups}
        self._counted: dict[int, tuple[int, int]] = {}  # id(stage) -> (sampled, overflow) exported
        self._task: asyncio.Task | None = None

    def __bool__(self) -> bool:
        return bool(self.groups)

    async def start(self) -> None:
        for topic in self.groups:
            registry = RegistryTopic(self.config.kafka.client_options(), topic, on_change=partial(self._changed, topic))
            await registry.start()
            self.registries[topic] = registry
        if self.groups:
            interval = min(s.flush_interval_s for group in self.groups.values() for _, s in group)
            self._task = asyncio.create_task(self._run(interval), name="schema-discovery")

    def _changed(self, topic: str, key: TypeKey) -> None:
        """Another writer changed a type: check it still takes what this worker observed."""
        self._recheck[topic].add(key)

    async def close(self, timeout: float = 5.0) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            try:  # what was observed since the last round, so a stop loses none of it
                await asyncio.wait_for(self.flush(), timeout)
            except Exception as exc:  # noqa: BLE001 - stopping anyway; the log says what was not written
                log.warning("schema discovery: last versions not written on stop: %r", exc)
        for registry in self.registries.values():
            await registry.close()

    async def _run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("schema discovery: could not write to the registry; retrying")

    async def flush(self) -> int:
        """Write a new version of each type whose latest one does not take what was observed; returns how many."""
        written = 0
        for topic, group in self.groups.items():
            registry = self.registries[topic]
            keys, self._recheck[topic] = self._recheck[topic], set()  # what changes while we write waits for the next round
            for stage, _ in group:
                keys |= set(stage.take_changes())
            limits, keep, max_types = group[0][1].limits(), group[0][1].max_versions, group[0][1].max_types
            for key in sorted(keys):
                observed = self._observed(group, key)
                if observed is None:
                    continue
                if key not in registry.records and len(registry.records) >= max_types:
                    # the registry is full: without this, types made per event (an id in a
                    # detail-type) would grow it with every restart of every worker
                    for stage, _ in group:
                        stage.refuse(key)
                    log.warning("schema discovery: registry %s holds %d types already; %s / %s left out",
                                topic, len(registry.records), key[0], key[1])
                    continue
                versions = next_versions(registry.versions(key), observed, _now(), limits, keep)
                if versions is None:
                    continue
                try:
                    await registry.write(key, versions)
                except Exception:
                    self._recheck[topic] |= keys  # observed stays observed: the next round writes it
                    raise
                written += 1
                discovery_metrics.DISCOVERED_VERSIONS.inc()
                log.info("schema discovery: %s / %s is at version %d", key[0], key[1], versions[-1]["version"])
        self._export()
        return written

    @staticmethod
    def _observed(group, key: TypeKey) -> Schema | None:
        observed = None
        for stage, settings in group:
            schema = stage.observed.get(key)
            if schema is not None:
                observed = schema if observed is None else merge(observed, schema, settings.limits())
        return observed

    def _export(self) -> None:
        discovery_metrics.DISCOVERED_TYPES.set(sum(len(r.records) for r in self.registries.values()))
        for group in self.groups.values():
            for stage, _ in group:
                sampled, overflow = self._counted.get(id(stage), (0, 0))
                discovery_metrics.DISCOVERY_SAMPLED.inc(stage.sampled - sampled)
                discovery_metrics.DISCOVERY_OVERFLOW.inc(stage.overflow - overflow)
                self._counted[id(stage)] = (stage.sampled, stage.overflow)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
