"""Cases the conformance file does not cover, with the behaviour event-ruler defines."""

import pytest

from processors.routing import InvalidEventPatternException, RuleSet, compile_pattern


def m(pattern, event):
    return compile_pattern(pattern).matches(event)


def test_wildcard_star_matches_empty_string():
    assert m({"f": [{"wildcard": "ab*"}]}, {"f": "ab"})
    assert m({"f": [{"wildcard": "*"}]}, {"f": ""})
    assert m({"f": [{"wildcard": "a*b*c"}]}, {"f": "abc"})
    assert not m({"f": [{"wildcard": "a*b*c"}]}, {"f": "acb"})


def test_wildcard_escapes_are_literal():
    assert m({"f": [{"wildcard": r"a\*b"}]}, {"f": "a*b"})
    assert not m({"f": [{"wildcard": r"a\*b"}]}, {"f": "axb"})
    assert m({"f": [{"wildcard": "a\\\\*"}]}, {"f": "a\\zzz"})


def test_cidr_slash_31_and_ipv6_spellings():
    p = {"ip": [{"cidr": "10.1.2.3/31"}]}  # event-ruler refuses /32 (test_compiler_audit)
    assert m(p, {"ip": "10.1.2.3"}) and m(p, {"ip": "10.1.2.2"})
    assert not m(p, {"ip": "10.1.2.4"})
    v6 = {"ip": [{"cidr": "2001:db8::/32"}]}
    for spelling in ("2001:db8::1", "2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8:0:0::1"):
        assert m(v6, {"ip": spelling}), spelling
    assert not m(v6, {"ip": "2001:db9::1"})
    assert not m(v6, {"ip": "10.0.0.1"})


def test_array_consistency_requires_same_element():
    pattern = {"items": {"name": ["a"], "size": [2]}}
    assert m(pattern, {"items": [{"name": "a", "size": 2}, {"name": "b", "size": 3}]})
    assert not m(pattern, {"items": [{"name": "a", "size": 3}, {"name": "b", "size": 2}]})
    # scalars in different arrays do not constrain each other
    assert m({"x": ["1"], "y": ["2"]}, {"x": ["0", "1"], "y": ["2", "3"]})


def test_numbers_compare_as_doubles_at_the_limits():
    assert m({"n": [300]}, {"n": 3e2})
    assert m({"n": [{"numeric": ["=", 1.7976931348623157e308]}]}, {"n": 1.7976931348623157e308})
    assert m({"n": [{"numeric": [">", -1.7976931348623157e308]}]}, {"n": -1e308})
    big = 2 ** 53
    assert m({"n": [big]}, {"n": big + 1})  # equal as doubles, as on AWS
    assert m({"n": [5e-324]}, {"n": 5e-324})
    assert not m({"n": [0]}, {"n": 5e-324})
    assert not m({"n": [{"numeric": [">", 100]}]}, {"n": "300"})
    assert not m({"n": [1]}, {"n": True})
    assert not m({"n": [True]}, {"n": 1})


def test_pattern_with_more_than_100_fields():
    pattern = {f"f{i}": [str(i)] for i in range(150)}
    event = {f"f{i}": str(i) for i in range(150)}
    assert m(pattern, event)
    event["f149"] = "x"
    assert not m(pattern, event)
    assert RuleSet({"r": pattern}).matching(event) == []


def test_or_nested_and_combined():
    p = {"$or": [{"a": ["1"]}, {"$or": [{"b": ["2"]}, {"c": {"d": [{"prefix": "x"}]}}]}]}
    assert m(p, {"c": {"d": "xy"}})
    assert m(p, {"a": "1"})
    assert not m(p, {"a": "2", "b": "3"})


def test_exists_false_on_object_and_missing():
    assert m({"a": [{"exists": False}]}, {"b": 1})
    assert not m({"a": [{"exists": False}]}, {"a": None})
    assert m({"a": [{"exists": False}]}, {"a": {"b": 1}})  # no leaf at a


@pytest.mark.parametrize("pattern,reason", [
    ({"a": [{"wildcard": "a**"}]}, "Consecutive wildcard characters at pos 2"),
    ({"a": [{"numeric": [">", 5, "<", 1]}]}, "Bottom must be less than top"),
    ({"a": [{"numeric": ["<", 5, ">", 1]}]}, "Too many elements in numeric expression"),
    ({"a": [{"prefix": "x", "suffix": "y"}]}, "Only one key allowed in match expression"),
    ({"a": [[1]]}, "Match value must be String, number, true, false, or null"),
    ({"a": [{"exists": "yes"}]}, "exists match pattern must be either true or false."),
    ({"a": [{"cidr": "10.0.0.0"}]}, "Malformed CIDR, one '/' required"),
])
def test_invalid_patterns_name_the_reason(pattern, reason):
    with pytest.raises(InvalidEventPatternException) as e:
        compile_pattern(pattern)
    assert e.value.message == "Event pattern is not valid. Reason: " + reason


def test_pattern_text_that_is_not_json_or_not_object():
    with pytest.raises(InvalidEventPatternException):
        compile_pattern("{nope")
    with pytest.raises(InvalidEventPatternException):
        compile_pattern("[1]")


def test_ruleset_returns_all_matching_rules_in_rule_order():
    rs = RuleSet({
        "exact": {"source": ["s"]},
        "prefix": {"source": [{"prefix": "s"}]},
        "num": {"detail": {"n": [{"numeric": [">=", 5, "<", 10]}]}},
        "ab": {"detail": {"k": [{"anything-but": ["no"]}]}},
        "wild": {"source": [{"wildcard": "*x"}]},
        "none": {"source": ["t"]},
    })
    assert rs.matching({"source": "s", "detail": {"n": 5, "k": "yes"}}) == ["exact", "prefix", "num", "ab"]
    assert rs.matching({"source": "sx", "detail": {"n": 10, "k": "no"}}) == ["prefix", "wild"]


def test_ruleset_numeric_arrays_agree_with_pattern():
    """Long numeric arrays (coordinates) take the sorted-bisection path in a rule set."""
    rules = {
        "in": {"t": ["P"], "c": [{"numeric": [">", 5, "<", 6]}]},
        "edge": {"t": ["P"], "c": [{"numeric": ["=", 7]}, {"numeric": ["<", -100]}]},
        "open": {"t": ["P"], "c": [{"numeric": [">", 9]}]},
    }
    rs = RuleSet(rules)
    compiled = {n: compile_pattern(p) for n, p in rules.items()}
    for c in ([[1, 2, 3], [4, 5.5, 8]], [[1, 2, 3], [4, 5, 6]], [7, 1, 2, 3, 4, 5], [1, 2, 3, 4, 9.5, "x"],
              [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [-101, 0, 0, 0, 0], [True, 1, 2, 3, 4, 5]):
        ev = {"t": "P", "c": c}
        assert rs.matching(ev) == [n for n, p in compiled.items() if p.matches(ev)], c


def test_matching_never_modifies_the_event():
    rs = RuleSet({"r": {"t": ["P"], "c": [{"numeric": [">", 5, "<", 6]}]}})
    ev = {"t": "P", "c": [9, 8, 7, 6, 5.5, 1]}
    before = repr(ev)
    assert rs.matching(ev) == ["r"]
    assert repr(ev) == before


def test_dotted_event_keys_reach_nested_pattern_fields_and_others_do_not_matter():
    patterns = {"r": {"detail": {"x": ["y"]}}, "q": {"a": {"b": {"c": [1]}}}}
    rs = RuleSet(patterns)
    compiled = {n: compile_pattern(p) for n, p in patterns.items()}
    events = [{"detail.x": "y"}, {"other.k": 1, "detail": {"x": "y"}}, {"detail": {"x": "n"}, "detail.x": "y"},
              {"a.b": {"c": 1}}, {"a": {"b.c": 1}}, {"a.b.c": 1}, {"a": {"b": {"c": 2}}, "a.b": {"c": 1}},
              {"a": {"b": {"c": 2, "x.y": 1}}}, {"detail": {"x.z": "y"}}]
    for ev in events:
        assert rs.matching(ev) == [n for n, p in compiled.items() if p.matches(ev)], ev
    assert rs.matching({"detail.x": "y"}) == ["r"] and rs.matching({"a": {"b.c": 1}}) == ["q"]
    assert rs.matching({"other.k": 1, "detail": {"x": "y"}}) == ["r"]
