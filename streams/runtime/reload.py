"""Rules from the control topic, applied to a running worker without a restart.

The control topic is compacted: key = rule name, value = the rule as JSON (the config file's
rule shape), null = deleted. Every worker reads it to the end at start-up, then tails it; the
EventBridge API writes it. A change is applied by compiling a new Router and target set off the
hot path and swapping both in one synchronous step, which in asyncio is necessarily between two
batches. Targets whose settings did not change are carried over with their in-flight
deliveries; removed targets finish what they hold (their tickets still gate commits) and close.

Rules in the config file are fixed: the control topic cannot shadow or delete them (the API
reports them as managed by the config file).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import SimpleNamespace

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from streams import metrics
from streams.config import Config, ConfigError, RuleSettings
from streams.kafka.admin import ensure_topics
from streams.kafka.producer import make_producer
from streams.kafka.read import follow, partitions_of, read_to_end
from streams.runtime.archives import ARCHIVE_KEY, CANCEL_KEY, REPLAY_KEY, StoredArchive, StoredReplay, with_archives
from streams.runtime.buses import CONTROL_KEY_PREFIX, StoredBus, all_buses
from streams.runtime.replay import ReplayRunner
from streams.runtime.topology import (
    build_bus_routers,
    build_router,
    build_targets,
    bus_stages,
    bus_topic_table,
    check_rule,
)
from streams.targets.connections import CONNECTION_PREFIX, DESTINATION_PREFIX, ApiDestinations

log = logging.getLogger(__name__)


def rule_to_json(rule: RuleSettings) -> bytes:
    return orjson.dumps(rule.model_dump(mode="json", exclude_defaults=True))


def rule_from_json(value: bytes) -> RuleSettings:
    return RuleSettings.model_validate(orjson.loads(value))


class ControlTopic:
    """The compacted topic of rule changes: read it, tail it, write it. `rules` is the current view."""

    def __init__(self, config: Config, topic: str):
        self.config = config
        self.topic = topic
        self.rules: dict[str, RuleSettings] = {}
        self.buses: dict[str, StoredBus] = {}  # made through the API (key event-bus/<name>)
        # connections and API destinations (keys connection/<name>, api-destination/<name>), secrets sealed
        self.api_destinations = ApiDestinations(config.routing.secrets_key)
        self.archives: dict[str, StoredArchive] = {}  # streams/runtime/archives.py
        self.replays: dict[str, StoredReplay] = {}
        self.cancelled: set[str] = set()  # replays asked to cancel
        self.listeners: list[Callable[[], None]] = []
        self._offsets: dict[str, tuple[int, int]] = {}  # rule -> (partition, offset) last applied
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._tail: asyncio.Task | None = None

    async def start(self) -> None:
        k = self.config.kafka
        await ensure_topics(k.bootstrap_servers, {self.topic: 1}, compacted={self.topic})
        self._producer = make_producer(self.config)
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=k.bootstrap_servers, client_id=k.client_id, group_id=None,
            enable_auto_commit=False, security_protocol=k.security_protocol,
            sasl_mechanism=k.sasl_mechanism or "PLAIN", sasl_plain_username=k.sasl_username,
            sasl_plain_password=k.sasl_password,
        )
        await self._consumer.start()
        tps = [TopicPartition(self.topic, p) for p in await partitions_of(self._consumer, self.topic, 30)]
        self._consumer.assign(tps)
        await read_to_end(self._consumer, tps, self._apply, 60)
        self._tail = asyncio.create_task(follow(self._consumer, self._changed, f"control topic {self.topic}"),
                                         name="control-topic")

    async def close(self) -> None:
        if self._tail:
            self._tail.cancel()
            await asyncio.gather(self._tail, return_exceptions=True)
        if self._consumer:
            await self._consumer.stop()
        if self._producer:
            await self._producer.stop()

    def _changed(self, records) -> None:
        """Records fetched while following: the listeners hear of what changed."""
        if self._apply(records):
            self._notify()

    def _apply(self, records) -> bool:
        changed = False
        for rec in records:
            if rec.key is None:
                continue
            name = rec.key.decode()
            last = self._offsets.get(name)
            if last is not None and last[0] == rec.partition and last[1] >= rec.offset:
                continue  # already applied (our own write, applied as soon as it was acked)
            self._offsets[name] = (rec.partition, rec.offset)
            if name.startswith((CONNECTION_PREFIX, DESTINATION_PREFIX)):
                self.api_destinations.apply(name, rec.value)  # read per request: no rebuild, no reload
                continue
            if name.startswith(CONTROL_KEY_PREFIX):
                changed |= self._apply_bus(name.removeprefix(CONTROL_KEY_PREFIX), rec.value, rec.offset)
                continue
            if name.startswith((ARCHIVE_KEY, REPLAY_KEY, CANCEL_KEY)):
                changed |= self._apply_archive(name, rec.value, rec.offset)
                continue
            if rec.value is None:
                changed |= self.rules.pop(name, None) is not None
                continue
            try:
                rule = rule_from_json(rec.value)
                check_rule(rule)
            except (ValueError, ValidationError, ConfigError) as exc:
                # e.g. written by an older version that accepted what this one refuses: the rule
                # is left out (and the one it replaced with it), the others load
                log.error("control topic %s: rule %r at offset %d is not valid, ignored: %s",
                          self.topic, name, rec.offset, exc)
                metrics.CONTROL_RULES_INVALID.inc()
                changed |= self.rules.pop(name, None) is not None
                continue
            if self.rules.get(name) != rule:
                self.rules[name] = rule
                changed = True
        return changed

    def _apply_bus(self, name: str, value: bytes | None, offset: int) -> bool:
        if value is None:
            return self.buses.pop(name, None) is not None
        try:
            bus = StoredBus.from_json(value)
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            log.error("control topic %s: bus %r at offset %d is not valid, ignored: %s", self.topic, name, offset, exc)
            metrics.CONTROL_RULES_INVALID.inc()
            return self.buses.pop(name, None) is not None
        if self.buses.get(name) == bus:
            return False
        self.buses[name] = bus
        return True

    def _apply_archive(self, key: str, value: bytes | None, offset: int) -> bool:
        """An archive, replay or cancellation record; True when routing changes (not for progress)."""
        prefix, name = key.split("/", 1)
        if prefix + "/" == CANCEL_KEY:
            self.cancelled.add(name) if value is not None else self.cancelled.discard(name)
            return False
        table: dict = self.archives if prefix + "/" == ARCHIVE_KEY else self.replays
        old = table.get(name)
        if value is None:
            table.pop(name, None)
            return old is not None
        try:
            new = StoredArchive.from_json(value) if table is self.archives else StoredReplay.from_json(value)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("control topic %s: %s at offset %d is not valid, ignored: %s", self.topic, key, offset, exc)
            metrics.CONTROL_RULES_INVALID.inc()
            table.pop(name, None)
            return old is not None
        table[name] = new
        if isinstance(new, StoredReplay):
            return old is None or old.routing() != new.routing()
        return old != new

    def _notify(self) -> None:
        metrics.CONTROL_RULES.set(len(self.rules))
        for listener in self.listeners:
            listener()

    async def put(self, rule: RuleSettings) -> None:
        await self._write(rule.name, rule_to_json(rule))

    async def delete(self, name: str) -> None:
        await self._write(name, None)

    async def put_bus(self, bus: StoredBus) -> None:
        await self._write(CONTROL_KEY_PREFIX + bus.settings.name, bus.to_json())

    async def delete_bus(self, name: str) -> None:
        await self._write(CONTROL_KEY_PREFIX + name, None)

    async def put_object(self, key: str, value: bytes | None) -> None:
        """A connection or API destination (streams/targets/connections.py); None deletes it."""
        await self._write(key, value)

    async def put_archive(self, archive: StoredArchive) -> None:
        await self._write(ARCHIVE_KEY + archive.name, archive.to_json())

    async def delete_archive(self, name: str) -> None:
        await self._write(ARCHIVE_KEY + name, None)

    async def put_replay(self, replay: StoredReplay) -> None:
        await self._write(REPLAY_KEY + replay.name, replay.to_json())

    async def cancel_replay(self, name: str) -> None:
        await self._write(CANCEL_KEY + name, b"1")

    async def _write(self, name: str, value: bytes | None) -> None:
        """Write and wait for the ack, then apply at once, so this process reads its own writes."""
        assert self._producer is not None, "start() first"
        meta = await (await self._producer.send(self.topic, key=name.encode(), value=value))
        record = SimpleNamespace(key=name.encode(), value=value, partition=meta.partition, offset=meta.offset)
        if self._apply([record]):
            self._notify()


class RuleReloader:
    """Keeps a worker's Router and targets equal to config rules + control-topic rules."""

    def __init__(self, worker, producer):
        self.worker = worker
        self.producer = producer  # the worker's BatchProducer, shared by the targets
        self.store = ControlTopic(worker.config, worker.config.routing.control_topic)
        self.store.listeners.append(self._changed)
        self.replays = ReplayRunner(worker.config, self.store)  # runs the replays this worker holds the lease of
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._retired: set[asyncio.Task] = set()
        self.version = 0  # bumped after every applied rule set (tests and /metrics watch it)
        self.bus_topics: set[str] = set()  # the live custom buses' topics
        self._gone_topics: set[str] = set()  # topics of deleted buses: routed to no rule from then on

    def rules(self) -> list[RuleSettings]:
        fixed = {r.name for r in self.worker.config.rules}
        extra = [r for name, r in sorted(self.store.rules.items()) if name not in fixed]
        return list(self.worker.config.rules) + extra

    async def start(self) -> None:
        await self.store.start()
        await self.apply()
        self._task = asyncio.create_task(self._run(), name="rule-reloader")
        await self.replays.start()

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.replays.close()
        await self.store.close()
        for task in list(self._retired):
            task.cancel()
        await asyncio.gather(*self._retired, return_exceptions=True)

    def _changed(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()  # changes arriving while we apply wake us again: they coalesce
            try:
                await self.apply()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rule reload failed; the previous rules stay in force")
                metrics.RULE_RELOADS.labels("failed").inc()

    async def apply(self) -> None:
        worker, config = self.worker, self.worker.config
        buses = all_buses(config, self.store.buses)
        rules = [r for r in self.rules() if config.bus_of(r) in buses]  # a deleted bus's rules go with it
        archives = {n: a for n, a in self.store.archives.items() if a.bus in buses}
        rules = with_archives(config, rules, archives, self.store.replays)
        router = build_router(config, rules)  # compiles every pattern; raises before any swap
        bus_routers = build_bus_routers(config, rules, buses)
        previous = set(getattr(worker.pipeline, "bus_routers", {}))
        self._gone_topics = (self._gone_topics | previous) - set(bus_routers)
        # until the re-subscription below takes a deleted bus's partitions away, its records are
        # routed nowhere (not to the main bus, as a topic without a bus would be)
        routers = {**{t: build_router(config, []) for t in self._gone_topics}, **bus_routers}
        old = worker.targets
        live = getattr(worker, "bus_topics", None)  # `bus` targets read it at each write: updated in place
        if live is not None:
            live.clear()
            live.update(bus_topic_table(buses))
        targets = build_targets(worker.config, self.producer, worker.dead_letters, worker.waitingroom,
                                rules=rules, reuse=old, api_destinations=self.store.api_destinations,
                                bus_topics=live)
        started = []
        try:
            for name, target in targets.items():
                if old.get(name) is not target:
                    await worker.start_target(target)
                    started.append(target)
        except Exception:
            for target in started:
                await target.close()
            raise
        # synchronous: no batch sees half of it
        worker.swap_routes(router, targets, routers, bus_stages(config, set(bus_routers) - previous))
        self.bus_topics = set(bus_routers)
        worker.follow_bus_topics(self.bus_topics)
        self.version += 1
        for name, target in old.items():
            if targets.get(name) is not target:
                task = asyncio.create_task(self._retire(target), name=f"retire-{name}")
                self._retired.add(task)
                task.add_done_callback(self._retired.discard)
        metrics.RULE_RELOADS.labels("applied").inc()
        log.info("rules applied (version %d): %d rules, %d targets", self.version, len(rules), len(targets))

    async def _retire(self, target) -> None:
        await target.flush()  # what it holds still gates commits: let it finish, then close
        await target.close()
