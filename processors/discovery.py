"""Schema discovery: the JSON Schema of each (source, detail-type) that flows on a bus, inferred
from the events themselves and bounded in size whatever they hold.

A schema is plain JSON Schema, the subset draft-04 and 2020-12 read alike: `type` (one name or a
sorted list), `properties`, `required` (never empty, as draft-04 wants), `items`; `{}` is any
value (what the depth cap leaves). No value is ever kept: no enums, no examples, strings are
only "string".

`merge(a, b)` is the least schema that fits both (union of properties, widened types: integer and
number make number, a null adds "null"; required = what both require). Versions therefore only
widen: every event that shaped an earlier version validates against the later ones. Two workers
that discover concurrently merge to the same schema whatever the order, except when a cap bites:
then `a`'s properties are kept and `b`'s new ones are taken by name until the cap (deterministic
in the registry topic's order, which every worker reads alike).

Bounds: `max_properties` per object, `max_depth`, `max_fields` per schema in all, `max_name`
characters per property name (an object that met one is marked CAPPED); `Discovery`
samples (the first `sample_first` events of a type, then every `sample_every`-th) and knows at
most `max_types` types (events of others are counted in `overflow`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from processors.core import Event, Failure

Schema = dict[str, Any]
TypeKey = tuple[str, str]  # (source, detail-type)

# on an object that met a cap: properties it does not list may have held anything
CAPPED = "x-eventweir-capped"
_TYPE_ORDER = ("array", "boolean", "integer", "null", "number", "object", "string")


@dataclass(frozen=True)
class Limits:
    max_properties: int = 100  # per object: more are left out (the schema allows them, unnamed)
    max_depth: int = 8  # nesting past this is `{}`, any value
    max_fields: int = 1000  # properties in one schema, all levels together
    max_name: int = 256  # a longer property name is left out: names are the one thing a schema keeps of an event


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"  # JSON 1.0 is an integer in 2020-12 but not in draft-04: number fits both
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def types_of(schema: Schema) -> set[str]:
    t = schema.get("type")
    if t is None:
        return set(_TYPE_ORDER)
    return {t} if isinstance(t, str) else set(t)


def _type_value(types: set[str]) -> str | list[str]:
    if "number" in types:
        types = types - {"integer"}  # widened: every integer is a number
    ordered = [t for t in _TYPE_ORDER if t in types]
    return ordered[0] if len(ordered) == 1 else ordered


class _Budget:
    """Properties a schema may still gain (Limits.max_fields less those it has)."""

    __slots__ = ("left",)

    def __init__(self, left: int):
        self.left = left


def count_fields(schema: Schema) -> int:
    n = 0
    for sub in schema.get("properties", {}).values():
        n += 1 + count_fields(sub)
    if "items" in schema:
        n += count_fields(schema["items"])
    return n


def infer(value: Any, limits: Limits = Limits()) -> Schema:
    """The schema of one JSON value, within the limits."""
    return _infer(value, limits, 0, _Budget(limits.max_fields))


def _infer(value: Any, limits: Limits, depth: int, budget: _Budget) -> Schema:
    if depth >= limits.max_depth:
        return {}
    name = _type_name(value)
    schema: Schema = {"type": name}
    if name == "object":
        properties: Schema = {}
        for key in (value if len(value) <= limits.max_properties else sorted(value)):
            if len(key) > limits.max_name:
                schema[CAPPED] = True
                continue
            if len(properties) >= limits.max_properties or budget.left <= 0:
                schema[CAPPED] = True
                break
            budget.left -= 1
            properties[key] = _infer(value[key], limits, depth + 1, budget)
        schema["properties"] = properties
        if properties:
            schema["required"] = sorted(properties)
    elif name == "array":
        items: Schema | None = None
        for element in value:
            # each element on a scratch budget: only what the merged items gain is charged
            element_schema = _infer(element, limits, depth + 1, _Budget(budget.left))
            items = (_trim(element_schema, limits, budget) if items is None
                     else _merge(items, element_schema, limits, depth + 1, budget))
        if items is not None:
            schema["items"] = items
    return schema


def merge(a: Schema, b: Schema, limits: Limits = Limits()) -> Schema:
    """The least schema that both `a`'s and `b`'s values validate against; `a`'s properties all stay."""
    return _merge(a, b, limits, 0, _Budget(limits.max_fields - count_fields(a)))


def _merge(a: Schema, b: Schema, limits: Limits, depth: int, budget: _Budget) -> Schema:
    if a == b:
        return a
    if not a or not b:
        return {}  # one side is any value
    ta, tb = types_of(a), types_of(b)
    out: Schema = {"type": _type_value(ta | tb)}
    if "object" in ta and "object" in tb:
        pa, pb = a.get("properties", {}), b.get("properties", {})
        # a property one side lists and a capped other side does not: that side's values of it are
        # unknown, so it may hold anything
        capped_a, capped_b = a.get(CAPPED, False), b.get(CAPPED, False)
        properties = {k: (_merge(s, pb[k], limits, depth + 1, budget) if k in pb else {} if capped_b else s)
                      for k, s in pa.items()}
        capped = capped_a or capped_b
        for key in sorted(k for k in pb if k not in pa):  # new ones by name, so a cap cuts deterministically
            if len(properties) >= limits.max_properties or budget.left <= 0:
                capped = True
                break
            budget.left -= 1
            properties[key] = {} if capped_a else _trim(pb[key], limits, budget)
        out["properties"] = properties
        required = sorted(set(a.get("required", ())) & set(b.get("required", ())))
        if required:
            out["required"] = required
        if capped:
            out[CAPPED] = True
    elif "object" in ta:  # only one side saw objects: its object keywords hold as they are
        out.update({k: v for k, v in a.items() if k in ("properties", "required", CAPPED)})
    elif "object" in tb:
        out.update(_trim_object(b, limits, budget))
    if "items" in a and "items" in b:
        out["items"] = _merge(a["items"], b["items"], limits, depth + 1, budget)
    elif "items" in a:
        out["items"] = a["items"]
    elif "items" in b:
        out["items"] = _trim(b["items"], limits, budget)
    return out


def _take(properties: Schema, budget: _Budget):
    for key in sorted(properties):
        if budget.left <= 0:
            return
        budget.left -= 1
        yield key, properties[key]


def _trim(schema: Schema, limits: Limits, budget: _Budget) -> Schema:
    """`schema` (new to the merge) less the properties the budget has no room for."""
    if "properties" not in schema and "items" not in schema:
        return schema
    out = {k: v for k, v in schema.items() if k not in ("properties", "required", "items", CAPPED)}
    if "properties" in schema:
        out.update(_trim_object(schema, limits, budget))
    if "items" in schema:
        out["items"] = _trim(schema["items"], limits, budget)
    return out


def _trim_object(schema: Schema, limits: Limits, budget: _Budget) -> Schema:
    given = schema.get("properties", {})
    properties = {k: _trim(s, limits, budget) for k, s in _take(given, budget)}
    out: Schema = {"properties": properties}
    required = [k for k in schema.get("required", ()) if k in properties]
    if required:
        out["required"] = required
    if schema.get(CAPPED) or len(properties) < len(given):
        out[CAPPED] = True
    return out


def covers(a: Schema, b: Schema, limits: Limits = Limits()) -> bool:
    """True when `a` already takes every value `b` does (merging `b` would change nothing)."""
    return merge(a, b, limits) == a


# --- versions ------------------------------------------------------------------------------------
def next_versions(versions: list[dict], observed: Schema, created: str, limits: Limits = Limits(),
                  keep: int = 50) -> list[dict] | None:
    """`versions` (oldest first, each {"version", "schema", "created"}) with a new one that also
    takes `observed`, or None when the latest takes it already. At most `keep` versions are kept,
    the oldest dropped; numbers never repeat."""
    if versions:
        latest = versions[-1]
        merged = merge(latest["schema"], observed, limits)
        if merged == latest["schema"]:
            return None
        number = int(latest["version"]) + 1
    else:
        merged, number = observed, 1
    return [*versions, {"version": number, "schema": merged, "created": created}][-keep:]


# --- observing the bus ---------------------------------------------------------------------------
class Discovery:
    """A stage at the end of a bus's chains: it reads envelopes and passes them on unchanged,
    keeping the join of the sampled events' schemas per type (`observed`) and which types
    changed since `take_changes()` was last called."""

    stage = "discovery"
    appends_json = True  # reads only (see core.Event.added)

    def __init__(self, limits: Limits = Limits(), sample_first: int = 10, sample_every: int = 100,
                 max_types: int = 1000):
        if sample_first < 0 or sample_every < 1 or max_types < 1:
            raise ValueError("sample_first >= 0, sample_every >= 1, max_types >= 1")
        self.limits = limits
        self.sample_first, self.sample_every, self.max_types = sample_first, sample_every, max_types
        self.seen: dict[TypeKey, int] = {}  # events per type: the sampling counter
        self.observed: dict[TypeKey, Schema] = {}
        self.changed: set[TypeKey] = set()
        self.refused: set[TypeKey] = set()  # types the registry has no room for (a subset of `seen`)
        self.sampled = 0
        self.overflow = 0  # events of a type past max_types (here or in the registry), not looked at

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        for event in events:
            self.observe(event.body)
        return events

    def observe(self, body: Any) -> None:
        if not isinstance(body, dict):
            return
        source, detail_type = body.get("source"), body.get("detail-type")
        if not (isinstance(source, str) and isinstance(detail_type, str)):
            return  # not an envelope: nothing to file it under
        key = (source, detail_type)
        n = self.seen.get(key)
        if n is None:
            if len(self.seen) >= self.max_types:
                self.overflow += 1
                return
            n = 0
        elif self.refused and key in self.refused:
            self.overflow += 1
            return
        self.seen[key] = n + 1
        if n >= self.sample_first and (n - self.sample_first) % self.sample_every:
            return
        self.sampled += 1
        schema = infer(body, self.limits)
        old = self.observed.get(key)
        new = schema if old is None else merge(old, schema, self.limits)
        if new != old:
            self.observed[key] = new
            self.changed.add(key)

    def refuse(self, key: TypeKey) -> None:
        """Stop inferring `key` (the registry is full): its events count as overflow from now on."""
        self.refused.add(key)
        self.observed.pop(key, None)
        self.changed.discard(key)

    def take_changes(self) -> dict[TypeKey, Schema]:
        """The observed schema of each type that changed since the last call."""
        changes = {key: self.observed[key] for key in sorted(self.changed)}
        self.changed.clear()
        return changes


# --- exports -------------------------------------------------------------------------------------
def schema_name(source: str, detail_type: str) -> str:
    """EventBridge's name for a discovered schema, `<source>@<DetailType>`, safe as a file name."""
    detail = "".join(word[:1].upper() + word[1:] for word in re.split(r"[^A-Za-z0-9]+", detail_type))
    return re.sub(r"[^A-Za-z0-9._-]", "_", source) + "@" + (detail or "Event")


def _definition_name(detail_type: str) -> str:
    name = "".join(word[:1].upper() + word[1:] for word in re.split(r"[^A-Za-z0-9]+", detail_type))
    return name if name and not name[0].isdigit() else "Detail" + name


def to_jsonschema(source: str, detail_type: str, schema: Schema, version: int) -> Schema:
    """A draft-04 document shaped like EventBridge's JSONSchemaDraft4 export: the envelope as
    AWSEvent, its detail under definitions."""
    doc: Schema = {"$schema": "http://json-schema.org/draft-04/schema#", "title": "AWSEvent",
                   "x-amazon-events-source": source, "x-amazon-events-detail-type": detail_type,
                   "x-eventweir-version": version}
    body = dict(schema)
    detail = body.get("properties", {}).get("detail")
    if detail is not None:
        name = _definition_name(detail_type)
        body["properties"] = {**body["properties"], "detail": {"$ref": f"#/definitions/{name}"}}
        doc["definitions"] = {name: detail}
    return {**doc, **body}


def to_openapi3(source: str, detail_type: str, schema: Schema, version: int) -> Schema:
    """An OpenAPI 3.0 document shaped like EventBridge's OpenApi3 export: components.schemas
    holds AWSEvent and its detail's schema."""
    event = _openapi(schema)
    schemas: Schema = {}
    detail = schema.get("properties", {}).get("detail")
    if detail is not None:
        name = _definition_name(detail_type)
        event["properties"]["detail"] = {"$ref": f"#/components/schemas/{name}"}
        schemas[name] = _openapi(detail)
    event["x-amazon-events-source"] = source
    event["x-amazon-events-detail-type"] = detail_type
    return {"openapi": "3.0.0", "info": {"version": str(version), "title": schema_name(source, detail_type)},
            "paths": {}, "components": {"schemas": {"AWSEvent": event, **schemas}}}


def _openapi(schema: Schema) -> Schema:
    """OpenAPI 3.0's schema dialect: one type per schema (anyOf for more), null as `nullable`."""
    if not schema:
        return {}
    types = types_of(schema)
    nullable = "null" in types
    kinds = [t for t in _TYPE_ORDER if t in types and t != "null"]
    branches = []
    for kind in kinds:
        branch: Schema = {"type": kind}
        if kind == "object":
            branch["properties"] = {k: _openapi(s) for k, s in schema.get("properties", {}).items()}
            if schema.get("required"):
                branch["required"] = list(schema["required"])
        elif kind == "array":
            branch["items"] = _openapi(schema.get("items", {}))
        if nullable:
            branch["nullable"] = True
        branches.append(branch)
    if not branches:
        return {"nullable": True}  # only nulls seen
    return branches[0] if len(branches) == 1 else {"anyOf": branches}
