"""Schema discovery, pure: the inferred schemas take every event they were inferred from, widen
into new versions, and stay within their caps whatever the events hold."""
from __future__ import annotations

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.core import Event
from processors.discovery import (
    Discovery,
    Limits,
    count_fields,
    infer,
    merge,
    next_versions,
    to_jsonschema,
    to_openapi3,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=5),
    max_leaves=30,
)
envelopes = st.fixed_dictionaries({
    "source": st.sampled_from(["shop.orders", "iot.station"]),
    "detail-type": st.sampled_from(["Order Placed", "Reading"]),
    "detail": st.dictionaries(st.text(max_size=4), json_values, max_size=6),
})
SMALL = Limits(max_properties=3, max_depth=3, max_fields=6)


def _depth(schema: dict) -> int:
    below = [*schema.get("properties", {}).values(), *([schema["items"]] if "items" in schema else [])]
    return 1 + max((_depth(s) for s in below), default=0)


def _objects(schema: dict):
    yield schema
    for sub in [*schema.get("properties", {}).values(), *([schema["items"]] if "items" in schema else [])]:
        yield from _objects(sub)


@settings(max_examples=150, deadline=None)
@given(st.lists(envelopes, min_size=1, max_size=8), st.sampled_from([Limits(), SMALL]))
def test_every_event_used_validates_against_the_schema_in_both_drafts(events, limits):
    schema = infer(events[0], limits)
    for event in events[1:]:
        schema = merge(schema, infer(event, limits), limits)
    for validator in (jsonschema.Draft4Validator, jsonschema.Draft202012Validator):
        validator.check_schema(schema)
        for event in events:
            validator(schema).validate(event)
    exported = to_jsonschema("s", "Order Placed", schema, 1)
    jsonschema.Draft4Validator.check_schema(exported)
    for event in events:
        jsonschema.Draft4Validator(exported).validate(event)


@settings(max_examples=100, deadline=None)
@given(st.lists(json_values, min_size=1, max_size=6))
def test_caps_hold_whatever_the_values(values):
    schema = infer(values[0], SMALL)
    for value in values[1:]:
        schema = merge(schema, infer(value, SMALL), SMALL)
        assert count_fields(schema) <= SMALL.max_fields
        assert _depth(schema) <= SMALL.max_depth + 1
        assert all(len(s.get("properties", {})) <= SMALL.max_properties for s in _objects(schema))
    for value in values:  # what the caps left out is allowed, not refused
        jsonschema.Draft202012Validator(schema).validate(value)


@settings(max_examples=100, deadline=None)
@given(json_values, json_values)
def test_merge_is_order_free_and_keeps_what_it_had(a, b):
    sa, sb = infer(a), infer(b)
    assert merge(sa, sb) == merge(sb, sa)
    assert merge(merge(sa, sb), sa) == merge(sa, sb)


def test_no_value_is_kept():
    schema = infer({"source": "s", "detail-type": "d", "detail": {"card": "4111-1111", "n": 42, "tags": ["vip"]}})
    assert "4111" not in repr(schema) and "42" not in repr(schema) and "vip" not in repr(schema)


def _event(detail: dict) -> dict:
    return {"source": "shop", "detail-type": "Order Placed", "detail": detail}


def test_a_new_optional_field_or_a_widened_type_makes_a_new_version_and_the_same_shape_does_not():
    v = next_versions([], infer(_event({"id": 1})), "t1")
    assert v is not None and [x["version"] for x in v] == [1]
    assert next_versions(v, infer(_event({"id": 7})), "t2") is None  # same shape: no version
    v2 = next_versions(v, infer(_event({"id": 2, "coupon": "X"})), "t2")
    assert v2 is not None and [x["version"] for x in v2] == [1, 2]
    detail = v2[-1]["schema"]["properties"]["detail"]
    assert "coupon" in detail["properties"] and detail["required"] == ["id"]  # optional: absent before
    v3 = next_versions(v2, infer(_event({"id": 2.5})), "t3")  # integer -> number
    assert v3 is not None and v3[-1]["schema"]["properties"]["detail"]["properties"]["id"] == {"type": "number"}
    v4 = next_versions(v3, infer(_event({"id": None})), "t4")  # and null
    assert v4 is not None and v4[-1]["schema"]["properties"]["detail"]["properties"]["id"]["type"] == ["null", "number"]
    assert [x["version"] for x in next_versions(v4, infer(_event({"x": 1})), "t5", keep=2)] == [4, 5]


def test_discovery_samples_caps_types_and_passes_events_on_unchanged():
    d = Discovery(sample_first=2, sample_every=10, max_types=2)
    events = [Event(None, {"source": "a", "detail-type": "T", "detail": {"n": i}}) for i in range(25)]
    assert d.process(events, []) is events
    assert d.sampled == 2 + 3  # events 0, 1, then 2, 12, 22
    d.process([Event(None, {"source": "b", "detail-type": "T"}), Event(None, {"source": "c", "detail-type": "T"}),
               Event(None, {"not": "an envelope"})], [])
    assert sorted(d.observed) == [("a", "T"), ("b", "T")] and d.overflow == 1
    assert sorted(d.take_changes()) == [("a", "T"), ("b", "T")] and d.take_changes() == {}


def test_openapi_export_has_one_type_per_schema():
    schema = merge(infer(_event({"a": 1, "b": "x"})), infer(_event({"a": "y", "b": None})))
    doc = to_openapi3("shop", "Order Placed", schema, 3)
    detail = doc["components"]["schemas"]["OrderPlaced"]
    assert doc["components"]["schemas"]["AWSEvent"]["properties"]["detail"] == {"$ref": "#/components/schemas/OrderPlaced"}
    assert detail["properties"]["a"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert detail["properties"]["b"] == {"type": "string", "nullable": True}


def test_a_property_name_past_max_name_is_left_out_and_the_object_says_so():
    limits = Limits(max_name=8)
    schema = infer({"short": 1, "x" * 9: {"deep": True}}, limits)
    assert list(schema["properties"]) == ["short"] and schema["x-eventweir-capped"] is True
    jsonschema.Draft202012Validator(schema).validate({"short": 1, "x" * 9: {"deep": True}})
    # a property the capped side cannot describe may hold anything after a merge
    merged = merge(infer({"x" * 9: 1, "short": 1}, Limits()), schema, limits)
    assert merged["properties"]["x" * 9] == {}


@settings(max_examples=100, deadline=None)
@given(st.lists(envelopes, min_size=1, max_size=8))
def test_versions_only_widen_and_each_takes_every_event_before_it(events):
    versions: list = []
    for n, event in enumerate(events):
        versions = next_versions(versions, infer(event), f"t{n}") or versions
        latest = versions[-1]["schema"]
        for earlier in events[: n + 1]:
            jsonschema.Draft4Validator(latest).validate(earlier)
    assert [v["version"] for v in versions] == list(range(1, len(versions) + 1))
    for older, newer in zip(versions, versions[1:]):
        assert older["schema"] != newer["schema"] and merge(newer["schema"], older["schema"]) == newer["schema"]


def test_a_type_the_registry_has_no_room_for_is_no_longer_inferred():
    d = Discovery(sample_first=100)
    d.observe(_event({"id": 1}))
    d.refuse(("shop", "Order Placed"))
    d.observe(_event({"id": 2, "new": True}))
    assert d.observed == {} and d.take_changes() == {} and d.overflow == 1 and d.sampled == 1
