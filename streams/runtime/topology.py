"""Build the pipeline and the targets a config describes (Vector's sources -> transforms -> sinks)."""
from __future__ import annotations

from typing import Any

from processors.decode import Decoder
from processors.normalise import CdcNormaliser, ClickstreamNormaliser, IotNormaliser
from processors.pipeline import Pipeline
from processors.routing import compile_pattern, compile_target_input
from processors.routing.router import UNMATCHED_PREFIX, Route, Router, RouteTarget, parse_key_path
from processors.validate import SchemaValidator
from streams.config import Config, ConfigError, TargetSettings
from streams.kafka import fastpath
from streams.kafka.producer import BatchProducer
from streams.runtime.buses import Bus, all_buses, custom_bus_topics
from streams.runtime.discovery import attach_discovery
from streams.runtime.enrichment import build_enrichment, build_tables
from streams.targets import BuildContext, build_target, check_targets, parse_target
from streams.targets.kafka import KafkaTarget
from streams.targets.retry import RetryPolicy


def target_name(rule: str, target_id: str) -> str:
    return f"{rule}/{target_id}"


def _renderer(target: TargetSettings):
    if target.input is None and target.input_path is None and target.input_transformer is None:
        return None
    return compile_target_input(
        input=target.input, input_path=target.input_path, input_transformer=target.input_transformer,
        target_id=target.id,
    ).render


def check_rule(rule) -> None:
    """Raise (a ValueError, or ConfigError naming the key) what building `rule` would raise: its
    pattern, its targets' input templates and settings. The control topic checks each stored rule
    with it, so one that an older version accepted cannot stop the whole rule set from loading."""
    if rule.event_pattern is not None:
        compile_pattern(rule.event_pattern)
    for target in rule.targets:
        _renderer(target)
        parse_target(rule.name, target)


def build_router(config: Config, rules=None, bus: str | None = None) -> Router:
    """The router of one bus's rules (default: the `bus:` section's). `rules`: the rule set to pick
    them from (default: the config file's; hot reload passes the merged set)."""
    bus = bus or config.bus.name
    routes = []
    for rule in config.rules if rules is None else rules:
        if rule.state != "ENABLED" or config.bus_of(rule) != bus:
            continue
        targets = tuple(
            RouteTarget(
                name=target_name(rule.name, t.id),
                key_path=parse_key_path(t.key) if t.key else None,
                render=_renderer(t),
            )
            for t in rule.targets
        )
        routes.append(Route(rule.name, targets, rule.event_pattern))
    return Router(routes, rule_arn_prefix=config.bus.rule_arn_prefix_of(bus),
                  engine=fastpath.routing_engine(),
                  unmatched=UNMATCHED_PREFIX + bus if bus in unmatched_topics(config) else None)


def unmatched_topics(config: Config) -> dict[str, str]:
    """bus name -> the topic of its events no rule matched, for the buses that have one (config file only)."""
    topics = {config.bus.name: config.bus.unmatched_topic, **{b.name: b.unmatched_topic for b in config.buses}}
    return {bus: topic for bus, topic in topics.items() if topic}


def bus_topic_table(buses: dict[str, Bus]) -> dict[str, str]:
    """bus name -> topic, what `bus` targets look up."""
    return {name: b.topic for name, b in buses.items() if b.topic}


def build_bus_routers(config: Config, rules=None, buses: dict[str, Bus] | None = None) -> dict[str, Router]:
    """topic -> the router of its bus, for every bus but the main one (whose router takes every other topic)."""
    buses = all_buses(config) if buses is None else buses
    return {topic: build_router(config, rules, bus) for topic, bus in custom_bus_topics(config, buses).items()}


def bus_stages(config: Config, topics) -> dict[str, list]:
    """The stages of bus topics not declared as sources: an envelope source's (the schema check)."""
    declared = set(config.source_topics)
    return {t: [SchemaValidator({t: DEFAULT_SCHEMAS["envelope"]})] for t in topics if t not in declared}


DEFAULT_SCHEMAS = {"iot": ["iot"], "clickstream": ["clickstream"], "cdc": ["debezium", "debezium-flat"],
                   "envelope": ["envelope"]}


def decoder_tombstones(kind: str, setting: str | None) -> str:
    """The decoder's mode: CDC topics carry tombstones after deletes (the normaliser decides what
    they become); everywhere else a null value is an error unless the source skips them."""
    if kind == "cdc":
        return "fail" if setting == "fail" else "keep"
    return "skip" if setting == "skip" else "fail"


def build_stages(config: Config, tables: dict | None = None) -> tuple[dict[str, list], dict[str, Decoder]]:
    """Per source topic: its decoder and the stages after it (validate, normalise, enrich).
    `tables`: the ReferenceTables `join` stages read (streams.runtime.enrichment.build_tables)."""
    bus = config.bus
    stages: dict[str, list] = {}
    decoders: dict[str, Decoder] = {}
    for index, source in enumerate(config.sources):
        chain: list = []
        refs = source.schemas or DEFAULT_SCHEMAS.get(source.kind)
        if refs:
            chain.append(SchemaValidator({source.topic: refs}))
        if source.mask is not None:  # before anything else reads the payload (processors/mask.py)
            try:
                chain.append(source.mask.masker(refs))
            except ValueError as exc:
                raise ConfigError(f"sources[{index}].mask: {exc}") from None
        named: dict[str, Any] = {k: v for k, v in (("source", source.source), ("detail_type", source.detail_type)) if v}
        if source.kind == "iot":
            chain.append(IotNormaliser(account=bus.account, region=bus.region, **named))
        elif source.kind == "clickstream":
            chain.append(ClickstreamNormaliser(account=bus.account, region=bus.region, **named))
        elif source.kind == "cdc":
            named.pop("detail_type", None)  # CDC detail-types come from the table: <table>.created ...
            chain.append(CdcNormaliser(account=bus.account, region=bus.region,
                                       tombstones="delete" if source.tombstones == "delete" else "skip", **named))
        decoders[source.topic] = Decoder(tombstones=decoder_tombstones(source.kind, source.tombstones))
        chain += build_enrichment(config, index, source.enrich, tables or {})
        stages[source.topic] = chain
    return stages, decoders


def build_pipeline(config: Config) -> Pipeline:
    tables = build_tables(config)
    stages, decoders = build_stages(config, tables)
    bus_routers = build_bus_routers(config)
    stages.update(bus_stages(config, bus_routers))
    discovery = attach_discovery(config, stages, bus_routers)
    pipeline = Pipeline(stages, build_router(config), decoders, bus_routers)
    pipeline.tables = tables  # filled from their topics by the worker before it reports ready
    pipeline.discovery = discovery
    return pipeline


def build_targets(config: Config, producer: BatchProducer, dead_letters, waitingroom=None, rules=None,
                  reuse=None, api_destinations=None, bus_topics: dict[str, str] | None = None) -> dict:
    """Targets by name (streams.targets.REGISTRY makes each), and each bus's unmatched target.
    `reuse`: running targets (hot reload); one whose settings did not change is kept as it is, with
    its in-flight deliveries, instead of being rebuilt. `bus_topics`: bus name -> topic, which
    `bus` targets read at each write (the worker keeps it current; default: the config's buses)."""
    check_targets(config, rules)  # every target's keys, and clashes between targets
    context = BuildContext(producer, dead_letters, config.runtime.max_in_flight, waitingroom,
                           tuple(config.routing.http_allow_networks), api_destinations,
                           bus_topic_table(all_buses(config)) if bus_topics is None else bus_topics,
                           config.routing.max_hops)
    targets = {}
    for bus, topic in unmatched_topics(config).items():
        name = UNMATCHED_PREFIX + bus
        old = (reuse or {}).get(name)
        targets[name] = old if old is not None else KafkaTarget(name, topic, producer, config.runtime.max_in_flight,
                                                               dead_letters)
    for rule in config.rules if rules is None else rules:
        if rule.state != "ENABLED":
            continue
        for t in rule.targets:
            name = target_name(rule.name, t.id)
            old = (reuse or {}).get(name)
            if old is not None and old.spec == t:
                targets[name] = old
                continue
            target = build_target(context, rule.name, name, t)
            target.bind(t, RetryPolicy.from_settings(t.retry_policy, config.routing))
            targets[name] = target
    return targets
