"""Build the pipeline and the targets a config describes (Vector's sources -> transforms -> sinks)."""
from __future__ import annotations

from processors.decode import Decoder
from processors.pipeline import Pipeline
from processors.routing.router import Route, Router, RouteTarget, parse_key_path
from streams.config import Config, ConfigError, TargetSettings
from streams.kafka import fastpath
from streams.kafka.producer import BatchProducer


def target_name(rule: str, target_id: str) -> str:
    return f"{rule}/{target_id}"


def _renderer(target: TargetSettings):
    if target.input is None and target.input_path is None and target.input_transformer is None:
        return None
    from processors.routing import compile_target_input

    return compile_target_input(
        input=target.input, input_path=target.input_path, input_transformer=target.input_transformer
    ).render


def build_router(config: Config, rules=None) -> Router:
    """`rules`: the rule set to compile (default: the config file's; hot reload passes the merged set)."""
    routes = []
    for rule in config.rules if rules is None else rules:
        if rule.state != "ENABLED":
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
    return Router(routes, rule_arn_prefix=f"arn:aws:events:{config.bus.region}:{config.bus.account}:rule/",
                  engine=fastpath.routing_engine())


DEFAULT_SCHEMAS = {"iot": ["iot"], "clickstream": ["clickstream"], "cdc": ["debezium", "debezium-flat"],
                   "envelope": ["envelope"]}


def build_stages(config: Config, tables: dict | None = None) -> tuple[dict[str, list], dict[str, Decoder]]:
    """Per source topic: its decoder and the stages after it (validate, normalise, enrich).
    `tables`: the ReferenceTables `join` stages read (streams.runtime.enrichment.build_tables)."""
    from processors.normalise import CdcNormaliser, ClickstreamNormaliser, IotNormaliser
    from processors.validate import SchemaValidator
    from streams.runtime.enrichment import build_enrichment

    bus = config.bus
    stages: dict[str, list] = {}
    decoders: dict[str, Decoder] = {}
    for index, source in enumerate(config.sources):
        chain = []
        refs = source.schemas or DEFAULT_SCHEMAS.get(source.kind)
        if refs:
            chain.append(SchemaValidator({source.topic: refs}))
        named = {k: v for k, v in (("source", source.source), ("detail_type", source.detail_type)) if v}
        if source.kind == "iot":
            chain.append(IotNormaliser(account=bus.account, region=bus.region, **named))
        elif source.kind == "clickstream":
            chain.append(ClickstreamNormaliser(account=bus.account, region=bus.region, **named))
        elif source.kind == "cdc":
            named.pop("detail_type", None)  # CDC detail-types come from the table: <table>.created ...
            chain.append(CdcNormaliser(account=bus.account, region=bus.region, **named))
        # CDC topics carry tombstones after deletes; everywhere else a null value is an error
        decoders[source.topic] = Decoder(tombstones="keep" if source.kind == "cdc" else "fail")
        chain += build_enrichment(config, index, source.enrich, tables or {})
        stages[source.topic] = chain
    return stages, decoders


def build_pipeline(config: Config) -> Pipeline:
    from streams.runtime.enrichment import build_tables

    tables = build_tables(config)
    stages, decoders = build_stages(config, tables)
    pipeline = Pipeline(stages, build_router(config), decoders)
    pipeline.tables = tables  # filled from their topics by the worker before it reports ready
    return pipeline


def _s3(rule: str, t: TargetSettings, name: str, limit: int, dead_letters):
    from streams.config.targets import parse_settings
    from streams.targets.s3.target import S3Settings, S3Target

    return S3Target(name, parse_settings(S3Settings, rule, t), limit, dead_letters)


def _timestream(rule: str, t: TargetSettings, name: str, limit: int, dead_letters):
    from streams.config.targets import parse_settings
    from streams.targets.timestream import TimestreamSettings, TimestreamTarget

    return TimestreamTarget(name, parse_settings(TimestreamSettings, rule, t), limit, dead_letters)


def _influxdb(rule: str, t: TargetSettings, name: str, limit: int, dead_letters):
    from streams.config.targets import parse_settings
    from streams.targets.influxdb.target import InfluxSettings, InfluxTarget

    return InfluxTarget(name, parse_settings(InfluxSettings, rule, t), limit, dead_letters)


# target type -> builder(rule name, target settings, target name, in-flight limit, dead letters)
SINK_BUILDERS = {"s3": _s3, "timestream": _timestream, "influxdb": _influxdb}


def validate_targets(config: Config) -> None:
    """Parse every sink target's own settings now, so a bad key stops `eventweir run` with its path."""
    from streams.config.targets import parse_settings
    from streams.targets.influxdb.target import InfluxSettings
    from streams.targets.s3.target import S3Settings
    from streams.targets.timestream import TimestreamSettings

    models = {"s3": S3Settings, "timestream": TimestreamSettings, "influxdb": InfluxSettings}
    for rule in config.rules:
        for t in rule.targets:
            if t.type in models:
                parse_settings(models[t.type], rule.name, t)


def build_targets(config: Config, producer: BatchProducer, dead_letters, waitingroom=None, rules=None,
                  reuse=None) -> dict:
    """Targets by name. `reuse`: running targets (hot reload); one whose settings did not change
    is kept as it is, with its in-flight deliveries, instead of being rebuilt."""
    from streams.targets.http import HttpTarget
    from streams.targets.kafka import KafkaTarget
    from streams.targets.log import LogTarget
    from streams.targets.retry import RetryPolicy

    targets = {}
    limit = config.runtime.max_in_flight
    for rule in config.rules if rules is None else rules:
        if rule.state != "ENABLED":
            continue
        for t in rule.targets:
            name = target_name(rule.name, t.id)
            old = (reuse or {}).get(name)
            if old is not None and getattr(old, "spec", None) == t:
                targets[name] = old
                continue
            if t.type == "kafka":
                target = KafkaTarget(name, t.topic, producer, limit, dead_letters)
            elif t.type == "log":
                target = LogTarget(name, limit, dead_letters)
            elif t.type == "http":
                target = HttpTarget(name, t, limit, dead_letters)
            elif t.type == "waitingroom":
                from streams.targets.waitingroom import WaitingRoomTarget

                if waitingroom is None:
                    raise ConfigError(f"rules[{rule.name}].targets[{t.id}]: a waitingroom target needs the "
                                      "`waitingroom` section (rooms, redis_url, admin_token)")
                extra = t.model_extra or {}
                if not extra.get("reply_topic"):
                    raise ConfigError(f"rules[{rule.name}].targets[{t.id}].reply_topic: required for a waitingroom target")
                target = WaitingRoomTarget(name, waitingroom, extra["reply_topic"], producer, limit,
                                           dead_letters, bus_topic=extra.get("bus_topic"))
            elif t.type in SINK_BUILDERS:
                target = SINK_BUILDERS[t.type](rule.name, t, name, limit, dead_letters)
            else:
                raise NotImplementedError(f"rules[{rule.name}].targets[{t.id}]: target type {t.type!r} is not available yet")
            target.spec = t  # the rule's settings, compared on hot reload
            target.retry_policy = RetryPolicy.from_settings(t.retry_policy, config.routing)
            target.dead_letter_topic = t.dead_letter_topic
            targets[name] = target
    return targets
