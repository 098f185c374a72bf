"""The router: for each event, the rules it matches, and for each of their targets a Delivery.

Patterns are compiled once into a `RuleSet` (ruleset.py), whose cost per event does not
grow with the number of rules. A rule without a pattern takes every event. Target payloads are
rendered here (Input / InputPath / InputTransformer, else the event as JSON, serialised once
however many targets take it), so targets only move bytes.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice, repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TypeAlias

import orjson

from processors.core import Delivery, Event, Failure, PlainMatches, SourceRecord, splice_json
from processors.decode import why_not_decoded
from processors.paths import get_path, split_path

from .ruleset import RuleSet

if TYPE_CHECKING:
    from processors.decode import Decoder

STAGE = "route"
# The rule (and target) name of a bus's unmatched events: `unmatched:<bus>`. Rule names cannot
# hold a colon, so it names no rule; the runtime counts it as unmatched, not as a rule's matches.
UNMATCHED_PREFIX = "unmatched:"

_value = attrgetter("value")

# a plain rule's appends to its PlainMatches: (records.append, keys.append, values.append)
Collector: TypeAlias = tuple[Callable[[SourceRecord], None], Callable[[bytes | None], None], Callable[[bytes], None]]


@dataclass(frozen=True)
class RouteTarget:
    name: str  # "<rule>/<target id>": unique across the rule set, used for metrics and dead letters
    key_path: tuple[str, ...] | None = None
    render: Callable[..., bytes | None] | None = None


@dataclass(frozen=True)
class Route:
    rule: str
    targets: tuple[RouteTarget, ...]
    pattern: dict[str, Any] | None = None


parse_key_path = split_path  # a target's `key`: `$.detail.device_id` (processors/paths.py)


def extract_key(body: dict[str, Any], path: tuple[str, ...]) -> bytes | None:
    """The output record's key: the value at `path`, as text or JSON; None when it has none."""
    value = get_path(body, path)
    if value is None:
        return None
    return value.encode() if isinstance(value, str) else orjson.dumps(value)


def ingestion_time(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_json(event: Event) -> bytes:
    """The event as JSON: its record's bytes with what stages appended (core.Event.added), else
    its body serialised. Raises what orjson raises for a body JSON cannot hold (why_not_rendered)."""
    if event.added is not None:
        return splice_json(event.record.value, event.added, len(event.body))  # type: ignore[arg-type]  # a body: bytes
    return orjson.dumps(event.body)


def as_json(event: Event) -> bytes | None:
    """`event_json`, or None when JSON cannot hold the body (_deliver then dead-letters it per target)."""
    try:
        return event_json(event)
    except TypeError:  # orjson.JSONEncodeError is one
        return None


def why_not_rendered(exc: Exception) -> str:
    """A dead letter's reason for an event that could not be written out for a target."""
    if isinstance(exc, TypeError) and "Recursion limit" in str(exc):
        return ("the event is nested deeper than JSON output allows (254 levels with the envelope); "
                "flatten it before it reaches a target")
    return f"{type(exc).__name__}: {exc}"


class Router:
    def __init__(self, routes: list[Route], rule_arn_prefix: str = "arn:aws:events:us-east-1:000000000000:rule/",
                 engine: str = "auto", unmatched: str | None = None) -> None:
        """`engine`: the RuleSet's matching engine (ruleset.py): "auto", "index", "bitmask" or "reference".
        `unmatched`: the target (UNMATCHED_PREFIX + bus) that takes, as they are, the events no rule matched."""
        self.unmatched = unmatched
        self.routes = {route.rule: route for route in routes}
        self.match_all = [route for route in routes if route.pattern is None]
        patterned = {route.rule: route.pattern for route in routes if route.pattern is not None}
        self.ruleset: RuleSet | None = None
        if patterned:
            self.ruleset = RuleSet(patterned, engine=engine)
        self.arn_prefix = rule_arn_prefix
        # rule -> its target names, for rules whose every target takes the event as it is (no
        # transform, no key path): their deliveries need nothing but the event's JSON
        self.plain_targets = {
            route.rule: tuple(t.name for t in route.targets) for route in routes
            if all(t.render is None and t.key_path is None for t in route.targets)}
        # (engine, decoder) -> events routed since the last `take_read_by`: how the events were
        # read (decoder "msgspec": only as far as the rules read; "orjson": whole; "simdjson":
        # checked, not read) and matched (engine: RuleSet.engine, "none" without patterns)
        self.read_by: dict[tuple[str, str], int] = {}

    def take_read_by(self) -> dict[tuple[str, str], int]:
        """The counts of `read_by`, which start again from zero (for a metrics exporter)."""
        counts, self.read_by = self.read_by, {}
        return counts

    def _count(self, engine: str, decoder: str, n: int) -> None:
        self.read_by[(engine, decoder)] = self.read_by.get((engine, decoder), 0) + n

    @property
    def forwards_raw(self) -> bool:
        """Every rule takes every event and every target forwards it unchanged: routing never
        reads a body, so the pipeline can pass records through without decoding them into dicts."""
        return self.ruleset is None and all(
            t.render is None and t.key_path is None for route in self.match_all for t in route.targets)

    def route_raw(self, records: list[SourceRecord], matched: dict[str, int]) -> list[Delivery]:
        """Deliveries of the records' own bytes to every target (when `forwards_raw`)."""
        out: list[Delivery] = []
        self._count("none", "simdjson", len(records))
        if not self.match_all and self.unmatched is not None:  # no rule at all: none matched
            matched[self.unmatched] = matched.get(self.unmatched, 0) + len(records)
            return [Delivery(self.unmatched, r, r.value, r.key, self.unmatched) for r in records]
        for route in self.match_all:
            matched[route.rule] = matched.get(route.rule, 0) + len(records)
            rule = route.rule
            for target in route.targets:
                name = target.name
                out += [Delivery(name, r, r.value, r.key, rule) for r in records]
        return out

    def matching(self, body: dict[str, Any]) -> list[Route]:
        if self.ruleset is None:
            return self.match_all
        names = self.ruleset.matching(body)
        if not names:
            return self.match_all
        return self.match_all + [self.routes[name] for name in names]

    def route(self, events: list[Event], failures: list[Failure], matched: dict[str, int],
              raw_bodies: bool = False, plain_out: dict[str, PlainMatches] | None = None) -> list[Delivery]:
        """Deliveries for every (event, matching rule, target), each target's in event order.

        `raw_bodies`: the events' bodies are their records' values as decoded, unchanged, so an
        untransformed delivery can carry the original bytes instead of serialising again.
        `plain_out`: see route_records; the values collected are the events' JSON."""
        out: list[Delivery] = []
        if not events:
            return out
        self._count(self.ruleset.engine if self.ruleset is not None else "none", "orjson", len(events))
        if self.match_all:
            self._route_to_all(events, failures, matched, raw_bodies, out)
        elif self.ruleset is None and self.unmatched is not None:  # no rule at all: none matched
            for event in events:
                self._to_unmatched(event, raw_bodies, failures, matched, out)
        if self.ruleset is not None:
            ruleset, routes, plain, append = self.ruleset, self.routes, self.plain_targets, out.append
            collect, before = self._collectors(plain_out, runs_known=False) if plain_out is not None else ({}, None)
            unmatched = self.unmatched if not self.match_all else None
            for event in events:
                names = ruleset.matching(event.body)
                if not names and unmatched is not None:
                    self._to_unmatched(event, raw_bodies, failures, matched, out)
                elif names:
                    record = event.record
                    payload = record.value if raw_bodies else None  # else made when a target first needs it
                    for name in names:
                        targets = plain.get(name)
                        if targets is not None and payload is None:
                            payload = as_json(event)
                        if targets is None or payload is None:  # a rendered target, or JSON cannot hold it
                            matched[name] = matched.get(name, 0) + 1
                            payload = self._deliver(event, routes[name], payload, failures, out)
                            continue
                        add = collect.get(name)
                        if add is not None:
                            add[0](record)
                            add[1](record.key)
                            add[2](payload)
                            continue
                        matched[name] = matched.get(name, 0) + 1
                        # the common case, inline: the event's JSON as it is, keyed as it came
                        for target in targets:
                            append(Delivery(target, record, payload, record.key, name))
            if before is not None:
                self._count_collected(plain_out, before, matched)  # type: ignore[arg-type]  # set with before
        return out

    def _collectors(self, plain: dict[str, PlainMatches],
                    runs_known: bool) -> tuple[dict[str, Collector], dict[str, int]]:
        """Per plain rule, the appends of its PlainMatches in `plain` (made if missing), and how
        many it held before, for `_count_collected`. Unless the caller keeps the matches' runs
        (`runs_known`), they are unknown from now on."""
        collect: dict[str, Collector] = {}
        before: dict[str, int] = {}
        for rule in self.plain_targets:
            m = plain.get(rule)
            if m is None:
                m = plain[rule] = PlainMatches()
            if not runs_known:
                m.runs = None
            collect[rule] = (m.records.append, m.keys.append, m.values.append)
            before[rule] = len(m)
        return collect, before

    @staticmethod
    def _count_collected(plain: dict[str, PlainMatches], before: dict[str, int], matched: dict[str, int]) -> None:
        for rule, n in before.items():
            if len(plain[rule]) > n:
                matched[rule] = matched.get(rule, 0) + len(plain[rule]) - n

    CHUNK = 256  # records matched and routed at a time (route_records): a chunk's values stay in cache

    def route_records(self, records: list[SourceRecord], decoder: Decoder, failures: list[Failure], matched: dict[str, int],
                      plain_out: dict[str, PlainMatches] | None = None) -> list[Delivery]:
        """Decode and route in one pass, for a source without stages. Where the rule set reads
        lines decoded only as far as its rules read (`RuleSet.decoder`, engines/partial.py), the
        records are matched on their bytes; else each body is parsed by orjson, matched and
        dropped right after. Either way an event is decoded whole only for a rule with a target
        that needs it (an input transformer or a key path). A record that is not a JSON object
        goes to `decoder.decode`, which fails or keeps it exactly as the decode stage does.

        A rule whose targets all take the event as it came (`plain_targets`) collects its
        records, with their keys and values, in `plain_out` (rule -> PlainMatches) for the
        caller to hand to its targets as they are; without `plain_out` they become Deliveries
        here. Either way each target's deliveries are in event order."""
        if self.match_all or self.ruleset is None:
            return self.route(decoder.decode(records, failures), failures, matched, raw_bodies=True)
        out: list[Delivery] = []
        plain = {} if plain_out is None else plain_out
        parts = getattr(records, "parts", None)
        collect, before = self._collectors(plain, runs_known=parts is not None)
        ruleset, routes, loads = self.ruleset, self.routes, orjson.loads
        matching, by_bytes = ruleset.matching, ruleset.decoder != "orjson"
        decoded = ruleset.decoded
        # the records are taken a partition's run at a time, and the run in chunks of CHUNK: on
        # the bytes path a chunk's values are matched in one call, then routed, while they are
        # still in the CPU's cache (a whole batch's values, megabytes, would have left it)
        rest = iter(records)
        held = dict(before)
        answered = 0
        rows: Iterable[tuple[SourceRecord, bytes | None, list[str] | None]]
        chunk_size = self.CHUNK
        for part, count in parts or [(None, len(records))]:
            for left in range(count, 0, -chunk_size):
                batch = list(islice(rest, min(left, chunk_size)))
                if by_bytes:
                    values = list(map(_value, batch))
                    # a tombstone (None) reads as b"", which answers None: the decoder decides
                    rows = zip(batch, values, ruleset.matching_bytes(
                        [v or b"" for v in values] if None in values else values))
                else:
                    rows = zip(batch, repeat(None), repeat(None))
                for record, value, names in rows:
                    body = None
                    if not by_bytes:
                        value = record.value
                        try:
                            body = loads(value)  # type: ignore[arg-type]  # a tombstone (None) raises: the decoder decides
                        except Exception:  # noqa: BLE001 - not JSON (or beyond orjson), or a tombstone
                            names = None if value is None else ruleset.beyond_doubles(value)
                        else:
                            names = matching(body) if type(body) is dict else None
                    if names is None:  # the decoder decides (route counts the events it keeps)
                        out += self.route(decoder.decode([record], failures), failures, matched, raw_bodies=True)
                        continue
                    answered += 1
                    if not names:
                        if self.unmatched is not None:
                            matched[self.unmatched] = matched.get(self.unmatched, 0) + 1
                            out.append(Delivery(self.unmatched, record, value, record.key, self.unmatched))
                        continue
                    for name in names:
                        add = collect.get(name)
                        if add is not None:
                            add[0](record)
                            add[1](record.key)
                            add[2](value)  # type: ignore[arg-type]  # bytes: it was read above
                            continue
                        matched[name] = matched.get(name, 0) + 1
                        if body is None:  # read only as far as the rules read: decoded whole for this rule
                            body = self._whole(record, routes[name], failures)
                            if body is None:
                                continue
                        self._deliver(Event(record, body), routes[name], value, failures, out)
            if parts is not None:  # each plain rule's run of this partition: a step per rule, not per record
                for rule, n in held.items():
                    m = plain[rule]
                    if len(m.records) > n and m.runs is not None:
                        m.runs.append((part, len(m.records) - n))
                    held[rule] = len(m.records)
        self._count_read(ruleset, answered, decoded)
        self._count_collected(plain, before, matched)
        if plain_out is None:
            for rule, m in plain.items():
                for target in self.plain_targets[rule]:
                    out += [Delivery(target, r, v, k, rule)
                            for r, k, v in zip(m.records, m.keys, m.values, strict=True)]
        return out

    def _whole(self, record: SourceRecord, route: Route, failures: list[Failure]) -> dict[str, Any] | None:
        """The event of a record its rule's targets need whole; None, with a failure per target,
        when orjson cannot decode it (a number beyond the double range that no rule reads:
        engines/partial.py)."""
        try:
            body: dict[str, Any] = orjson.loads(record.value)  # type: ignore[arg-type]  # matched: bytes
            return body
        except orjson.JSONDecodeError as exc:
            reason = f"the event cannot be decoded whole for this target: {why_not_decoded(exc)}"
            failures += [Failure(record, "transform", "TransformFailed", reason, rule=route.rule, target=t.name)
                         for t in route.targets]
            return None

    def _count_read(self, ruleset: RuleSet, n: int, decoded_before: int) -> None:
        """Count `n` events routed by `ruleset` in `read_by`: those its structs read (msgspec), the
        rest read whole by orjson."""
        by_structs = ruleset.decoded - decoded_before
        if by_structs:
            self._count(ruleset.decoder.removeprefix("partial-"), "msgspec", by_structs)
        if n > by_structs:
            self._count(ruleset.engine, "orjson", n - by_structs)

    def _route_to_all(self, events: list[Event], failures: list[Failure], matched: dict[str, int], raw_bodies: bool,
                      out: list[Delivery]) -> None:
        """Rules without a pattern take the whole batch: one pass per target, not per event."""
        payloads: list[bytes | None] | None = None  # the events' JSON, made once for every target
        for route in self.match_all:
            rule = route.rule
            matched[rule] = matched.get(rule, 0) + len(events)
            for target in route.targets:
                one = Route(rule, (target,))
                if target.render is not None or target.key_path is not None:
                    for event in events:
                        self._deliver(event, one, event.record.value if raw_bodies else None, failures, out)
                    continue
                name = target.name
                if raw_bodies:  # the records' own bytes (a kept tombstone's None too)
                    out += [Delivery(name, e.record, e.record.value, e.record.key, rule) for e in events]
                    continue
                if payloads is None:
                    payloads = [as_json(e) for e in events]
                if None not in payloads:
                    out += [Delivery(name, e.record, p, e.record.key, rule) for e, p in zip(events, payloads, strict=True)]
                    continue
                for event, payload in zip(events, payloads, strict=True):
                    if payload is None:  # JSON cannot hold it: dead-lettered for this target, saying why
                        self._deliver(event, one, None, failures, out)
                    else:
                        out.append(Delivery(name, event.record, payload, event.record.key, rule))

    def _to_unmatched(self, event: Event, raw_bodies: bool, failures: list[Failure], matched: dict[str, int],
                      out: list[Delivery]) -> None:
        """The event, as JSON, to its bus's unmatched target."""
        name = self.unmatched
        assert name is not None
        matched[name] = matched.get(name, 0) + 1
        record = event.record
        try:
            payload = record.value if raw_bodies else event_json(event)
        except Exception as exc:  # orjson's limits: dead-lettered like any delivery that cannot be rendered
            failures.append(Failure(record, "transform", "TransformFailed", why_not_rendered(exc),
                                    rule=name, target=name))
            return
        out.append(Delivery(name, record, payload, record.key, name))

    def _deliver(self, event: Event, route: Route, as_json: bytes | None, failures: list[Failure],
                 out: list[Delivery]) -> bytes | None:
        """Append this event's deliveries for the route's targets; returns the event's JSON once made."""
        body, record = event.body, event.record
        payload: bytes | None
        for target in route.targets:
            try:
                if target.render is None:
                    payload = as_json = as_json or event_json(event)
                else:
                    payload = target.render(
                        body, route.rule, self.arn_prefix + route.rule, ingestion_time(record.timestamp_ms)
                    )
                    if payload is None:
                        continue
                key = record.key if target.key_path is None else extract_key(body, target.key_path)
            except Exception as exc:
                failures.append(Failure(
                    record, "transform", "TransformFailed", why_not_rendered(exc),
                    rule=route.rule, target=target.name,
                ))
                continue
            out.append(Delivery(target.name, record, payload, key, route.rule))
        return as_json
