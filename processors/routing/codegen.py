"""Generate one specialised Python function per rule set: read the used fields, look them up.

The generic path (flatten.py) walks every key of the event dicts it visits. The generated
function instead does one `dict.get` per field some rule uses, and inlines the index lookups for
that field (hash lookup for exact values, sliced-key lookups per prefix/suffix length, range
bisection). It returns the slot values, or None when the event needs the generic path: a key in a
visited object that spans levels of a used path ("a.b" where a rule reads a -> b: EventBridge
joins keys with dots) or an array of objects on the way to a used field (array consistency needs
per-element trails).
"""
from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from itertools import chain

from .conditions import as_double, leaf_key
from .index import SortedNumbers

_chain = chain.from_iterable

_NUMBERS = {int, float}

MISSING = object()
BY_IDS_SIZE = 4096


def scalars(values: list) -> list:
    """Leaf values of a (possibly nested) list; objects inside contribute nothing here.

    Uniform nesting (coordinate rings, matrices) is flattened a level at a time in C. The result
    is always a new list (never the event's own), so matching may reorder it.
    """
    original = values
    while True:
        types = set(map(type, values))
        if list not in types and dict not in types:
            if len(values) > 4 and types <= _NUMBERS:
                # numbers sorted once: range checks and lookups bisect instead of looping; ints
                # past 2**53 as the doubles EventBridge compares
                out = SortedNumbers(map(as_double, values) if int in types else values)
                out.sort()
                return out
            return values[:] if values is original else values
        if len(types) == 1 and list in types:
            values = list(_chain(values))
            continue
        out = []
        for x in values:
            t = type(x)
            if t is list:
                out.extend(scalars(x))
            elif t is not dict:
                out.append(x)
        return out


_CODE: dict[str, object] = {}  # generated source -> its code object
CODE_CACHE_SIZE = 2048


def _define(source: str, filename: str, env: dict) -> None:
    """Run generated source in `env`. Compiling is most of the cost of generating a check, and a
    rule set that is reloaded (a rule changed, a worker restarted in-process) generates mostly
    the same sources again, with its own constants in `env`: their code objects are reused."""
    code = _CODE.get(source)
    if code is None:
        if len(_CODE) >= CODE_CACHE_SIZE:
            _CODE.clear()
        code = _CODE[source] = compile(source, filename, "exec")
    exec(code, env)


class _Gen:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.env: dict = {"M": MISSING, "_lk": leaf_key, "_scalars": scalars, "_bisect": bisect_right}
        self.n = 0
        self.helpers: list[str] = []  # functions emitted after the main one
        # In `match` itself, `found` is None or a tuple of field ids, and slot values are locals
        # (s3, s7...) put in a list only for the checks: most events hit nothing, and then no
        # set or list is made at all. Helper functions collect into a set `found`.
        self.in_match = False
        self.stored: set[int] = set()  # slots `match` assigns
        self.numbers: set[int] = set()  # slots a candidates check reads as a double (d<slot>)

    def hit(self, depth: int, ids: str) -> None:
        """Add the field ids in `ids` (a tuple; when in `match`, a non-empty one) to `found`."""
        if self.in_match:
            self.emit(depth, f"found = {ids} if found is None else found + {ids}")
        else:
            self.emit(depth, f"found.update({ids})")

    def collect(self, depth: int, call: str, slot: int | None = None) -> None:
        """Call a helper that adds ids to the set passed as `{found}` in `call` (and returns the
        value to keep in `slot`, when one is given)."""
        if not self.in_match:
            self.emit(depth, call.format(found="found"))
            return
        h = self.var("h")
        self.emit(depth, f"{h} = set()")
        self.emit(depth, f"{self.slot(slot)} = {call.format(found=h)}" if slot is not None else call.format(found=h))
        self.emit(depth, f"if {h}:")
        self.emit(depth + 1, f"{h} = tuple({h})")
        self.hit(depth + 1, h)

    def slot(self, slot: int) -> str:
        self.stored.add(slot)
        return f"s{slot}"

    def var(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def const(self, prefix: str, value) -> str:
        name = self.var(prefix)
        self.env[name] = value
        return name

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)


def build_fast_path(trie, slot_of: dict, index: dict, needed: set, tail: dict):
    """Source and compiled function `match(ev) -> rule names`.

    It reads the used fields, looks them up, and hands the candidates over to `tail`: `generic(ev)`
    for events the fast path cannot take, `compiled_get(candidates)` for a generated check of a
    recurring set of candidates, `resolve(candidates, slots)` otherwise; `always` says whether
    some clause must be checked on every event (else no candidates means no match).
    `needed` holds the slots some check reads after the lookups; a field outside it whose index
    only has string keys is looked up without a type dispatch: a list, object or number there
    raises TypeError/AttributeError on the slice or lookup, and the event goes the generic way.
    String fields with several index tables remember their ids per value (`_string_hits`);
    `memos` in the function's globals maps each such field to whether its memo is in use.
    """
    g = _Gen()
    g.env["_ev"] = [0]  # events seen, to judge whether a memo pays
    g.env["memos"] = {}
    g.env["_full"] = _memo_full(g.env)
    g.env.update(_generic=tail["generic"], _compiled_get=tail["compiled_get"], _resolve=tail["resolve"])
    g.env["_by_ids"] = {}  # found (a tuple of ids) -> its compiled check, once one exists
    g.in_match = True
    g.emit(0, "def match(ev):")
    g.emit(1, "found = None")
    g.emit(1, "try:")
    start = len(g.lines)
    _dotted_check(g, trie, "ev", 2)
    _node(g, trie, "ev", 2, slot_of, index, needed)
    if g.stored:
        g.lines.insert(start - 1, "    " + " = ".join(f"s{i}" for i in sorted(g.stored)) + " = M")
    # an integer too big for a double (possible only in an event built in Python: orjson reads
    # such numbers as floats) makes float() overflow in a numeric test: the generic path, whose
    # predicates read it as infinity, decides
    g.emit(1, "except (TypeError, AttributeError, OverflowError):")
    g.emit(2, "return _generic(ev)")
    g.emit(1, "if found is None:")
    g.emit(2, "found = ()" if tail["always"] else "return []")
    if not g.stored:  # no check reads a slot: one list of MISSING serves every event
        g.emit(1, f"s = {g.const('none', [MISSING] * len(slot_of))}")
    elif len(slot_of) <= 256:
        g.emit(1, f"s = [{', '.join(f's{i}' if i in g.stored else 'M' for i in range(len(slot_of)))}]")
    else:
        g.emit(1, f"s = [M] * {len(slot_of)}")
        for i in sorted(g.stored):
            g.emit(1, f"s[{i}] = s{i}")
    # a tuple of ids maps to its compiled check once one exists (bounded: concatenations of
    # several fields' ids can be many); until then the set of ids goes to `_resolve`
    g.emit(1, "try:")
    g.emit(2, "names = _by_ids.get(found)")
    g.emit(2, "if names is None:")
    g.emit(3, "key = frozenset(found)")
    g.emit(3, "names = _compiled_get(key)")
    g.emit(3, "if names is None:")
    g.emit(4, "return _resolve(key, s)")
    g.emit(3, f"if len(_by_ids) < {BY_IDS_SIZE}:")
    g.emit(4, "_by_ids[found] = names")
    g.emit(2, "return names(s)")
    g.emit(1, "except OverflowError:")
    g.emit(2, "return _generic(ev)")
    if g.helpers:
        g.lines.insert(1, "    _ev[0] += 1")
    source = "\n".join(g.lines + g.helpers) + "\n"
    _define(source, "<eventweir-ruleset>", g.env)
    return g.env["match"], source


def _lean(fi) -> bool:
    """Whether the field's index can be probed with any value type safely (see above)."""
    return (fi is not None and fi.range_index is None and not fi.exists and not fi.neg_all
            and not fi.neg_str_all and all(type(k) is str for k in fi.exact))


def _dotted_names(node) -> set[str]:
    """Keys that would reach a used field from `node` across two or more levels at once
    ("measurements.temperature"): EventBridge joins nested keys with dots, so an event key
    spelled like that must be read the generic way."""
    names: set[str] = set()

    def walk(n, prefix: str) -> None:
        for seg, child in n.children.items():
            name = f"{prefix}.{seg}"
            names.add(name)
            walk(child, name)
    for seg, child in node.children.items():
        walk(child, seg)
    return names


def _dotted_check(g: _Gen, node, d: str, depth: int, generic: str = "_generic") -> None:
    """Send the event the generic way if object `d` has a key that spans levels of a used path.
    Other dotted keys cannot reach a used field, and need no check (a set lookup per key in C)."""
    names = _dotted_names(node)
    if names:
        g.emit(depth, f"if not {g.const('dots', frozenset(names))}.isdisjoint({d}):")
        g.emit(depth + 1, f"return {generic}(ev)")


def _node(g: _Gen, node, d: str, depth: int, slot_of: dict, index: dict, needed: set) -> None:
    for seg, child in node.children.items():
        v = g.var("v")
        fi = index.get(child.leaf) if child.leaf is not None else None
        if not child.children and slot_of[child.leaf] not in needed and _lean(fi):
            if _lookups_per_string(fi) == 1 and fi.exact and not fi.exists:
                # exact strings only: a missing field looks up None, which no table holds
                _lookup(g, depth, g.const("ex", fi.exact), f"{d}.get({seg!r})")
                continue
            g.emit(depth, f"{v} = {d}.get({seg!r})")
            g.emit(depth, f"if {v} is not None:")
            _string_hits(g, depth + 1, v, fi, child.leaf)
            continue
        g.emit(depth, f"{v} = {d}.get({seg!r}, M)")
        g.emit(depth, f"if {v} is not M:")
        inner = depth + 1
        if child.children:
            t = g.var("t")
            g.emit(inner, f"{t} = type({v})")
            g.emit(inner, f"if {t} is dict:")
            _dotted_check(g, child, v, inner + 1)
            _node(g, child, v, inner + 1, slot_of, index, needed)
            g.emit(inner, f"elif {t} is list:")
            g.emit(inner + 1, "return _generic(ev)")
            if child.leaf is not None:
                g.emit(inner, "else:")
                _leaf(g, v, inner + 1, slot_of[child.leaf], fi, scalar=True, path=child.leaf,
                      stored=slot_of[child.leaf] in needed)
        else:
            _leaf(g, v, inner, slot_of[child.leaf], fi, scalar=False, path=child.leaf,
                  stored=slot_of[child.leaf] in needed)


MEMO_SIZE = 4096


def _lookups_per_string(fi) -> int:
    return (bool(fi.exact) + len(fi.prefix) + len(fi.suffix) + len(fi.prefix_ic) + len(fi.suffix_ic)
            + bool(fi.eic) + bool(fi.neg_all) + len(fi.neg_prefix) + len(fi.neg_suffix) + bool(fi.neg_eic))


def _memo_full(env: dict, memos: str = "memos"):
    """What a field's lookup does when its memo is full: clear it, and when most events since
    the last clear brought a value it had not seen (ids, timestamps), switch the memo off: the
    generated code then takes its inline branch for that field. `env[memos]` maps each field
    to whether its memo is on."""
    since: dict[str, int] = {}

    def full(path: str, flag: str, memo: dict, events: list) -> None:
        seen = events[0] - since.get(path, 0)
        since[path] = events[0]
        memo.clear()
        if MEMO_SIZE * 2 > seen:
            env[flag] = False
            env[memos][path] = False
    return full


def _string_hits(g: _Gen, depth: int, v: str, fi, path: str) -> None:
    """Every index lookup for the string `v` of field `fi`. A field with several tables
    (prefixes and suffixes of a few lengths, case-folded variants, anything-buts) remembers the
    ids per value: field values repeat (street names, types, statuses), so most events cost one
    dict lookup per field. The memo is bounded, and switched off for a field whose values do not
    repeat (`_memo_full`); both branches give the same ids."""
    if _lookups_per_string(fi) < 2:
        _string_body(g, depth, v, fi)
        return
    memo, look, c, flag = g.const("memo", {}), g.var("look"), g.var("c"), g.const("on", True)
    g.env["memos"][path] = True
    g.emit(depth, f"if {flag}:")
    g.emit(depth + 1, f"{c} = {memo}.get({v})")
    g.emit(depth + 1, f"if {c} is None:")
    g.emit(depth + 2, f"{c} = {look}({v})")
    g.emit(depth + 1, f"if {c}:")
    g.hit(depth + 2, c)
    g.emit(depth, "else:")
    _string_body(g, depth + 1, v, fi)
    main, g.lines = g.lines, []
    in_match, g.in_match = g.in_match, False
    g.emit(0, "")
    g.emit(0, f"def {look}(v):")
    g.emit(1, "found = set()")
    _string_body(g, 1, "v", fi)
    g.in_match = in_match
    g.emit(1, "hits = tuple(found)")
    g.emit(1, "if type(v) is str:")  # 1 == 1.0 == True: only strings share a memo entry
    g.emit(2, f"if len({memo}) >= {MEMO_SIZE}:")
    g.emit(3, f"_full({path!r}, {flag!r}, {memo}, _ev)")
    g.emit(2, f"{memo}[v] = hits")
    g.emit(1, "return hits")
    g.helpers += g.lines
    g.lines = main


def _string_body(g: _Gen, depth: int, v: str, fi) -> None:
    if fi.exists:
        g.hit(depth, g.const('exs', tuple(fi.exists)))
    _string_lookups(g, depth, v, fi)
    if fi.neg_all:
        c = g.var("c")
        g.emit(depth, f"{c} = {g.const('negr', fi.neg_result)}.get({v}, {g.const('nega', fi.neg_all)})")
        g.emit(depth, f"if {c}:")
        g.hit(depth + 1, c)
    if fi.neg_str_all:
        _negative_strings(g, depth, v, fi)


def _string_lookups(g: _Gen, depth: int, v: str, fi) -> None:
    if fi.exact:
        _lookup(g, depth, g.const("ex", fi.exact), v)
    for n, table in sorted(fi.prefix.items()):
        _affix_lookup(g, depth, g.const("pf", table), v, "startswith", table, f"{v}[:{n}]")
    for n, table in sorted(fi.suffix.items()):
        # v[:0] rather than "" for the empty suffix: it still fails on a non-string
        _affix_lookup(g, depth, g.const("sf", table), v, "endswith", table, f"{v}[-{n}:]" if n else f"{v}[:0]")
    if fi.eic or fi.prefix_ic or fi.suffix_ic:
        low = g.var("low")
        g.emit(depth, f"{low} = {v}.lower()")
        if fi.eic:
            _lookup(g, depth, g.const("eic", fi.eic), low)
        for n, table in sorted(fi.prefix_ic.items()):
            _lookup(g, depth, g.const("pfi", table), f"{low}[:{n}]")
        for n, table in sorted(fi.suffix_ic.items()):
            _lookup(g, depth, g.const("sfi", table), f"{low}[-{n}:]" if n else '""')


def _other(fi):
    """Slot filler for values the generated code does not inline: lists, literals, numbers."""
    hits = fi.hits_values if fi is not None else None
    lookup_sorted, points = None, 0
    if (fi is not None and fi.range_index is not None and not fi.exact and not fi.exists
            and not fi.neg_all and not fi.neg_str_all and not fi.prefix and not fi.suffix
            and not fi.eic and not fi.prefix_ic and not fi.suffix_ic):
        # ranges only (coordinates, readings): sorted numbers go straight to the range index
        lookup_sorted, points = fi.range_index.lookup_sorted, len(fi.range_index.points)

    def other(v, found):
        """Adds the ids `v` hits to `found`; returns what the slot keeps (MISSING for nothing)."""
        t = type(v)
        if t is list:
            v = scalars(v)
            if not v:
                return MISSING
        elif t is dict:
            return MISSING
        if lookup_sorted is not None and type(v) is SortedNumbers and points < len(v):
            lookup_sorted(v, found)
        elif hits is not None:
            hits(v if t is list else (v,), found)
        return v
    return other


def _leaf(g: _Gen, v: str, depth: int, slot: int, fi, scalar: bool, path: str, stored: bool = True) -> None:
    """Store the leaf value(s) in slot and look the value up in the field's index.

    Strings (and numbers, when the field has numeric ranges) are looked up inline; anything
    else goes through a small helper. A scalar is stored only if some check reads it after
    (`stored`); a field with ranges and no string table tests for a number first.
    """
    t = g.var("t")
    g.emit(depth, f"{t} = type({v})")
    d2 = depth + 1
    if fi is None:
        # a field only checked after its clause's anchor: keep any scalar as it is
        g.emit(depth, f"if {t} is not list and {t} is not dict:")
        g.emit(d2, f"{g.slot(slot)} = {v}")
        g.emit(depth, "else:")
        g.collect(d2, f"{g.const('other', _other(fi))}({v}, {{found}})", slot)
        return
    numbers_only = fi.range_index is not None and not fi.exists and _lookups_per_string(fi) == 0
    if not numbers_only:
        g.emit(depth, f"if {t} is str:")
        g.emit(d2, f"{g.slot(slot)} = {v}" if stored else "pass")
        _string_hits(g, d2, v, fi, path)
    if fi.range_index is not None:
        g.emit(depth, f"{'if' if numbers_only else 'elif'} {t} is float or {t} is int:")
        if stored:
            g.emit(d2, f"{g.slot(slot)} = {v}")
        if fi.exists:
            g.hit(d2, g.const('exs', tuple(fi.exists)))
        if fi.exact:
            _lookup(g, d2, g.const("ex", fi.exact), f"_lk({v})")
        if fi.neg_all or fi.neg_str_all:
            g.collect(d2, f"{g.const('negs', fi.negative)}({v}, {{found}})")
        # the range lookup inlined: bisect, then the boundary point or the interval below it
        # (a float by one bisection over RangeIndex.float_keys; an int, which may lie between
        # two doubles, by the points)
        ri = fi.range_index
        pts, sl, i = g.const("pts", ri.points), g.const("sl", ri.slots), g.var("i")
        c = g.var("c")
        g.emit(d2, f"if {t} is float:")
        g.emit(d2 + 1, f"{c} = {_float_slot(g, ri, v)}")
        g.emit(d2, "else:")
        # as the double EventBridge compares (float() of an int past doubles raises
        # OverflowError: the generic path reads it as infinity)
        n = g.var("n")
        g.emit(d2 + 1, f"{n} = float({v})")
        g.emit(d2 + 1, f"{i} = _bisect({pts}, {n})")
        g.emit(d2 + 1, f"{c} = {sl}[2 * {i} - 1] if {i} and {pts}[{i} - 1] == {n} else {sl}[2 * {i}]")
        g.emit(d2, f"if {c}:")
        g.hit(d2 + 1, c)
        if numbers_only:
            g.emit(depth, f"elif {t} is str:")
            g.emit(d2, "pass" if not stored else f"{g.slot(slot)} = {v}")
    g.emit(depth, "else:")
    g.collect(d2, f"{g.const('other', _other(fi))}({v}, {{found}})", slot if stored else None)


INLINE_FLOAT_KEYS = 8


def _float_slot(g: _Gen, ri, v: str) -> str:
    """The expression for the ids the float `v` hits in the range index `ri`: its slot by
    bisection over `float_keys`. With a few boundaries (a threshold or two per field, the usual
    case) the bisection is written out as nested comparisons, which costs less than the call."""
    keys = ri.float_keys
    if len(keys) > INLINE_FLOAT_KEYS:
        return f"{g.const('sl', ri.slots)}[_bisect({g.const('fk', keys)}, {v})]"

    def tree(lo: int, hi: int) -> str:  # bisect_right's answer lies in lo..hi
        if lo == hi:
            return g.const("r", ri.slots[lo])
        mid = (lo + hi + 1) // 2  # below keys[mid - 1]: at most mid - 1; else at least mid
        return f"({tree(lo, mid - 1)} if {v} < {g.const('k', keys[mid - 1])} else {tree(mid, hi)})"
    return tree(0, len(keys))


def _negative_strings(g: _Gen, depth: int, v: str, fi) -> None:
    """anything-but prefix/suffix/equals-ignore-case on a string: inline the common case.

    Each table lookup finds the fields the value is excluded from; when none does (the usual
    case) every such field holds. Otherwise the index works out the difference.
    """
    keys = [(t, f"{v}[:{n}]") for n, t in sorted(fi.neg_prefix.items())]
    keys += [(t, f"{v}[-{n}:]") for n, t in sorted(fi.neg_suffix.items())]
    if fi.neg_eic:
        keys.append((fi.neg_eic, f"{v}.lower()"))
    every = g.const("nsa", fi.neg_str_all)
    if len(keys) == 1:
        table, key = keys[0]
        # one table: precompute "all minus excluded" per key
        result = {k: tuple(f for f in fi.neg_str_all if f not in set(ex)) for k, ex in table.items()}
        c = g.var("c")
        g.emit(depth, f"{c} = {g.const('nsr', result)}.get({key}, {every})")
        g.emit(depth, f"if {c}:")
        g.hit(depth + 1, c)
        return
    test = " and ".join(f"{g.const('nst', table)}.get({key}) is None" for table, key in keys)
    g.emit(depth, f"if {test}:")
    g.hit(depth + 1, every)
    g.emit(depth, "else:")
    g.collect(depth + 1, f"{g.const('negs', fi.negative)}({v}, {{found}})")


AFFIX_SCAN_KEYS = 8


def _affix_lookup(g: _Gen, depth: int, table: str, v: str, method: str, keys: dict, key: str) -> None:
    """A prefix/suffix table lookup for the string `v`. A table of a few keys is tried first with
    one `startswith`/`endswith` on them all, which makes no string: most values match none, and
    slicing out and hashing the key costs more. A big table (thousands of rules) is looked up
    by key, in constant time."""
    if len(keys) > AFFIX_SCAN_KEYS:
        _lookup(g, depth, table, key)
        return
    g.emit(depth, f"if {v}.{method}({g.const('keys', tuple(keys))}):")
    _lookup(g, depth + 1, table, key)


def _lookup(g: _Gen, depth: int, table: str | None, key: str, fn: str | None = None) -> None:
    c = g.var("c")
    g.emit(depth, f"{c} = {fn}({key})" if fn else f"{c} = {table}.get({key})")
    g.emit(depth, f"if {c}:")
    g.hit(depth + 1, c)


def _scalar_test(g: _Gen, cond) -> str:
    """A Python expression true when the scalar leaf `x` (of type `t`) satisfies `cond`.

    The common kinds are inlined; the rest call the condition's own predicate. Numbers compare
    as IEEE doubles (ints converted), exactly as conditions.build_predicate does.
    """
    kind, arg = cond.kind, cond.arg
    if kind == "exact" and type(arg) is str:
        return f"x == {g.const('k', arg)}"  # a str key: only an equal str compares equal
    if kind == "prefix":
        return f"(t is str and x.startswith({g.const('k', arg)}))"
    if kind == "suffix":
        return f"(t is str and x.endswith({g.const('k', arg)}))"
    if kind == "numeric":
        tests = _range_on(g, arg, "{n}")  # the bounds' constants made once, for both types
        if tests == "True":
            return "(t is float or t is int)"
        return f"((t is float and {tests.format(n='x')}) or (t is int and {tests.format(n='float(x)')}))"
    if kind == "eic":
        return f"(t is str and x.lower() == {g.const('k', arg)})"
    if kind == "anything_but":  # arg: the excluded leaf keys (conditions.leaf_key)
        keys = g.const("k", arg)
        return f"(x not in {keys} if t is str else _lk(x) not in {keys})"
    if kind == "ab_prefix":
        return f"not (t is str and x.startswith({g.const('k', tuple(arg))}))"
    if kind == "ab_suffix":
        return f"not (t is str and x.endswith({g.const('k', tuple(arg))}))"
    if kind == "wildcard":
        test = _wildcard_test(g, arg)
        if test:
            return f"(t is str and {test})"
    if kind == "ab_wildcard" and len(arg) == 1:
        test = _wildcard_test(g, arg[0])
        if test:
            return f"not (t is str and {test})"
    return f"{g.const('p', cond.pred)}(x)"


def _wildcard_test(g: _Gen, segs: tuple) -> str | None:
    """The str `x` against a wildcard of one `*` or of `*middle*`, as one string operation
    (wildcard.make_matcher's shapes); None for other shapes, which keep their predicate."""
    if len(segs) == 2:
        head, tail = segs
        if not tail:
            return f"x.startswith({g.const('k', head)})"
        if not head:
            return f"x.endswith({g.const('k', tail)})"
        return (f"len(x) >= {len(head) + len(tail)} and x.startswith({g.const('k', head)}) "
                f"and x.endswith({g.const('k', tail)})")
    if len(segs) == 3 and not segs[0] and not segs[2]:
        return f"{g.const('k', segs[1])} in x"
    return None


def _sorted_range_test(g: _Gen, numeric_range) -> str:
    """Whether the sorted numbers `x` hold one in the range: the first at or above its low end
    (by bisection) must be under its high end; checks._any_in_ranges, for one range."""
    lo, lo_incl, hi, hi_incl = numeric_range
    if lo is None:
        first = "(i := 0) < len(x)"
    else:
        fn = "_bl" if lo_incl else "_br"
        g.env[fn] = bisect_left if lo_incl else bisect_right
        first = f"(i := {fn}(x, {g.const('lo', lo)})) < len(x)"
    if hi is None:
        return f"({first})"
    return f"({first} and x[i] {'<=' if hi_incl else '<'} {g.const('hi', hi)})"


def _emit_checks(g: _Gen, checks, depth: int, fail: str) -> None:
    """Straight-line tests of a clause's fields on the slot values; `fail` ends the clause."""
    for check in checks:
        if check.same_element:
            g.emit(depth, f"if not {g.const('h', check.holds)}(s):")
            g.emit(depth + 1, fail)
            continue
        if check.exists_false and check.exists_true:
            continue  # missing or present: always holds
        g.emit(depth, f"x = s[{check.slot}]")
        if check.exists_false:  # missing holds; a present value must meet one of the other conditions
            g.emit(depth, "if x is not M:")
        else:
            g.emit(depth, "if x is M:")
            g.emit(depth + 1, fail)
            if check.exists_true:  # present is enough
                continue
            g.emit(depth, "if True:")
        if not check.conds:
            g.emit(depth + 1, fail)
            continue
        g.emit(depth + 1, "t = type(x)")
        if check.ranges is not None:
            # numbers sorted once per event (SortedNumbers): a bisection per range, inline
            g.emit(depth + 1, "if t is SN:")
            g.emit(depth + 2, f"if not ({' or '.join(_sorted_range_test(g, r) for r in check.ranges)}):")
            g.emit(depth + 3, fail)
            g.emit(depth + 1, "elif t is list:")
        else:
            g.emit(depth + 1, "if t is list or t is SN:")
        g.emit(depth + 2, f"if not {g.const('h', check.holds)}(s):")
        g.emit(depth + 3, fail)
        tests = " or ".join(_scalar_test(g, c) for c in check.conds)
        g.emit(depth + 1, f"elif not ({tests}):")
        g.emit(depth + 2, fail)


def build_clause_check(checks):
    """One function `ok(slots) -> bool` for the fields of a clause left to check after its anchor.

    Replaces a loop of `_Check.holds` calls per candidate clause with straight-line code; values
    that are arrays still go through the check's own `holds` (ranges bisected over sorted numbers).
    """
    g = _Gen()
    g.env["SN"] = SortedNumbers
    g.emit(0, "def ok(s):")
    _emit_checks(g, checks, 1, "return False")
    g.emit(1, "return True")
    _define("\n".join(g.lines) + "\n", "<eventweir-clause>", g.env)
    return g.env["ok"]


def _check_expr(g: _Gen, check) -> str | None:
    """`_emit_checks`' tests of one field as a single expression on the slot value `x<slot>` and
    its type `t<slot>`, read once up front; None when the check always holds."""
    if check.same_element:
        return f"{g.const('h', check.holds)}(s)"
    if check.exists_false and check.exists_true:
        return None
    x, t = f"x{check.slot}", f"t{check.slot}"
    if check.exists_true:
        return f"{x} is not M"
    if not check.conds:
        present = "False"
    else:
        scalar = " or ".join(_scalar_test(g, c) for c in check.conds)
        arrays = f"{g.const('h', check.holds)}(s)"
        if check.ranges is not None:  # numbers sorted once per event (SortedNumbers): bisections
            arrays = f"(({' or '.join(_sorted_range_test(g, r) for r in check.ranges)}) if t is SN else {arrays})"
        # the tests name the value `x` and its type `t`: here they are this slot's
        arrays = _WORD_T.sub(t, _WORD_X.sub(x, arrays))
        if not check.exists_false and all(c.kind == "numeric" for c in check.conds):
            # ranges only (thresholds on a reading): on the value as a double, read once (d<slot>)
            g.numbers.add(check.slot)
            n = f"d{check.slot}"
            on_n = " or ".join(f"({_range_on(g, c.arg, n)})" for c in check.conds)
            return f"(({on_n}) if {n} is not None else ({x} is not M and ({t} is list or {t} is SN) and {arrays}))"
        present = _WORD_T.sub(t, _WORD_X.sub(x, f"(({scalar}) if t is not list and t is not SN else ")) + arrays + ")"
    return f"({x} is M or {present})" if check.exists_false else f"({x} is not M and {present})"


def _range_on(g: _Gen, numeric_range, n: str) -> str:
    """The double `n` (an expression) in a numeric range, as code; "True" for an unbounded one."""
    lo, lo_incl, hi, hi_incl = numeric_range
    tests = []
    if lo is not None:
        tests.append(f"{n} {'>=' if lo_incl else '>'} {g.const('lo', lo)}")
    if hi is not None:
        tests.append(f"{n} {'<=' if hi_incl else '<'} {g.const('hi', hi)}")
    return " and ".join(tests) or "True"


_WORD_X, _WORD_T = re.compile(r"\bx\b"), re.compile(r"\bt\b")


def build_candidates_check(candidates):
    """One function `names(slots) -> list` for a recurring set of candidate clauses.

    `candidates` lists, in rule order, (rule name, clauses) where clauses is None when an index
    hit alone proves the rule, else the check lists of its candidate clauses. Events of one kind
    keep hitting the same candidates, so one call with every test inlined replaces a call per
    clause and the set bookkeeping around them. Each slot is read once; a rule is one `if` on
    its clauses' expressions (several rules often test one field: thresholds on a reading).
    """
    g = _Gen()
    g.env["SN"] = SortedNumbers
    g.emit(0, "def names(s):")
    names = [g.const("n", name) for name, _ in candidates]
    if all(clauses is None for _, clauses in candidates):
        g.emit(1, f"return [{', '.join(names)}]")
    else:
        for slot in sorted({c.slot for _, clauses in candidates for checks in clauses or () for c in checks}):
            g.emit(1, f"x{slot} = s[{slot}]")
            g.emit(1, f"t{slot} = type(x{slot})")
        hoisted = len(g.lines)
        g.emit(1, "out = []")
        for name_const, (_, clauses) in zip(names, candidates):
            tests = []  # one expression per clause; None for a clause that always holds
            for checks in clauses or [[]]:
                parts = [e for e in (_check_expr(g, c) for c in checks) if e is not None]
                tests.append(" and ".join(parts) if parts else None)
            if None in tests:
                g.emit(1, f"out.append({name_const})")
            elif tests:
                g.emit(1, f"if {' or '.join(f'({test})' for test in tests)}:")
                g.emit(2, f"out.append({name_const})")
        g.emit(1, "return out")
        # a number as a double (ints converted, as EventBridge compares them); None otherwise
        g.lines[hoisted:hoisted] = [f"    d{slot} = x{slot} if t{slot} is float else float(x{slot}) if t{slot} is int else None"
                                    for slot in sorted(g.numbers)]
    _define("\n".join(g.lines) + "\n", "<eventweir-candidates>", g.env)
    return g.env["names"]
