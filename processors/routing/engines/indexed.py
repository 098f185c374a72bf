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

from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias, TypedDict

from ..checks import Check
from ..flatten import PathTrie
from ..index import FieldIndex, IdTable, RangeIndex
from ..kinds import Kind
from ..values import MISSING, SortedNumbers, scalars
from .trial import Matching
from .writer import (
    MEMO_SIZE,
    CodeWriter,
    bound_names,
    dotted_check,
    memo_switch,
    range_on,
    scalar_test,
    sorted_range_test,
)

BY_IDS_SIZE = 4096

Slots: TypeAlias = list[Any]  # one event's slot values (see checks.py)
ClauseCheck: TypeAlias = Callable[[Slots], bool]  # build_clause_check's `ok(slots)`
# build_candidates_check's `names(slots)`: the rule names (or rule indexes) whose candidate clauses hold
CandidatesCheck: TypeAlias = Callable[[Slots], list[Any]]
# a rule among the candidates: (rule name or index, its candidate clauses' checks; None: an index hit proves it)
Candidate: TypeAlias = tuple[str | int, Sequence[Sequence[Check]] | None]
# for `match` over decoded structs (engines/partial.py): id(trie node) -> (the type its objects
# decode to, {key: attribute}); an absent key reads MISSING
StructLevels: TypeAlias = dict[int, tuple[type, dict[str, str]]]


class Tail(TypedDict):
    """What `match` hands its candidates over to (see build_fast_path)."""

    generic: Matching
    compiled_get: Callable[[frozenset[int]], Callable[[Slots], list[str]] | None]
    resolve: Callable[[frozenset[int], Slots], list[str]]
    always: bool


class IndexWriter(CodeWriter):
    """A CodeWriter for the index engine's `match`, which collects the ids its lookups hit.

    In `match` itself, `found` is None or a tuple of field ids, and slot values are locals
    (slot_3, slot_7...) put in a list only for the checks: most events hit nothing, and then no
    set or list is made at all. Helper functions collect into a set `found`."""

    def __init__(self, label: str, structs: StructLevels | None = None) -> None:
        super().__init__(label)
        self.namespace.update(scalars=scalars, bisect_right=bisect_right)
        self.structs = structs  # None: `match` reads dicts
        self.in_match = False
        self.stored: set[int] = set()  # slots `match` assigns
        self.numbers: set[int] = set()  # slots a candidates check reads as a double (number_<slot>)

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
        h = self.var("hits")
        self.emit(depth, f"{h} = set()")
        self.emit(depth, f"{self.slot(slot)} = {call.format(found=h)}" if slot is not None else call.format(found=h))
        self.emit(depth, f"if {h}:")
        self.emit(depth + 1, f"{h} = tuple({h})")
        self.hit(depth + 1, h)

    def slot(self, slot: int) -> str:
        self.stored.add(slot)
        return f"slot_{slot}"


def build_fast_path(trie: PathTrie, slot_of: dict[str, int], index: dict[str, FieldIndex], needed: set[int],
                    tail: Tail, structs: StructLevels | None = None) -> tuple[Matching, str, IndexWriter]:
    """Source and compiled function `match(ev) -> rule names`.

    `ev` is a dict, or with `structs` the decoded struct of the root (engines/partial.py): each
    object on a used path is a struct whose attributes are the keys read (MISSING when absent),
    and keys that span levels never reach `match` (the decoder refuses them).

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
    g = IndexWriter("indexed" if structs is None else "partial", structs)
    memos: dict[str, bool] = {}
    g.namespace["events_seen"] = [0]  # to judge whether a memo pays
    g.namespace["memos"] = memos
    g.namespace["memo_full"] = memo_switch(g, memos)
    g.namespace.update(generic=tail["generic"], compiled_get=tail["compiled_get"], resolve=tail["resolve"])
    g.namespace["by_ids"] = {}  # found (a tuple of ids) -> its compiled check, once one exists
    g.in_match = True
    g.emit(0, "def match(ev):")
    g.emit(1, "found = None")
    g.emit(1, "try:")
    start = len(g.lines)
    if structs is None:
        dotted_check(g, trie, "ev", 2, "generic")
    _node(g, trie, "ev", 2, slot_of, index, needed)
    if g.stored:
        g.lines.insert(start - 1, "    " + " = ".join(f"slot_{i}" for i in sorted(g.stored)) + " = MISSING")
    # an integer too big for a double (possible only in an event built in Python: orjson reads
    # such numbers as floats) makes float() overflow in a numeric test: the generic path, whose
    # predicates read it as infinity, decides
    g.emit(1, "except (TypeError, AttributeError, OverflowError):")
    g.emit(2, "return generic(ev)")
    g.emit(1, "if found is None:")
    g.emit(2, "found = ()" if tail["always"] else "return []")
    if not g.stored:  # no check reads a slot: one list of MISSING serves every event
        g.emit(1, f"s = {g.const('all_missing', [MISSING] * len(slot_of))}")
    elif len(slot_of) <= 256:
        g.emit(1, f"s = [{', '.join(f'slot_{i}' if i in g.stored else 'MISSING' for i in range(len(slot_of)))}]")
    else:
        g.emit(1, f"s = [MISSING] * {len(slot_of)}")
        for i in sorted(g.stored):
            g.emit(1, f"s[{i}] = slot_{i}")
    # a tuple of ids maps to its compiled check once one exists (bounded: concatenations of
    # several fields' ids can be many); until then the set of ids goes to `_resolve`
    g.emit(1, "try:")
    g.emit(2, "names = by_ids.get(found)")
    g.emit(2, "if names is None:")
    g.emit(3, "key = frozenset(found)")
    g.emit(3, "names = compiled_get(key)")
    g.emit(3, "if names is None:")
    g.emit(4, "return resolve(key, s)")
    g.emit(3, f"if len(by_ids) < {BY_IDS_SIZE}:")
    g.emit(4, "by_ids[found] = names")
    g.emit(2, "return names(s)")
    g.emit(1, "except OverflowError:")
    g.emit(2, "return generic(ev)")
    if g.helpers:
        g.lines.insert(1, "    events_seen[0] += 1")
    source = g.source()
    g.define(source)
    return g.namespace["match"], source, g


def _lean(fi: FieldIndex | None) -> bool:
    """Whether the field's index can be probed with any value type safely (see above)."""
    return (fi is not None and fi.range_index is None and not fi.exists and not fi.neg_all
            and not fi.neg_str_all and all(type(k) is str for k in fi.exact))


def _node(g: IndexWriter, node: PathTrie, d: str, depth: int, slot_of: dict[str, int], index: dict[str, FieldIndex],
          needed: set[int]) -> None:
    attrs = g.structs[id(node)][1] if g.structs is not None else None

    def read(seg: str, default: str) -> str:  # the value of key `seg` of the object `d`; `default` if absent
        return f"{d}.{attrs[seg]}" if attrs is not None else f"{d}.get({seg!r}{default})"
    for seg, child in node.children.items():
        v = g.var("value")
        fi = index.get(child.leaf) if child.leaf is not None else None
        if not child.children and slot_of[child.leaf] not in needed and fi is not None and _lean(fi):  # type: ignore[index]  # a childless trie node is a leaf: .leaf is set
            if _lookups_per_string(fi) == 1 and fi.exact and not fi.exists:
                # exact strings only: a missing field looks up None (MISSING), which no table holds
                _lookup(g, depth, g.const("exact", fi.exact), read(seg, ""))
                continue
            g.emit(depth, f"{v} = {read(seg, '')}")
            g.emit(depth, f"if {v} is not None:" if attrs is None else f"if {v} is not None and {v} is not MISSING:")
            _string_hits(g, depth + 1, v, fi, child.leaf)  # type: ignore[arg-type]  # fi found: a leaf
            continue
        g.emit(depth, f"{v} = {read(seg, ', MISSING')}")
        g.emit(depth, f"if {v} is not MISSING:")
        inner = depth + 1
        if child.children:
            t = g.var("type")
            g.emit(inner, f"{t} = type({v})")
            if g.structs is None:
                g.emit(inner, f"if {t} is dict:")
                dotted_check(g, child, v, inner + 1, "generic")
            else:
                g.emit(inner, f"if {t} is {g.const('struct', g.structs[id(child)][0])}:")
            _node(g, child, v, inner + 1, slot_of, index, needed)
            g.emit(inner, f"elif {t} is list:")
            g.emit(inner + 1, "return generic(ev)")
            if child.leaf is not None:
                g.emit(inner, "else:")
                _leaf(g, v, inner + 1, slot_of[child.leaf], fi, scalar=True, path=child.leaf,
                      stored=slot_of[child.leaf] in needed)
        else:
            _leaf(g, v, inner, slot_of[child.leaf], fi, scalar=False, path=child.leaf,  # type: ignore[index,arg-type]
                  stored=slot_of[child.leaf] in needed)  # type: ignore[index]  # a childless trie node is a leaf: .leaf is set


def _lookups_per_string(fi: FieldIndex) -> int:
    return (bool(fi.exact) + len(fi.prefix) + len(fi.suffix) + len(fi.prefix_ic) + len(fi.suffix_ic)
            + bool(fi.eic) + bool(fi.neg_all) + len(fi.neg_prefix) + len(fi.neg_suffix) + bool(fi.neg_eic))


def _string_hits(g: IndexWriter, depth: int, v: str, fi: FieldIndex, path: str) -> None:
    """Every index lookup for the string `v` of field `fi`. A field with several tables
    (prefixes and suffixes of a few lengths, case-folded variants, anything-buts) remembers the
    ids per value: field values repeat (street names, types, statuses), so most events cost one
    dict lookup per field. The memo is bounded, and switched off for a field whose values do not
    repeat (writer.memo_switch); both branches give the same ids."""
    if _lookups_per_string(fi) < 2:
        _string_body(g, depth, v, fi)
        return
    memo, look, c, flag = g.const("memo", {}), g.var("lookup"), g.var("ids"), g.const("memo_on", True)
    g.namespace["memos"][path] = True
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
    g.emit(3, f"memo_full({path!r}, {flag!r}, {memo}, events_seen)")
    g.emit(2, f"{memo}[v] = hits")
    g.emit(1, "return hits")
    g.helpers += g.lines
    g.lines = main


def _string_body(g: IndexWriter, depth: int, v: str, fi: FieldIndex) -> None:
    if fi.exists:
        g.hit(depth, g.const('exists_ids', tuple(fi.exists)))
    _string_lookups(g, depth, v, fi)
    if fi.neg_all:
        c = g.var("ids")
        ids, every = g.const("anything_but_ids", fi.neg_result), g.const("anything_but_all", fi.neg_all)
        g.emit(depth, f"{c} = {ids}.get({v}, {every})")
        g.emit(depth, f"if {c}:")
        g.hit(depth + 1, c)
    if fi.neg_str_all:
        _negative_strings(g, depth, v, fi)


def _string_lookups(g: IndexWriter, depth: int, v: str, fi: FieldIndex) -> None:
    if fi.exact:
        _lookup(g, depth, g.const("exact", fi.exact), v)
    for n, table in sorted(fi.prefix.items()):
        _affix_lookup(g, depth, g.const("prefixes", table), v, "startswith", table, f"{v}[:{n}]")
    for n, table in sorted(fi.suffix.items()):
        # v[:0] rather than "" for the empty suffix: it still fails on a non-string
        _affix_lookup(g, depth, g.const("suffixes", table), v, "endswith", table, f"{v}[-{n}:]" if n else f"{v}[:0]")
    if fi.eic or fi.prefix_ic or fi.suffix_ic:
        low = g.var("lower")
        g.emit(depth, f"{low} = {v}.lower()")
        if fi.eic:
            _lookup(g, depth, g.const("lowered", fi.eic), low)
        for n, table in sorted(fi.prefix_ic.items()):
            _lookup(g, depth, g.const("prefixes_ic", table), f"{low}[:{n}]")
        for n, table in sorted(fi.suffix_ic.items()):
            _lookup(g, depth, g.const("suffixes_ic", table), f"{low}[-{n}:]" if n else '""')


def _other(fi: FieldIndex | None) -> Callable[[Any, set[int]], Any]:
    """Slot filler for values the generated code does not inline: lists, literals, numbers."""
    hits = fi.hits_values if fi is not None else None
    lookup_sorted: Callable[[SortedNumbers, set[int]], None] | None
    lookup_sorted, points = None, 0
    if (fi is not None and fi.range_index is not None and not fi.exact and not fi.exists
            and not fi.neg_all and not fi.neg_str_all and not fi.prefix and not fi.suffix
            and not fi.eic and not fi.prefix_ic and not fi.suffix_ic):
        # ranges only (coordinates, readings): sorted numbers go straight to the range index
        lookup_sorted, points = fi.range_index.lookup_sorted, len(fi.range_index.points)

    def other(v: Any, found: set[int]) -> Any:
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


def _leaf(g: IndexWriter, v: str, depth: int, slot: int, fi: FieldIndex | None, scalar: bool, path: str,
          stored: bool = True) -> None:
    """Store the leaf value(s) in slot and look the value up in the field's index.

    Strings (and numbers, when the field has numeric ranges) are looked up inline; anything
    else goes through a small helper. A scalar is stored only if some check reads it after
    (`stored`); a field with ranges and no string table tests for a number first.
    """
    t = g.var("type")
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
            g.hit(d2, g.const('exists_ids', tuple(fi.exists)))
        if fi.exact:
            _lookup(g, d2, g.const("exact", fi.exact), f"leaf_key({v})")
        if fi.neg_all or fi.neg_str_all:
            g.collect(d2, f"{g.const('anything_but_hits', fi.negative)}({v}, {{found}})")
        # the range lookup inlined: bisect, then the boundary point or the interval below it
        # (a float by one bisection over RangeIndex.float_keys; an int, which may lie between
        # two doubles, by the points)
        ri = fi.range_index
        pts, sl, i = g.const("points", ri.points), g.const("range_ids", ri.slots), g.var("at")
        c = g.var("ids")
        g.emit(d2, f"if {t} is float:")
        g.emit(d2 + 1, f"{c} = {_float_slot(g, ri, v)}")
        g.emit(d2, "else:")
        # as the double EventBridge compares (float() of an int past doubles raises
        # OverflowError: the generic path reads it as infinity)
        n = g.var("number")
        g.emit(d2 + 1, f"{n} = float({v})")
        g.emit(d2 + 1, f"{i} = bisect_right({pts}, {n})")
        g.emit(d2 + 1, f"{c} = {sl}[2 * {i} - 1] if {i} and {pts}[{i} - 1] == {n} else {sl}[2 * {i}]")
        g.emit(d2, f"if {c}:")
        g.hit(d2 + 1, c)
        if numbers_only:
            g.emit(depth, f"elif {t} is str:")
            g.emit(d2, "pass" if not stored else f"{g.slot(slot)} = {v}")
    g.emit(depth, "else:")
    g.collect(d2, f"{g.const('other', _other(fi))}({v}, {{found}})", slot if stored else None)


INLINE_FLOAT_KEYS = 8


def _float_slot(g: IndexWriter, ri: RangeIndex, v: str) -> str:
    """The expression for the ids the float `v` hits in the range index `ri`: its slot by
    bisection over `float_keys`. With a few boundaries (a threshold or two per field, the usual
    case) the bisection is written out as nested comparisons, which costs less than the call."""
    keys = ri.float_keys
    if len(keys) > INLINE_FLOAT_KEYS:
        return f"{g.const('range_ids', ri.slots)}[bisect_right({g.const('float_keys', keys)}, {v})]"

    def tree(lo: int, hi: int) -> str:  # bisect_right's answer lies in lo..hi
        if lo == hi:
            return g.const("range_ids", ri.slots[lo])
        mid = (lo + hi + 1) // 2  # below keys[mid - 1]: at most mid - 1; else at least mid
        return f"({tree(lo, mid - 1)} if {v} < {g.const('bound', keys[mid - 1])} else {tree(mid, hi)})"
    return tree(0, len(keys))


def _negative_strings(g: IndexWriter, depth: int, v: str, fi: FieldIndex) -> None:
    """anything-but prefix/suffix/equals-ignore-case on a string: inline the common case.

    Each table lookup finds the fields the value is excluded from; when none does (the usual
    case) every such field holds. Otherwise the index works out the difference.
    """
    keys = [(t, f"{v}[:{n}]") for n, t in sorted(fi.neg_prefix.items())]
    keys += [(t, f"{v}[-{n}:]") for n, t in sorted(fi.neg_suffix.items())]
    if fi.neg_eic:
        keys.append((fi.neg_eic, f"{v}.lower()"))
    every = g.const("ab_string_all", fi.neg_str_all)
    if not keys:  # only empty lists (`{"anything-but": {"prefix": []}}`): they exclude no string
        g.hit(depth, every)
        return
    if len(keys) == 1:
        table, key = keys[0]
        # one table: precompute "all minus excluded" per key
        result = {k: tuple(f for f in fi.neg_str_all if f not in set(ex)) for k, ex in table.items()}
        c = g.var("ids")
        g.emit(depth, f"{c} = {g.const('ab_string_ids', result)}.get({key}, {every})")
        g.emit(depth, f"if {c}:")
        g.hit(depth + 1, c)
        return
    test = " and ".join(f"{g.const('ab_string_table', table)}.get({key}) is None" for table, key in keys)
    g.emit(depth, f"if {test}:")
    g.hit(depth + 1, every)
    g.emit(depth, "else:")
    g.collect(depth + 1, f"{g.const('anything_but_hits', fi.negative)}({v}, {{found}})")


AFFIX_SCAN_KEYS = 8


def _affix_lookup(g: IndexWriter, depth: int, table: str, v: str, method: str, keys: IdTable, key: str) -> None:
    """A prefix/suffix table lookup for the string `v`. A table of a few keys is tried first with
    one `startswith`/`endswith` on them all, which makes no string: most values match none, and
    slicing out and hashing the key costs more. A big table (thousands of rules) is looked up
    by key, in constant time."""
    if len(keys) > AFFIX_SCAN_KEYS:
        _lookup(g, depth, table, key)
        return
    g.emit(depth, f"if {v}.{method}({g.const('affixes', tuple(keys))}):")
    _lookup(g, depth + 1, table, key)


def _lookup(g: IndexWriter, depth: int, table: str, key: str) -> None:
    c = g.var("ids")
    g.emit(depth, f"{c} = {table}.get({key})")
    g.emit(depth, f"if {c}:")
    g.hit(depth + 1, c)


def _emit_checks(g: IndexWriter, checks: Iterable[Check], depth: int, fail: str) -> None:
    """Straight-line tests of a clause's fields on the slot values; `fail` ends the clause."""
    for check in checks:
        if check.same_element:
            g.emit(depth, f"if not {g.const('holds', check.holds)}(s):")
            g.emit(depth + 1, fail)
            continue
        if check.exists_false and check.exists_true:
            continue  # missing or present: always holds
        g.emit(depth, f"x = s[{check.slot}]")
        if check.exists_false:  # missing holds; a present value must meet one of the other conditions
            g.emit(depth, "if x is not MISSING:")
        else:
            g.emit(depth, "if x is MISSING:")
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
            g.emit(depth + 1, "if t is SortedNumbers:")
            g.emit(depth + 2, f"if not ({' or '.join(sorted_range_test(g, r) for r in check.ranges)}):")
            g.emit(depth + 3, fail)
            g.emit(depth + 1, "elif t is list:")
        else:
            g.emit(depth + 1, "if t is list or t is SortedNumbers:")
        g.emit(depth + 2, f"if not {g.const('holds', check.holds)}(s):")
        g.emit(depth + 3, fail)
        tests = " or ".join(scalar_test(g, c) for c in check.conds)
        g.emit(depth + 1, f"elif not ({tests}):")
        g.emit(depth + 2, fail)


def build_clause_check(checks: Iterable[Check]) -> ClauseCheck:
    """One function `ok(slots) -> bool` for the fields of a clause left to check after its anchor.

    Replaces a loop of `_Check.holds` calls per candidate clause with straight-line code; values
    that are arrays still go through the check's own `holds` (ranges bisected over sorted numbers).
    """
    g = IndexWriter("clause")
    g.namespace["SortedNumbers"] = SortedNumbers
    g.emit(0, "def ok(s):")
    _emit_checks(g, checks, 1, "return False")
    g.emit(1, "return True")
    g.define()
    ok: ClauseCheck = g.namespace["ok"]
    return ok


def _check_expr(g: IndexWriter, check: Check) -> str | None:
    """`_emit_checks`' tests of one field as a single expression on the slot value `value_<slot>`
    and its type `type_<slot>`, read once up front; None when the check always holds."""
    if check.same_element:
        return f"{g.const('holds', check.holds)}(s)"
    if check.exists_false and check.exists_true:
        return None
    x, t = f"value_{check.slot}", f"type_{check.slot}"
    if check.exists_true:
        return f"{x} is not MISSING"
    if not check.conds:
        present = "False"
    else:
        scalar = " or ".join(scalar_test(g, c, x, t) for c in check.conds)
        arrays = f"{g.const('holds', check.holds)}(s)"
        if check.ranges is not None:  # numbers sorted once per event (SortedNumbers): bisections
            sorted_tests = " or ".join(sorted_range_test(g, r, x) for r in check.ranges)
            arrays = f"(({sorted_tests}) if {t} is SortedNumbers else {arrays})"
        if not check.exists_false and all(c.kind is Kind.NUMERIC for c in check.conds):
            # ranges only (thresholds on a reading): on the value as a double, read once
            g.numbers.add(check.slot)
            n = f"double_{check.slot}"
            on_n = " or ".join(f"({range_on(c.arg, *bound_names(g, c.arg), n)})" for c in check.conds)
            return (f"(({on_n}) if {n} is not None else ({x} is not MISSING and ({t} is list or {t} is SortedNumbers)"
                    f" and {arrays}))")
        present = f"(({scalar}) if {t} is not list and {t} is not SortedNumbers else {arrays})"
    return f"({x} is MISSING or {present})" if check.exists_false else f"({x} is not MISSING and {present})"


def build_candidates_check(candidates: Sequence[Candidate]) -> CandidatesCheck:
    """One function `names(slots) -> list` for a recurring set of candidate clauses.

    `candidates` lists, in rule order, (rule name, clauses) where clauses is None when an index
    hit alone proves the rule, else the check lists of its candidate clauses. Events of one kind
    keep hitting the same candidates, so one call with every test inlined replaces a call per
    clause and the set bookkeeping around them. Each slot is read once; a rule is one `if` on
    its clauses' expressions (several rules often test one field: thresholds on a reading).
    """
    g = IndexWriter("candidates")
    g.namespace["SortedNumbers"] = SortedNumbers
    g.emit(0, "def names(s):")
    names = [g.const("rule", name) for name, _ in candidates]
    if all(clauses is None for _, clauses in candidates):
        g.emit(1, f"return [{', '.join(names)}]")
    else:
        for slot in sorted({c.slot for _, clauses in candidates for checks in clauses or () for c in checks}):
            g.emit(1, f"value_{slot} = s[{slot}]")
            g.emit(1, f"type_{slot} = type(value_{slot})")
        hoisted = len(g.lines)
        g.emit(1, "out = []")
        for name_const, (_, clauses) in zip(names, candidates, strict=True):
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
        g.lines[hoisted:hoisted] = [
            f"    double_{slot} = value_{slot} if type_{slot} is float else "
            f"float(value_{slot}) if type_{slot} is int else None"
            for slot in sorted(g.numbers)]
    g.define()
    names_of: CandidatesCheck = g.namespace["names"]
    return names_of
