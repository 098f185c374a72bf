"""Property tests against a tiny obviously-correct matcher, and fuzzing of the compiler."""
import math
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.routing import InvalidEventPatternException, RuleSet, compile_pattern

KEYS = ["a", "b", "c"]
scalars = st.one_of(st.sampled_from(["", "x", "xy", "yx", "X", "xyz"]), st.integers(-3, 3),
                    st.sampled_from([1.5, -0.5]), st.booleans(), st.none())
values = st.one_of(scalars, st.lists(scalars, max_size=3))
events = st.dictionaries(st.sampled_from(KEYS),
                         st.one_of(values, st.dictionaries(st.sampled_from(KEYS), values, max_size=2)),
                         max_size=3)
strs = st.sampled_from(["", "x", "y", "xy", "X"])
conditions = st.one_of(
    scalars,
    st.builds(lambda s: {"prefix": s}, strs),
    st.builds(lambda s: {"suffix": s}, strs),
    st.builds(lambda s: {"equals-ignore-case": s}, strs),
    # event-ruler refuses an anything-but list that mixes strings and numbers
    st.builds(lambda xs: {"anything-but": xs}, st.one_of(st.lists(st.sampled_from(["x", "xy"]), min_size=1, max_size=2),
                                                         st.lists(st.sampled_from([1, 2]), min_size=1, max_size=2))),
    st.builds(lambda lo, w: {"numeric": [">=", lo, "<", lo + w]}, st.integers(-3, 3), st.integers(1, 3)),
    st.builds(lambda b: {"exists": b}, st.booleans()),
)
paths = st.sampled_from(["a", "b", "a.b", "c.a"])
patterns = st.dictionaries(paths, st.lists(conditions, min_size=1, max_size=3), min_size=1, max_size=3)


ENGINES = ("index", "bitmask")


def leaves(event, path):
    """Every leaf value at a dotted path, looking through lists (no dotted event keys here)."""
    cur = [event]
    for seg in path.split("."):
        nxt = []
        for node in cur:
            for item in (node if isinstance(node, list) else [node]):
                if isinstance(item, dict) and seg in item:
                    nxt.append(item[seg])
        cur = nxt
    out = []
    for node in cur:
        for item in (node if isinstance(node, list) else [node]):
            if not isinstance(item, (dict, list)):
                out.append(item)
    return out


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def holds(cond, vals):
    if not isinstance(cond, dict):
        if is_num(cond):
            return any(is_num(v) and float(v) == float(cond) for v in vals)
        return any(type(v) is type(cond) and v == cond for v in vals)
    (op, arg), = cond.items()
    strs_ = [v for v in vals if isinstance(v, str)]
    if op == "prefix":
        return any(v.startswith(arg) for v in strs_)
    if op == "suffix":
        return any(v.endswith(arg) for v in strs_)
    if op == "equals-ignore-case":
        return any(v.lower() == arg.lower() for v in strs_)
    if op == "anything-but":
        def excluded(v):
            return any((is_num(v) and is_num(x) and float(v) == float(x)) or
                       (isinstance(v, str) and v == x) for x in arg)
        return any(not excluded(v) for v in vals)
    if op == "numeric":
        return any(is_num(v) and arg[1] <= v < arg[3] for v in vals)
    if op == "exists":
        return bool(vals) == arg
    raise AssertionError(op)


def reference(pattern, event):
    return all(any(holds(c, leaves(event, p)) for c in conds) for p, conds in pattern.items())


def _nested(pattern):
    """Spell dotted pattern keys as nested objects half of the time; both mean the same."""
    out = {}
    for p, conds in pattern.items():
        node = out
        *parents, last = p.split(".")
        for seg in parents:
            node = node.setdefault(seg, {})
            if not isinstance(node, dict):
                return pattern
        if last in node:
            return pattern
        node[last] = conds
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patterns, events)
def test_matches_reference(pattern, event):
    expected = reference(pattern, event)
    assert compile_pattern(pattern).matches(event) == expected
    assert compile_pattern(_nested(pattern)).matches(event) == expected
    for engine in ENGINES:
        assert (RuleSet({"r": pattern}, engine=engine).matching(event) == ["r"]) == expected


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(["a", "$or", "prefix", "numeric", "anything-but",
                                                             "wildcard", "cidr", "exists", "suffix",
                                                             "equals-ignore-case", "b"]), inner, max_size=3)),
    max_leaves=20)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_compiler_fuzz_compiles_or_raises_documented_exception(doc):
    start = time.perf_counter()
    try:
        p = compile_pattern(doc)
        p.matches({"a": "x", "b": [1, {"a": 2}]})
    except InvalidEventPatternException as e:
        assert e.message.startswith("Event pattern is not valid. Reason: ")
    assert time.perf_counter() - start < 2


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60))
def test_compiler_fuzz_on_raw_text(raw):
    try:
        compile_pattern(raw)
    except InvalidEventPatternException:
        pass


def test_adversarial_wildcards_take_bounded_time():
    # accepted wildcards with repeated segments still match long inputs in linear-ish time
    p = compile_pattern({"f": [{"wildcard": "*a*a*b"}]})
    s = "a" * 200_000
    start = time.perf_counter()
    assert not p.matches({"f": s})
    assert p.matches({"f": s + "b"})
    assert time.perf_counter() - start < 1.0
    # the ones AWS finds too complex are rejected, quickly
    start = time.perf_counter()
    for w in ["*a*a*a*a*a*b", "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", "*:*:*:*:*:*:*:*:*:*:*"]:
        try:
            compile_pattern({"f": [{"wildcard": w}]})
            raise AssertionError(f"{w} accepted")
        except InvalidEventPatternException as e:
            assert "too complex" in e.message
    assert time.perf_counter() - start < 2.0


wild = st.builds(lambda s: {"wildcard": s}, st.sampled_from(["x*", "*y", "x*y", "*", "X*z", "*x*"]))
more_conditions = st.one_of(
    conditions, wild,
    st.builds(lambda s: {"prefix": {"equals-ignore-case": s}}, strs),
    st.builds(lambda s: {"suffix": {"equals-ignore-case": s}}, strs),
    st.builds(lambda xs: {"anything-but": {"prefix": xs}}, st.sampled_from(["x", "y"])),
    st.builds(lambda xs: {"anything-but": {"suffix": xs}}, st.sampled_from(["x", ["y", "z"]])),
    st.builds(lambda xs: {"anything-but": {"equals-ignore-case": xs}}, st.sampled_from(["X", ["y", "xy"]])),
    st.builds(lambda xs: {"anything-but": {"wildcard": xs}}, st.sampled_from(["x*", ["*y", "z*z"]])),
    st.builds(lambda x: {"anything-but": x}, st.sampled_from([1, "x", 1.5])),
    st.builds(lambda x: {"numeric": ["=", x]}, st.integers(-2, 2)),
    st.builds(lambda x: {"numeric": [">", x]}, st.sampled_from([-1, 0, 1.5])),
)
rule_patterns = st.dictionaries(paths, st.lists(more_conditions, min_size=1, max_size=3), min_size=1, max_size=3)
array_events = st.one_of(events, st.dictionaries(
    st.sampled_from(KEYS), st.lists(st.dictionaries(st.sampled_from(KEYS), values, max_size=2), max_size=2),
    max_size=2))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rule_patterns, min_size=1, max_size=12), st.lists(array_events, min_size=1, max_size=5))
def test_ruleset_agrees_with_each_pattern(patterns_, evs):
    """The indexed, code-generated rule set returns exactly the rules whose pattern matches."""
    rules = {f"r{i}": p for i, p in enumerate(patterns_)}
    rs, bits = RuleSet(rules, engine="index"), RuleSet(rules, engine="bitmask")
    # compile_after=1: every set of candidates gets its generated check at once
    generated = RuleSet(rules, compile_after=1, engine="index")
    # no set compiled whole: direct hits decide, the rest is checked by its own generated
    # function (split_generated) or clause by clause (split)
    split_generated = RuleSet(rules, compile_after=1, engine="index")
    split = RuleSet(rules, compile_after=10**9, engine="index")
    split_generated.MAX_COMPILED = split.MAX_COMPILED = 0
    compiled = {n: compile_pattern(p) for n, p in rules.items()}
    for ev in evs:
        expected = [n for n, p in compiled.items() if p.matches(ev)]
        assert rs.matching(ev) == expected
        assert bits.matching(ev) == expected
        assert bits.matching(ev) == expected  # and again, through the remembered masks
        assert generated.matching(ev) == expected
        assert generated.matching(ev) == expected  # and again, through the stored function
        for engine in (split_generated, split):
            assert engine.matching(ev) == expected
            assert engine.matching(ev) == expected


bounds = st.integers(-5, 5).map(float)


@st.composite
def numeric_ranges(draw):
    lo = draw(st.one_of(st.none(), bounds))
    hi = draw(st.one_of(st.none(), bounds.filter(lambda h: lo is None or h > lo)))
    return (lo, draw(st.booleans()), hi, draw(st.booleans()))


@settings(max_examples=300, deadline=None)
@given(st.lists(numeric_ranges(), min_size=1, max_size=6),
       st.lists(st.sampled_from([-6, -5, -4.5, -1, 0, 0.5, 1, 2, 3, 5, 5.5, 7]), min_size=1, max_size=30))
def test_range_index_array_lookups_agree_with_single_lookups(ranges, numbers):
    from processors.routing.index import RangeIndex
    from processors.routing.values import SortedNumbers
    ri = RangeIndex([(r, i) for i, r in enumerate(ranges)])
    expected = set()
    for x in numbers:
        expected.update(ri.lookup(x))
    got_many, got_sorted = set(), set()
    ri.lookup_many(list(numbers), got_many)
    xs = SortedNumbers(numbers)
    xs.sort()
    ri.lookup_sorted(xs, got_sorted)
    assert got_many == expected == got_sorted
    # and the ranges themselves
    for i, (lo, lo_incl, hi, hi_incl) in enumerate(ranges):
        inside = any((lo is None or x > lo or (lo_incl and x == lo)) and
                     (hi is None or x < hi or (hi_incl and x == hi)) for x in numbers)
        assert (i in expected) == inside


# integers too big for a double (an event built in Python) compare as +-infinity
near_bounds = st.one_of(bounds, st.integers(-6, 6), bounds.map(lambda b: math.nextafter(b, math.inf)),
                       bounds.map(lambda b: math.nextafter(b, -math.inf)), st.just(-0.0),
                       st.sampled_from([10**400, -10**400, 2**1024]))


@settings(max_examples=300, deadline=None)
@given(st.lists(numeric_ranges(), min_size=1, max_size=6), st.lists(near_bounds, min_size=1, max_size=20))
def test_numeric_ranges_on_single_numbers_agree_with_each_pattern(ranges, numbers):
    """A number on an indexed numeric field finds its interval in one bisection (floats) or by
    the boundary points (ints): on a boundary, next to one (the adjacent doubles) and between."""
    def numeric(r):
        lo, lo_incl, hi, hi_incl = r
        spec = ([">=" if lo_incl else ">", lo] if lo is not None else []) + \
               (["<=" if hi_incl else "<", hi] if hi is not None else [])
        return {"numeric": spec} if spec else {"exists": True}
    rules = {f"r{i}": {"v": [numeric(r)]} for i, r in enumerate(ranges)}
    compiled = {n: compile_pattern(p) for n, p in rules.items()}
    for engine in ENGINES:
        rs = RuleSet(rules, engine=engine)
        for x in numbers:
            ev = {"v": x}
            assert rs.matching(ev) == [n for n, p in compiled.items() if p.matches(ev)], x
    # the same ranges checked after an exact anchor, by the generated candidate checks
    anchored = {n: {"k": ["a"], **p} for n, p in rules.items()}
    compiled = {n: compile_pattern(p) for n, p in anchored.items()}
    for rs in (RuleSet(anchored, engine="index"), RuleSet(anchored, compile_after=1, engine="index"),
               RuleSet(anchored, engine="bitmask")):
        for x in numbers:
            for ev in ({"k": "a", "v": x}, {"k": "a", "v": [x, 0.5]}):
                assert rs.matching(ev) == [n for n, p in compiled.items() if p.matches(ev)], ev


def test_memo_of_a_field_whose_values_do_not_repeat_is_dropped_and_results_stay_right():
    """A string field with several index tables (index engine) or tests (bit-mask engine)
    remembers its answer per value; for one whose values are all new (ids) the memo is dropped,
    and the answers are the same before and after."""
    from processors.routing.engines.writer import MEMO_SIZE

    rules = {"pre": {"id": [{"prefix": "a1"}]}, "suf": {"id": [{"suffix": "9"}]},
             "kind": {"kind": [{"prefix": "se"}, {"suffix": "or"}], "id": [{"exists": True}]}}
    for engine in ENGINES:
        rs = RuleSet(rules, engine=engine)
        matching = rs.matching  # held, as callers do: the switch happens inside it
        compiled = {n: compile_pattern(p) for n, p in rules.items()}
        for i in range(3 * MEMO_SIZE):
            ev = {"id": f"a{i}", "kind": ["sensor", "motor", "door"][i % 3]}
            assert matching(ev) == [n for n, p in compiled.items() if p.matches(ev)], ev
        assert rs.memos == {"id": False, "kind": True}, engine  # ids never repeat; three kinds do


@settings(max_examples=300, deadline=None)
@given(st.lists(numeric_ranges(), min_size=1, max_size=4),
       st.lists(st.one_of(bounds, st.integers(-6, 6)), min_size=0, max_size=9))
def test_numeric_checks_on_arrays_agree_with_each_pattern(ranges, numbers):
    """A numeric field checked after its clause's anchor, on an array long enough to be sorted
    once (SortedNumbers) and bisected inline by the generated checks."""
    def numeric(r):
        lo, lo_incl, hi, hi_incl = r
        spec = ([">=" if lo_incl else ">", lo] if lo is not None else []) + \
               (["<=" if hi_incl else "<", hi] if hi is not None else [])
        return {"numeric": spec} if spec else {"exists": True}
    rules = {f"r{i}": {"kind": ["k"], "v": [numeric(r)]} for i, r in enumerate(ranges)}
    compiled = {n: compile_pattern(p) for n, p in rules.items()}
    for rs in (RuleSet(rules, engine="index"), RuleSet(rules, compile_after=1, engine="index"),
               RuleSet(rules, engine="bitmask")):
        for ev in ({"kind": "k", "v": numbers}, {"kind": "k", "v": [numbers[:3], numbers[3:]]}):
            expected = [n for n, p in compiled.items() if p.matches(ev)]
            assert rs.matching(ev) == expected
            assert rs.matching(ev) == expected


def test_generated_candidate_checks_are_bounded_and_the_rest_still_match():
    rules = {f"r{i}": {"kind": [f"k{i}"], "n": [{"numeric": [">", i]}]} for i in range(6)}
    rs = RuleSet(rules, compile_after=2, engine="index")
    rs.MAX_COMPILED = 3
    compiled = {n: compile_pattern(p) for n, p in rules.items()}
    for _ in range(3):
        for i in range(6):
            for n in (0, 10):
                ev = {"kind": f"k{i}", "n": n}
                assert rs.matching(ev) == [r for r, p in compiled.items() if p.matches(ev)]
    assert len(rs._compiled) == 3  # the first three candidate sets seen twice; the others go the slow way


affixes = st.text(alphabet="abc", max_size=3)  # up to 27 keys a length: tables past AFFIX_SCAN_KEYS too


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["prefix", "suffix"]), affixes), min_size=1, max_size=24),
       st.lists(st.one_of(st.text(alphabet="abc", max_size=5), st.integers(0, 2), st.none(),
                          st.lists(st.text(alphabet="ab", max_size=3), max_size=3)), min_size=1, max_size=20))
def test_prefix_and_suffix_tables_small_and_large_agree_with_each_pattern(affix_rules, values):
    """Tables of a few prefixes/suffixes are tried with one startswith/endswith on all their
    keys, big ones by slicing out the key (codegen._affix_lookup): both give each rule's answer,
    for strings, missing fields and values that are not strings."""
    rules = {f"r{i}": {"v": [{kind: affix}]} for i, (kind, affix) in enumerate(affix_rules)}
    compiled = {n: compile_pattern(p) for n, p in rules.items()}
    for engine in ENGINES:
        rs = RuleSet(rules, engine=engine)
        for x in values:
            ev = {} if x is None else {"v": x}
            assert rs.matching(ev) == [n for n, p in compiled.items() if p.matches(ev)], x


array_items = st.one_of(st.sampled_from([-2.5, -1.0, 0.0, 0.5, 1.0, 1.5, 3.0, -0.0]), st.integers(-3, 3),
                        st.booleans(), st.none(), st.sampled_from(["1", "x"]), st.just({"a": 1}),
                        st.sampled_from([2**60, -2**60, 2**53 + 1]))
nested_arrays = st.recursive(st.lists(array_items, max_size=6), lambda inner: st.lists(inner, max_size=3),
                             max_leaves=12)
number_conditions = st.one_of(
    st.builds(lambda r: {"numeric": r}, st.sampled_from([[">", 0], ["<", 1], [">=", -1, "<=", 1.5], ["=", 0.5],
                                                        [">", 1, "<", 3], ["<=", -2.5], [">", 2**53]])),
    st.sampled_from([0, 1, 1.5, -2.5, True, None]),
    st.builds(lambda b: {"exists": b}, st.booleans()),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(number_conditions, min_size=1, max_size=3), min_size=1, max_size=5),
       st.lists(st.one_of(nested_arrays, array_items), min_size=1, max_size=6))
def test_bitmask_arrays_of_numbers_agree_with_each_pattern(field_conditions, values):
    """The bit-mask engine sorts an array of numbers once and bisects it at the field's
    boundaries: nested arrays, bools (which sort as 0 and 1), ints past 2**53, nulls, strings and
    objects among the numbers all give each pattern's answer. So does a rule reading the field
    twice (one element must hold both), in both engines."""
    rules = {f"r{i}": {"v": conds} for i, conds in enumerate(field_conditions)}
    twice = {**rules, "twice": {"v": field_conditions[0], "$or": [{"v": field_conditions[-1]}, {"w": ["x"]}]}}
    for rule_set in (rules, twice):
        compiled = {n: compile_pattern(p) for n, p in rule_set.items()}
        engines = [RuleSet(rule_set, engine="bitmask"), RuleSet(rule_set, engine="index"),
                   RuleSet(rule_set, engine="index", compile_after=1)]
        for x in values:
            for ev in ({"v": x}, {"v": x, "w": "x"}):
                expected = [n for n, p in compiled.items() if p.matches(ev)]
                for rs in engines:
                    assert rs.matching(ev) == expected, (rs.engine, ev)


def test_auto_engine_times_both_engines_on_the_traffic_and_keeps_the_faster(monkeypatch):
    """engine="auto" times both engines on the first events, then the function callers hold
    becomes the faster one; the answers are the same all along. Past bitmask.MAX_CLAUSES
    clauses only the index engine runs."""
    from processors.routing.engines.bitmask import MAX_CLAUSES

    rules = {f"r{i}": {"id": [f"v{i}"], "n": [{"numeric": [">", i]}]} for i in range(40)}
    rules["any"] = {"id": [{"anything-but": "v3"}]}
    monkeypatch.setattr(RuleSet, "TRIAL_EVERY", 2)  # a shorter trial
    rs = RuleSet(rules)
    matching = rs.matching
    assert rs.engine == "choosing"
    compiled = {n: compile_pattern(p) for n, p in rules.items()}
    trial = 2 * (rs.TRIAL_WARMUP + rs.TRIAL_TIMED)
    for i in range(trial + 200):
        ev = {"id": f"v{i % 50}", "n": i % 60}
        assert matching(ev) == [n for n, p in compiled.items() if p.matches(ev)], ev
        if i == trial - 2:
            assert rs.engine == "choosing"
    assert rs.engine in ("index", "bitmask")
    winner = rs.index_matching if rs.engine == "index" else rs.bits.matching
    assert matching.__code__ is winner.__code__ and rs.matching is matching
    big = RuleSet({f"r{i}": {"id": [f"v{i}"]} for i in range(MAX_CLAUSES + 1)})
    assert big.engine == "index" and big.bits is None
    assert big.matching({"id": ["v9", "v3"]}) == ["r3", "r9"]


WIDE_KEYS = ["a", "b", "c", "d", "e", "f", "g.h"]
wide_events = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "g.h", "x"]),
                                 st.one_of(values, st.dictionaries(st.sampled_from(["h", "a"]), values, max_size=2))),
                       max_size=6).map(dict)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(st.sampled_from(WIDE_KEYS), st.lists(more_conditions, min_size=1, max_size=2),
                                min_size=1, max_size=3), min_size=1, max_size=10),
       st.lists(wide_events, min_size=1, max_size=12), st.integers(1, 64))
def test_bitmask_functions_per_event_layout_agree_with_each_pattern(patterns_, evs, max_shapes):
    """Rules reading many top-level fields get a bit-mask function per layout of an event's
    top-level keys (absent fields folded in), made at a layout's first sight and bounded in
    number; keys spanning levels ("g.h") send the event the generic way. Every layout, seen
    first or again, and past the bound, gives each pattern's answer."""
    from processors.routing.engines import bitmask

    rules = {f"r{i}": p for i, p in enumerate(patterns_)}
    rules["wide"] = {k: [{"exists": True}] for k in "abcdef"}  # six top-level fields at least
    compiled = {n: compile_pattern(p) for n, p in rules.items()}
    old, bitmask.MAX_SHAPES = bitmask.MAX_SHAPES, max_shapes
    try:
        rs = RuleSet(rules, engine="bitmask")
        for ev in evs + evs:
            assert rs.matching(ev) == [n for n, p in compiled.items() if p.matches(ev)], ev
    finally:
        bitmask.MAX_SHAPES = old
    assert len(rs.bits._shapes) <= max_shapes
