"""Targets: where deliveries go. Each settles the worker's offset tickets once its data is durable.

REGISTRY is the one place a target type is named: type -> the module implementing it. That module
defines two things (see CONTRIBUTING.md, "A new target"):

    Settings    a pydantic model of the target's own keys (extra='forbid'); the keys every target
                has (id, type, key, Input..., RetryPolicy, dead_letter_topic) are TargetSettings'
    build(context: BuildContext, name: str, settings: Settings) -> Target
    check_together(targets) -> problems     optional: clashes between targets of the type

`check_targets(config)` validates every target's keys with its module's `Settings` (a bad key is
reported with its path, `rules[name].targets[id].bucket: ...`); `build_target` makes one. The
generated configuration reference lists each type's keys from REGISTRY. A target's module is
imported on first use: a worker without an s3 target never imports boto3.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ValidationError

from streams.config import Config, ConfigError, RuleSettings, TargetSettings
from streams.config.targets import parse_settings, target_path

if TYPE_CHECKING:
    from streams.targets.base import Target

REGISTRY: dict[str, str] = {
    "kafka": "streams.targets.kafka",
    "bus": "streams.targets.bus",
    "log": "streams.targets.log",
    "http": "streams.targets.http",
    "s3": "streams.targets.s3.target",
    "timestream": "streams.targets.timestream",
    "influxdb": "streams.targets.influxdb.target",
    "waitingroom": "streams.targets.waitingroom",
    "apidestination": "streams.targets.apidestination",
}


@dataclass(frozen=True)
class BuildContext:
    """What the worker gives every target it builds."""

    producer: Any  # streams.kafka.producer.BatchProducer: the worker's producer, for Kafka outputs
    dead_letters: Any  # streams.targets.deadletter.DeadLetterWriter
    max_in_flight: int  # runtime.max_in_flight: deliveries it may hold before its partitions pause
    waitingroom: Any = None  # the waiting-room service, when the config has a `waitingroom` section
    allow_networks: tuple[str, ...] = ()  # routing.http_allow_networks: non-public networks http targets may call
    api_destinations: Any = None  # streams.targets.connections.ApiDestinations, when there is a control topic
    bus_topics: Mapping[str, str] = field(default_factory=dict)  # bus name -> topic, kept current (bus targets)
    max_hops: int = 5  # routing.max_hops: republishes to a bus one event may make


class TargetModule(Protocol):
    Settings: type[BaseModel]

    def build(self, context: BuildContext, name: str, settings: Any) -> Target: ...


@cache
def implementation(target_type: str) -> TargetModule:
    """The module implementing `target_type` (imported once, on first use)."""
    return importlib.import_module(REGISTRY[target_type])


def parse_target(rule: str, target: TargetSettings) -> BaseModel:
    """`target`'s own keys, validated by its type's `Settings`; ConfigError naming the key path."""
    if target.type not in REGISTRY:
        raise ConfigError(f"{target_path(rule, target.id)}.type: expected one of {', '.join(REGISTRY)}, "
                          f"got {target.type!r}")
    return parse_settings(implementation(target.type).Settings, rule, target)


def check_targets(config: Config, rules: list[RuleSettings] | None = None) -> None:
    """Validate every target of `rules` (default: the config's), all problems in one ConfigError.
    A type whose targets must not clash with each other (two s3 targets on the same keys) checks
    them together with its module's `check_together([(path, settings), ...]) -> [problem, ...]`."""
    problems = []
    by_type: dict[str, list[tuple[str, BaseModel]]] = {}
    for rule in config.rules if rules is None else rules:
        for target in rule.targets:
            try:
                settings = parse_target(rule.name, target)
            except ConfigError as exc:
                problems.append(str(exc))
                continue
            if rule.state == "ENABLED":
                by_type.setdefault(target.type, []).append((target_path(rule.name, target.id), settings))
    if rules is None:
        problems += _arn_map_problems(config)
    for target_type, targets in by_type.items():
        check_together = getattr(implementation(target_type), "check_together", None)
        if check_together is not None:
            problems += check_together(targets)
    if problems:
        raise ConfigError("\n".join(problems))


def _arn_map_problems(config: Config) -> list[str]:
    """api.arn_map's targets, checked as a rule's are: a wrong row stops the start, not a script's PutTargets."""
    problems = []
    for i, row in enumerate(config.api.arn_map):
        data = {k: v.replace("{name}", "name") if isinstance(v, str) else v for k, v in row.target.items()}
        try:
            parse_target("arn_map", TargetSettings.model_validate({"id": "t", **data}))
        except ConfigError as exc:
            problems += [f"api.arn_map[{i}].target." + line.removeprefix(target_path("arn_map", "t") + ".")
                         for line in str(exc).splitlines()]
        except ValidationError as exc:
            problems += [f"api.arn_map[{i}].target: " + "; ".join(e["msg"] for e in exc.errors())]
    return problems


def build_target(context: BuildContext, rule: str, name: str, spec: TargetSettings) -> Target:
    """A target of the type `spec` names, bound to its settings, not started yet."""
    settings = parse_target(rule, spec)
    try:
        target = implementation(spec.type).build(context, name, settings)
    except ValueError as exc:  # what the type needs from the rest of the config
        raise ConfigError(f"{target_path(rule, spec.id)}: {exc}") from None
    return target
