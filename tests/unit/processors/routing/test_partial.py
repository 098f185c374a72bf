"""RuleSet.matching_bytes (engines/partial.py): lines decoded only as far as the rules read, by
msgspec structs, give the answers the reference matcher gives on the event orjson reads, by every
way (partial-index, partial-bitmask, orjson), and whatever the structs cannot say takes today's path."""
import json
import logging

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.core import SourceRecord
from processors.decode import Decoder
from processors.routing import RuleSet, compile_pattern
from processors.routing.router import Route, Router, RouteTarget, parse_key_path
from tests.unit.processors.routing.test_properties import KEYS, array_events, more_conditions, rule_patterns, values

WAYS = ("partial-index", "partial-bitmask", "orjson")


def expected(rules, line):
    """The reference: every pattern on the event orjson reads; None where orjson refuses the line."""
    try:
        ev = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if type(ev) is not dict:
        return None
    return [n for n, p in rules.items() if compile_pattern(p).matches(ev)]


def by_every_way(rules, lines, **kw):
    """{way: answers} for `lines`, each way forced (and the default `matching_bytes` too)."""
    rs = RuleSet(rules, engine="auto", **kw)
    out = {"matching_bytes": rs.matching_bytes(lines)}
    assert rs.partial is not None
    for way in WAYS:
        if way in rs.partial.ways or way == "orjson":
            out[way] = rs.partial.matching_bytes_by(lines, way)
            out[way + " again"] = rs.partial.matching_bytes_by(lines, way)  # memos, compiled checks
    return out


def assert_all_ways(rules, lines, **kw):
    want = [expected(rules, line) for line in lines]
    for way, got in by_every_way(rules, lines, **kw).items():
        assert got == want, (way, lines)


# JSON values the orjson-made events of test_properties do not hold: integers past 64 bits and
# 2**53, non-ASCII strings (written escaped by json.dumps, raw by orjson)
odd_scalars = st.sampled_from([2**64 + 1, -(2**63) - 1, 2**53 + 1, 10**30, -0.0, 1e300, "é", "xé", "\u2028", 0, 1.0])
odd_values = st.one_of(values, odd_scalars, st.lists(st.one_of(odd_scalars, values), max_size=3))
# keys that span levels of the paths the patterns read (a.b, c.a) at the top and one level down
DOTTED = KEYS + ["a.b", "c.a"]
dotted_events = st.dictionaries(
    st.sampled_from(DOTTED),
    st.one_of(odd_values, st.dictionaries(st.sampled_from(DOTTED), odd_values, max_size=2),
              st.lists(st.dictionaries(st.sampled_from(KEYS), odd_values, max_size=2), max_size=2)),
    max_size=4)


def lines_of(evs, ascii_only):
    # json.dumps: integers of any size, escapes (ensure_ascii) or raw UTF-8
    return [json.dumps(ev, ensure_ascii=ascii_only).encode() for ev in evs]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rule_patterns, min_size=1, max_size=12), st.lists(st.one_of(array_events, dotted_events), min_size=1,
                                                                   max_size=6), st.booleans())
def test_matching_bytes_agrees_with_the_reference_by_every_way(patterns_, evs, ascii_only):
    rules = {f"r{i}": p for i, p in enumerate(patterns_)}
    assert_all_ways(rules, lines_of(evs, ascii_only))
    assert_all_ways(rules, lines_of(evs, ascii_only), compile_after=1)  # candidate checks generated at once


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rule_patterns, min_size=1, max_size=8), st.lists(st.one_of(array_events, dotted_events), min_size=1,
                                                                  max_size=6), st.sampled_from(WAYS))
def test_the_worker_routes_each_record_to_the_rules_the_reference_matches(patterns_, evs, way):
    """Router.route_records, the worker's path for a source without stages, with the rule set's
    decoder forced: each record reaches the targets of exactly the rules the reference matches,
    as its own bytes, whether its target takes it as it came or keyed by a path (decoded whole)."""
    rules = {f"r{i}": p for i, p in enumerate(patterns_)}
    router = Router([Route(name, (RouteTarget(f"{name}/t", key_path=parse_key_path("$.a") if i % 2 else None),), p)
                     for i, (name, p) in enumerate(rules.items())],
                    engine="bitmask" if way == "partial-bitmask" else "index")
    router.ruleset.matching_bytes([])
    router.ruleset.partial._decide(way, {})
    lines = lines_of(evs, True)
    records = [SourceRecord("in", 0, i, 0, b"k", line) for i, line in enumerate(lines)]
    failures: list = []
    out = router.route_records(records, Decoder(), failures, {})
    assert not failures
    assert sorted((d.rule, d.record.offset) for d in out) == sorted(
        (name, i) for i, line in enumerate(lines) for name in expected(rules, line))
    assert all(d.payload == d.record.value for d in out)


WIDE = ["a", "b", "c", "d", "e", "f", "g.h"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(st.sampled_from(WIDE), st.lists(more_conditions, min_size=1, max_size=2),
                                min_size=1, max_size=3), min_size=1, max_size=10),
       st.lists(st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "g.h", "x"]),
                                st.one_of(odd_values, st.dictionaries(st.sampled_from(["h", "a"]), odd_values,
                                                                      max_size=2)), max_size=6),
                min_size=1, max_size=8))
def test_matching_bytes_on_wide_events_agrees_with_the_reference(patterns_, evs):
    """Rules on many top-level fields (the dict bit-mask engine's layouts; structs have one)."""
    rules = {f"r{i}": p for i, p in enumerate(patterns_)}
    assert_all_ways(rules, lines_of(evs, True))


RULES = {
    "absent": {"a": {"b": [{"exists": False}]}},
    "present": {"a": {"b": [{"exists": True}]}},
    "null": {"a": {"b": [None]}},
    "one": {"a": {"b": [1]}},
    "a-is-x": {"a": ["x"]},
    "prefix": {"a": {"b": {"c": [{"prefix": "q"}]}}},
    "dotted-pattern": {"d.e": [2]},
    "top-absent": {"z": [{"exists": False}]},
}


def test_absent_null_present_and_non_object_levels():
    lines = [b'{}', b'{"a": null}', b'{"a": {}}', b'{"a": {"b": null}}', b'{"a": {"b": 1}}', b'{"a": {"b": 1.0}}',
             b'{"a": {"b": [1, 2]}}', b'{"a": {"b": []}}', b'{"a": {"b": {}}}', b'{"a": {"b": {"c": "q1"}}}',
             b'{"a": "x"}', b'{"a": 1}', b'{"a": true}', b'{"a": ["x"]}', b'{"a": []}', b'{"a": [{"b": 1}]}',
             b'{"a": [{"b": {"c": "qq"}}, 1]}', b'{"a": {"b": [{"c": "q"}]}}', b'{"z": null}', b'{"z": {}}',
             b'{"a": {"b": 1, "b": null}}', b'{"a": 1, "a": {"b": 1}}', b'{"\\u0061": {"b": 1}}',
             b'{"d": {"e": 2}}', b'{"d": [{"e": 2}]}', b'{"d": {"e": [3, 2]}}']
    assert_all_ways(RULES, lines)
    rs = RuleSet(RULES)
    rs.matching_bytes([])
    rs.partial.matching_bytes_by(lines, "partial-index")
    # the arrays on the way to a used field (at a, a.b (a.b.c is read) and d): today's path
    assert rs.partial.fallbacks == 8


def test_keys_that_span_levels_take_todays_path():
    """EventBridge joins keys with dots: {"a.b": 1} is the field a.b, at any level, however the
    key is escaped. The structs cannot see such a key among those they skip, so they refuse it."""
    lines = [b'{"a.b": 1}', b'{"a.b": null}', b'{"a.b": {}}', b'{"a": {"b.c": "q"}}', b'{"a.b.c": "qz"}',
             b'{"a.b": {"c": "q"}}', b'{"a\\u002eb": 1}', b'{"a": {"b": 2}, "a.b": 1}', b'{"d.e": 2}',
             b'{"d.e": [2]}', b'{"x.y": 1, "a": {"b": 1}}', b'{"a": {"x.y": 1, "b": 1}}']
    assert_all_ways(RULES, lines)
    rs = RuleSet(RULES)
    rs.matching_bytes([])
    rs.partial.matching_bytes_by(lines, "partial-index")
    assert rs.partial.fallbacks == 10  # the last two have dotted keys that reach no used field


def test_lines_orjson_refuses_or_that_are_not_objects_answer_none():
    lines = [b'', b'{', b'{"a": 1', b'{"a": 1} x', b'[1]', b'"x"', b'null', b'1', b'{"a": NaN}', b'{"a": 01}',
             b'{"z": "\xff"}', b'{"a": "\xff"}', b'{"z": "\xed\xa0\x80"}', b'{"\xff": 1}', b'\xef\xbb\xbf{"a": "x"}',
             b'{"z": "\\ud800"}', b'{"a": "x",}', b'{"z": "a\tb"}',
             b'{"q": ' + b'[' * 1000 + b']' * 1000 + b', "a": "x"}',  # deeper than msgspec goes, orjson reads it
             b'{"q": ' + b'[' * 3000 + b']' * 3000 + b'}']  # deeper than either goes
    assert_all_ways(RULES, lines)
    assert [expected(RULES, line) is None for line in lines[-2:]] == [False, True]


def test_numbers_as_eventbridge_compares_them():
    """msgspec reads integers past 64 bits as ints, orjson as floats: compared as the same doubles."""
    lines = [b'{"n": 18446744073709551616}', b'{"n": 18446744073709551617}', b'{"n": -9223372036854775809}',
             b'{"n": 1e19}', b'{"n": -0.0}', b'{"n": 0}', b'{"n": 1.0}', b'{"n": 1e0}', b'{"n": [1, 18446744073709551616]}',
             b'{"n": 1e-400}', b'{"n": 12345678901234567890123.5}', b'{"n": [9007199254740993, 0.5]}',
             b'{"s": 18446744073709551616}']
    assert_all_ways(NUMBERS, lines)


NUMBERS = {"big": {"n": [{"numeric": [">", 1e19]}]}, "exact": {"n": [18446744073709551616]},
           "max": {"n": [{"numeric": ["<", -9e18]}]}, "zero": {"n": [0]}, "one": {"n": [1]}, "s": {"s": ["x"]},
           "not-s": {"s": [{"anything-but": "x"}]}}


def reference_without_range(rules, line):
    """The reference matcher on the event Python's json reads: like RFC 8259 it sets no range on
    numbers (1e400 is inf, a 400-digit integer an int)."""
    return [n for n, p in rules.items() if compile_pattern(p).matches(json.loads(line))]


BEYOND = [b'{"a": "x", "q": 1e400}', b'{"a": "y", "q": -1e400}', b'{"q": [1, ' + b'9' * 400 + b'], "a": "x"}',
          b'{"a": {"b": {"c": "qz", "d": 1E+999}}}', b'{"a": "x", "a.q": 1, "q": ' + b'9' * 400 + b'}']


def test_numbers_beyond_doubles_are_valid_json():
    """The decision in engines/partial.py's docstring: orjson refuses a number beyond the double
    range, RFC 8259 does not; every way, today's and the reference engine's too, answers such a line
    as the reference matcher answers the event a parser without a range reads (1e400 is infinity),
    whether a rule reads the number or not, instead of making it a dead letter."""
    ints = [b'{"n": ' + b'9' * 400 + b'}', b'{"n": [1, -' + b'9' * 400 + b']}', b'{"s": ' + b'9' * 400 + b'}',
            b'{"n": -' + b'9' * 400 + b', "s": "x"}']
    floats = [b'{"n": 1e400}', b'{"s": -1e400}', b'{"n": [1, 1e400]}', b'{"s": {"x": 1e400}}', b'{"n": 1e400, "s": "x"}']
    for rules, lines in ((RULES, BEYOND), (RULES, [b'{"a": [{"b": 1}], "q": 1e400}', b'{"a.b": 1, "q": 1e400}']),
                         (NUMBERS, ints + floats)):
        for line in lines:
            assert expected(rules, line) is None  # orjson refuses it
        want = [reference_without_range(rules, line) for line in lines]
        for way, got in by_every_way(rules, lines).items():
            assert got == want, (way, lines)
        assert RuleSet(rules, engine="reference").matching_bytes(lines) == want
    assert reference_without_range(RULES, BEYOND[0]) == ["absent", "a-is-x", "top-absent"]
    assert [reference_without_range(NUMBERS, line) for line in (ints[0], floats[0], floats[1])] == [
        ["big"], ["big"], ["not-s"]]


def test_json_msgspec_skips_is_checked_as_orjson_checks_it():
    """What msgspec skips unread is still checked: every line orjson refuses for its syntax or its
    UTF-8 is refused by every way, and duplicate keys keep the last, read or skipped, as in orjson."""
    bad = [b'{"z": {"y": 1', b'{"z": "ab', b'{"z": "\\q"}', b'{"z": "\\u12G4"}', b'{"z": "\\udc00"}', b'{"z": Infinity}',
           b'{"z": -Infinity}', b'{"z": NaN}', b'{"z": [1, 2,]}', b"{'a': 1}", b'{"a": "x"}{}', b'{"z": 1.}',
           b'{"z": -}', b'{"z": "\x00"}', b'{"z": "\xc0\x80"}', b'{"z": {"\xfe": 1}}', b'{"a": "x", "z": 1} 2']
    for line in bad:
        assert expected(RULES, line) is None
    for way, got in by_every_way(RULES, bad).items():
        assert got == [None] * len(bad), way
    dup = [b'{"a": "y", "a": "x"}', b'{"a": "x", "a": "y"}', b'{"z": 1, "z": 2}', b'{"a": {"b": 1}, "a": {"c": 2}}',
           b'{"a": {"b": {"c": "qa"}}, "a": "x"}', b'{"a": "x", "a": {"b": {"c": "q"}}}']
    assert_all_ways(RULES, dup)


def test_conformance_cases_by_every_way(conformance_dir):
    cases = [c for c in json.loads((conformance_dir / "eventbridge-pattern-cases.json").read_text())["cases"]
             if c["expected"] != "invalid"]
    rules = {c["name"]: c["event_pattern"] for c in cases}
    lines = [orjson.dumps(c["event"]) for c in cases]
    assert_all_ways(rules, lines)
    got = RuleSet(rules).matching_bytes(lines)
    for c, names in zip(cases, got):
        assert (c["name"] in names) == c["expected"], c["name"]


def test_the_trial_keeps_the_fastest_way_and_drops_a_way_that_disagrees(caplog):
    rules = {"x": {"a": ["x"]}, "y": {"b": {"c": [{"prefix": "y"}]}}}
    lines = [b'{"a": "x", "b": {"c": "yes"}}', b'{"a": "z", "b": {"c": 1}}', b'{"b": [{"c": "y"}]}'] * 6000
    want = [expected(rules, line) for line in lines[:3]] * 6000
    rs = RuleSet(rules)
    assert rs.decoder == "choosing"
    got = []
    for i in range(0, len(lines), 500):
        got += rs.matching_bytes(lines[i:i + 500])
    assert got == want
    # the rule set's own engine trial decides first (on the events matching_bytes reads whole)
    assert rs.engine in ("index", "bitmask")
    assert rs.decoder in WAYS
    assert (rs.partial.decoded > 0) == rs.decoder.startswith("partial")  # the lines after the trial

    bad = RuleSet(rules)
    bad.matching_bytes(lines[:3])
    bad.partial.ways = {name: (lambda ev: ["wrong"]) for name in bad.partial.ways}
    with caplog.at_level(logging.ERROR, logger="processors.routing.ruleset"):
        got = []
        for i in range(0, len(lines), 500):
            got += bad.matching_bytes(lines[i:i + 500])
    assert got == want
    assert bad.decoder == "orjson"
    assert "disagrees" in caplog.text


def test_a_number_beyond_doubles_in_the_trial_is_no_disagreement():
    rules = {"x": {"a": ["x"]}}
    lines = [b'{"a": "x"}', b'{"a": "y"}'] * 10000
    lines[11001] = b'{"a": "x", "q": 1e400}'  # in the trial: the rule set's own decides by about 9,600
    rs = RuleSet(rules)
    rs.PARTIAL_MARGIN = 100.0  # the partial ways win
    got = []
    for i in range(0, len(lines), 1000):
        got += rs.matching_bytes(lines[i:i + 1000])
    assert got == [["x"], []] * 5500 + [["x"], ["x"]] + [["x"], []] * 4499
    assert rs.decoder.startswith("partial")


def test_reference_engine_reads_lines_whole():
    rs = RuleSet(RULES, engine="reference")
    lines = [b'{"a": "x"}', b'[1]', b'{']
    assert rs.matching_bytes(lines) == [expected(RULES, line) for line in lines]
    assert rs.decoder == "orjson"


def test_a_partial_way_is_kept_only_when_clearly_faster():
    rules = {"x": {"a": ["x"]}}
    lines = [b'{"a": "x", "b": {"c": "yes"}}', b'{"a": "z"}'] * 8000
    for margin, kept in ((0.0, ("orjson",)), (100.0, ("partial-index", "partial-bitmask"))):
        rs = RuleSet(rules)
        rs.PARTIAL_MARGIN = margin
        got = []
        for i in range(0, len(lines), 1000):
            got += rs.matching_bytes(lines[i:i + 1000])
        assert got == [["x"], []] * 8000
        assert rs.decoder in kept


def test_lines_refused_among_ascii_lines_take_todays_path_one_by_one():
    """ASCII lines are decoded and matched by `map` (PartialDecoder._partial): a line the structs
    refuse (a key that spans levels, invalid JSON, not an object, empty) takes today's path, and
    the lines after it go on by the structs; a non-ASCII line makes the batch go line by line."""
    rules = {"r": {"a": {"b": [1]}}, "s": {"c": [{"exists": True}]}}
    ok = [b'{"a": {"b": 1}}', b'{"c": 2}', b'{"x": 0}']
    refused = [b'{"a.b": 1}', b'{"a": 1', b"[1]", b""]
    lines = [ok[0], refused[0], ok[1], refused[1], refused[2], ok[2], refused[3], ok[0]]
    want = [expected(rules, line) for line in lines]
    assert want == [["r"], ["r"], ["s"], None, None, [], None, ["r"]]
    for first in (b'{"c": "x"}', b'{"c": "\xc3\xa9"}'):  # all ASCII, or one line not
        for way in ("partial-index", "partial-bitmask"):
            rs = RuleSet(rules, engine="bitmask" if way == "partial-bitmask" else "index")
            rs.matching_bytes([])
            assert rs.partial is not None
            got = rs.partial.matching_bytes_by([first, *lines], way)
            assert got == [["s"], *want], (way, first)
            assert (rs.partial.decoded, rs.partial.fallbacks) == (5, 4), (way, first)
