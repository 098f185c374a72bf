"""Small rule sets matched with one bit per clause: no candidates, no checks after the lookups.

The index engine (ruleset.py, engines/indexed.py) looks each used field up and then checks the candidate
clauses the hits name; that is what scales to 100,000 rules. When a small rule set has rules on
most of an event's fields (`combined` in tests/bench/patterns.py: every event is a candidate for
dozens of clauses, in ever new combinations), resolving the candidates costs most of the time.

Here each used field's value gives a mask with the bit of every clause whose conditions on that
field hold, and of every clause that does not read the field. AND-ing the masks of all used
fields leaves the clauses that match, whatever the event hits: a lookup and an AND per field.
The mask of a string is remembered per value; a number finds its mask by comparisons with the
field's boundaries (written out as code); an array of numbers is sorted once and bisected at
the boundaries. Masks stay below a guard bit that every mask carries, so none is 0 (falsy).

Events the generated code does not take (an array on the way to a used field, whose objects
need array consistency; a key spanning levels; an unhashable value where a string is expected)
go to the index engine, which decides every case. Values of other types (ints, literals, mixed
arrays) get their mask from the fields' own checks (checks.Check), the semantics of record.
"""
from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from itertools import chain
from typing import Any, TypeAlias, assert_never

from ..checks import Check
from ..compiler import Clause
from ..conditions import Condition
from ..flatten import PathTrie
from ..kinds import Kind
from ..values import MISSING, scalars
from .indexed import StructLevels
from .trial import Matching
from .writer import MEMO_SIZE, CodeWriter, dotted_check, dotted_names, memo_switch, scalar_test

MAX_CLAUSES = 512  # masks stay a few machine words; bigger sets use the index engine
NAMES_SIZE = 65536  # remembered rule names per final mask
SHAPE_FIELDS = 6  # rules reading this many top-level fields get a function per event layout
MAX_SHAPES = 64  # layouts with their own function; the rest take the general one
_STRING_BLIND = {Kind.NUMERIC}  # kinds that never hold for a string
_BIG = 2 ** 53  # ints beyond this are not all doubles: their own checks decide

# a field's readings: (clause bit, [Check, ...]) per clause that reads it
Entries: TypeAlias = list[tuple[int, list[Check]]]
# (table, default, affix): the field's mask as `table.get(value or its affix, default)` (see _Field._table)
Table: TypeAlias = tuple[dict[Any, int], int, str | None]


class _Field:
    """One used path: the clauses that read it and what its values let through."""

    def __init__(self, path: str, entries: Entries, full: int, guard: int) -> None:
        self.path = path
        self.entries = entries  # [(bit, [Check, ...])]: a clause may read a path more than once
        reads = 0
        for bit, _ in entries:
            reads |= bit
        self.other = (full & ~reads) | guard  # clauses that do not read the field pass it
        self.missing = self._scalar_mask(MISSING)
        conds = [c for _, checks in entries for check in checks for c in check.conds]
        self.points = sorted(_points(conds))
        # numbers only: bools, strings and nulls hold none of these conditions
        self.numeric = bool(self.points) and all(
            c.kind is Kind.NUMERIC or (c.kind is Kind.EXACT and type(c.arg) in (float, int)) for c in conds)
        self.table = self._table(conds)
        self._slot_masks: tuple[list[int], list[int]] | None = None
        # names of the generated globals for this field, once made (BitMatcher._value_fn)
        self.fn_name: str | None = None
        self.memo_name = self.flag_name = ""

    def _table(self, conds: list[Condition]) -> Table | None:
        """(dict, default, affix) when the field's mask is one dict lookup: `dict.get(value,
        default)` for exact strings (any other value, of any type, holds none of them), or
        `dict.get(value[:n] or value[-n:], default)` for prefixes (suffixes) of one length n,
        where a missing field reads as "" (which holds none of them, as missing does)."""
        kinds = {c.kind for c in conds}
        if kinds <= {Kind.EXACT} and all(type(c.arg) is str for c in conds):
            default = self._scalar_mask(object())  # a value none of them equals
            table: dict[Any, int] = {}
            for bit, checks in self.entries:
                if len(checks) == 1:  # holds for exactly its own values
                    for c in checks[0].conds:
                        table[c.arg] = table.get(c.arg, default) | bit
            for bit, checks in self.entries:
                if len(checks) > 1:  # read twice: ask each value
                    for value in {c.arg for c in conds}:
                        if all(check.holds([value]) for check in checks):
                            table[value] = table.get(value, default) | bit
            table[MISSING] = self.missing
            return table, default, None
        if len(kinds) == 1 and kinds <= {Kind.PREFIX, Kind.SUFFIX} and len({len(c.arg) for c in conds}) == 1 \
                and conds[0].arg and not any(c.exists_true or c.exists_false for _, cs in self.entries for c in cs):
            default = self.missing
            if self._scalar_mask("") != default:
                return None
            table = {c.arg: self._scalar_mask(c.arg) for c in conds}
            n = len(conds[0].arg)
            return table, default, f"[:{n}]" if kinds == {Kind.PREFIX} else f"[-{n}:]"
        return None

    def _scalar_mask(self, value: Any) -> int:
        m = self.other
        slots = [value]
        for bit, checks in self.entries:
            if all(c.holds(slots) for c in checks):
                m |= bit
        return m

    def mask(self, value: Any) -> int:
        """The exact mask of any value (the slow path): arrays flattened, objects absent."""
        t = type(value)
        if t is list:
            value = scalars(value)
            if not value:
                return self.missing
            # a clause reading the path twice needs one element to hold both (array
            # consistency: pattern.clause_matches), so each element is taken alone
            m = self.other
            for v in value:
                m |= self._scalar_mask(v)
            return m
        if t is dict:
            return self.missing
        return self._scalar_mask(value)

    def slot_masks(self) -> tuple[list[int], list[int]]:
        """(masks of the open intervals below, between and above the points, masks of the
        points): the field's conditions answer alike for every double inside one of them.
        Computed once. A clause whose only reading of the field is numeric ranges sets its bit
        over the slots its ranges span (a toggle at each end, accumulated); the others are
        asked on a value of each slot."""
        if self._slot_masks is not None:
            return self._slot_masks
        pts = self.points
        count = 2 * len(pts) + 1  # slot 2i: the interval below pts[i]; 2i+1: pts[i]; 2K: above
        pos = {p: i for i, p in enumerate(pts)}
        toggles = [0] * (count + 1)
        asked = []
        for bit, checks in self.entries:
            conds = checks[0].conds
            if len(checks) == 1 and conds and not checks[0].exists_true and all(c.kind is Kind.NUMERIC for c in conds):
                spans = []
                for c in conds:
                    lo, lo_incl, hi, hi_incl = c.arg
                    first = 0 if lo is None else 2 * pos[lo] + (1 if lo_incl else 2)
                    last = count - 1 if hi is None else 2 * pos[hi] + (1 if hi_incl else 0)
                    if first <= last:
                        spans.append((first, last))
                spans.sort()
                merged: list[list[int]] = []
                for first, last in spans:
                    if merged and first <= merged[-1][1] + 1:
                        merged[-1][1] = max(merged[-1][1], last)
                    else:
                        merged.append([first, last])
                for first, last in merged:
                    toggles[first] ^= bit
                    toggles[last + 1] ^= bit
            else:
                asked.append((bit, checks))
        # a value inside each interval (the double next to its lower end), and each point
        inside = [math.nextafter(pts[0], -math.inf) if pts else 0.0] + [math.nextafter(p, math.inf) for p in pts]
        values = [x for i, p in enumerate(pts) for x in (inside[i], p)] + [inside[-1]]
        masks, acc = [], 0
        for j in range(count):
            acc ^= toggles[j]
            m = self.other | acc
            slots = [values[j]]
            for bit, checks in asked:
                if all(c.holds(slots) for c in checks):
                    m |= bit
            masks.append(m)
        self._slot_masks = (masks[0::2], masks[1::2])
        return self._slot_masks


def _points(conds: Iterable[Condition]) -> set[float]:
    """The doubles where some condition's answer on numbers can change."""
    out: set[float] = set()
    for c in conds:
        match c.kind:
            case Kind.NUMERIC:
                lo, _, hi, _ = c.arg
                out.update(b for b in (lo, hi) if b is not None)
            case Kind.EXACT:
                if type(c.arg) is float:
                    out.add(c.arg)
            case Kind.ANYTHING_BUT:
                out.update(k for k in c.arg if type(k) is float)
            case (Kind.PREFIX | Kind.PREFIX_IC | Kind.SUFFIX | Kind.SUFFIX_IC | Kind.EQUALS_IC | Kind.WILDCARD
                  | Kind.CIDR | Kind.EXISTS | Kind.ANYTHING_BUT_PREFIX | Kind.ANYTHING_BUT_SUFFIX
                  | Kind.ANYTHING_BUT_IC | Kind.ANYTHING_BUT_WILDCARD):
                pass  # the same answer for every number
            case _:
                assert_never(c.kind)
    return {p for p in out if not math.isnan(p)}


class BitMatcher:
    """`matching(event) -> rule names` for the clauses of a RuleSet, by masks (see above)."""

    def __init__(self, names: list[str], clauses: list[Clause], clause_rule: list[int], trie: PathTrie,
                 fallback: Matching, structs: StructLevels | None = None) -> None:
        """`fallback` decides the events the generated code does not take. With `structs`,
        `matching` reads decoded structs instead of dicts, as the index engine can
        (indexed.build_fast_path; engines/partial.py)."""
        n = len(clauses)
        self.structs = structs
        self.guard = 1 << n
        full = self.guard - 1
        by_path: dict[str, Entries] = {}
        for cid, clause in enumerate(clauses):
            per_path: dict[str, list[Check]] = {}
            for path, conds in clause:
                per_path.setdefault(path, []).append(Check(None, 0, conds))
            for path, checks in per_path.items():
                by_path.setdefault(path, []).append((1 << cid, checks))
        self.fields = {p: _Field(p, e, full, self.guard) for p, e in by_path.items()}
        self.names, self.clause_rule = names, clause_rule
        self.full = full | self.guard
        self._names: dict[int, list[str]] = {self.guard: []}
        self._chunks: list[dict[int, list[str]]] = [{} for _ in range(n // 16 + 1)]
        self._multi_clause_rules = len(set(clause_rule)) < n
        self._shapes: dict[tuple[str, ...], Matching] = {}
        self._top_dots = frozenset(dotted_names(trie))
        self.writer = CodeWriter("bitmask" if structs is None else "bitmask-partial")
        self.matching, self.source = self._generate(trie, fallback)

    def names_of(self, m: int) -> list[str]:
        """The rule names of the clause bits in `m`, in rule order; remembered per mask. Clause
        ids follow rule order, so the names of each 16-bit chunk (remembered too) join in order."""
        got = self._names.get(m)
        if got is None:
            got, bits, base = [], m & (self.guard - 1), 0
            while bits:
                chunk = bits & 0xFFFF
                if chunk:
                    table = self._chunks[base]
                    part = table.get(chunk)
                    if part is None:
                        part = table[chunk] = self._chunk_names(base, chunk)
                    got += part
                bits >>= 16
                base += 1
            if self._multi_clause_rules:  # a rule matched by two of its clauses is named once
                got = list(dict.fromkeys(got))
            if len(self._names) >= NAMES_SIZE:
                self._names.clear()
                self._names[self.guard] = []
            self._names[m] = got
        return got

    def _chunk_names(self, base: int, chunk: int) -> list[str]:
        out: list[str] = []
        for i in range(16):
            if chunk >> i & 1:
                name = self.names[self.clause_rule[base * 16 + i]]
                if not out or out[-1] != name:
                    out.append(name)
        return out

    def _generate(self, trie: PathTrie, fallback: Matching) -> tuple[Matching, str]:
        """`match(ev) -> rule names`, generated into the writer's namespace."""
        g = self.writer
        g.namespace.update(index_engine=fallback, names_by_mask=self._names, names_of=self.names_of,
                           chain_from=chain.from_iterable, bisect_left=bisect_left, bisect_right=bisect_right)
        g.namespace["events_seen"] = [0]  # to judge whether a memo pays
        self.memos: dict[str, bool] = {}
        g.namespace["memos"] = self.memos
        g.namespace["memo_full"] = memo_switch(g, self.memos)
        self._trie = trie
        general, source = self._function("match_any_layout", None)
        if len(trie.children) < SHAPE_FIELDS or self.structs is not None:  # a struct has every key: one layout
            return general, source
        # Events of many kinds, each with a few of the top-level fields the rules read (one bus
        # for devices, clicks and orders): a function per layout of top-level keys reads only the
        # fields present, the absent ones' masks folded into its start
        g.namespace.update(layouts=self._shapes, layout_function=self._shape)
        dispatch = ("def match(ev):\n"
                    "    try:\n"
                    "        return layouts[tuple(ev)](ev)\n"
                    "    except (KeyError, TypeError):\n"  # a new layout, or not an object
                    "        return layout_function(ev)(ev)\n")
        g.define(dispatch)
        return g.namespace["match"], source

    def _function(self, name: str, present: frozenset[str] | None) -> tuple[Matching, str]:
        """(function, source): `name(ev) -> rule names` for events whose top-level keys are
        `present` (None: any event)."""
        g, trie = self.writer, self._trie
        g.lines, g.helpers = [], []
        start = self.full
        if present is not None:
            for seg, child in trie.children.items():
                if seg not in present:
                    start &= self._missing_under(child) & (
                        self.fields[child.leaf].missing if child.leaf is not None else self.full)
        g.emit(0, f"def {name}(ev):")
        g.emit(1, "events_seen[0] += 1")
        g.emit(1, f"m = {start}")
        g.emit(1, "try:")
        if present is None and self.structs is None:
            dotted_check(g, trie, "ev", 2, "index_engine")
        self._node(g, trie, "ev", 2, present)
        g.emit(2, "pass")  # a layout without any field the rules read
        # an unhashable value (an array, an object) looked up in a string field's memo, or an
        # event that is not an object
        g.emit(1, "except (TypeError, AttributeError):")
        g.emit(2, "return index_engine(ev)")
        g.emit(1, "r = names_by_mask.get(m)")
        g.emit(1, "if r is None:")
        g.emit(2, "r = names_of(m)")
        g.emit(1, "return r[:]")  # a list of the caller's own, as the index engine returns
        source = g.source()
        g.define(source)
        return g.namespace[name], source

    def _shape(self, ev: Any) -> Matching:
        """The function for the layout of `ev`'s top-level keys, made at its first sight (at
        most MAX_SHAPES of them; events of other layouts take the general function)."""
        general: Matching = self.writer.namespace["match_any_layout"]
        if type(ev) is not dict:
            return general
        keys = tuple(ev)
        if len(self._shapes) >= MAX_SHAPES:
            return general
        present = frozenset(keys)
        fn: Matching
        if not self._top_dots.isdisjoint(present):
            fn = self.writer.namespace["index_engine"]  # a key spanning levels: its generic path decides
        else:
            fn, _ = self._function(f"match_layout_{len(self._shapes)}", present)
        self._shapes[keys] = fn
        return fn

    def _missing_under(self, node: PathTrie) -> int:
        """The AND of the missing masks of every used path below `node` (not node's own)."""
        m = self.full
        for child in node.children.values():
            if child.leaf is not None:
                m &= self.fields[child.leaf].missing
            m &= self._missing_under(child)
        return m

    def _node(self, g: CodeWriter, node: PathTrie, d: str, depth: int, present: frozenset[str] | None = None) -> None:
        """Code for the fields under `node` of the object `d`; `present`: the keys `d` is known
        to have (the others were folded in as absent), None when unknown."""
        attrs = self.structs[id(node)][1] if self.structs is not None else None
        for seg, child in node.children.items():
            if present is not None and seg not in present:
                continue
            if attrs is not None:
                read = f"{d}.{attrs[seg]}"
            else:
                read = f"{d}.get({seg!r}, MISSING)" if present is None else f"{d}[{seg!r}]"
            if not child.children:
                # a missing field read as "" for an affix test (see _leaf)
                if attrs is not None:
                    read_or_empty = f"({read} if {read} is not MISSING else '')"
                else:
                    read_or_empty = f"{d}.get({seg!r}, '')" if present is None else read
                self._leaf(g, self.fields[child.leaf], read, read_or_empty, depth)  # type: ignore[index]  # a trie leaf has a path
                continue
            v, t = g.var("value"), g.var("type")
            below = self._missing_under(child)
            g.emit(depth, f"{v} = {read}")
            g.emit(depth, f"{t} = type({v})")
            if self.structs is None:
                g.emit(depth, f"if {t} is dict:")
            else:
                g.emit(depth, f"if {t} is {g.const('struct', self.structs[id(child)][0])}:")
            if child.leaf is not None:  # an object where a value is read: that path is absent
                g.emit(depth + 1, f"m &= {self.fields[child.leaf].missing}")
            if self.structs is None:
                dotted_check(g, child, v, depth + 1, "index_engine")
            self._node(g, child, v, depth + 1)
            g.emit(depth, f"elif {t} is list:")
            g.emit(depth + 1, "return index_engine(ev)")
            g.emit(depth, "else:")  # absent, or a scalar: nothing below it is present
            if child.leaf is not None:
                g.emit(depth + 1, f"m &= {below} & {self._value_fn(g, self.fields[child.leaf])}({v})")
            else:
                g.emit(depth + 1, f"m &= {below}")

    def _leaf(self, g: CodeWriter, f: _Field, read: str, empty: str, depth: int) -> None:
        """Code AND-ing the mask of the field's value (`read`: the expression reading it; `empty`:
        the same, reading a missing field as "") into `m`."""
        if f.table is not None:
            table, default, affix = f.table
            if affix is None:
                g.emit(depth, f"m &= {g.const('table', table)}.get({read}, {default})")
            else:  # a value that is not a string fails the slice: the index engine decides
                if len(table) == 1:  # one affix: a startswith/endswith makes no string
                    (key, mask), = table.items()
                    method = "startswith" if affix.startswith("[:") else "endswith"
                    g.emit(depth, f"m &= {mask} if {empty}.{method}({key!r}) else {default}")
                else:
                    g.emit(depth, f"m &= {g.const('table', table)}.get({empty}{affix}, {default})")
            return
        fn = self._value_fn(g, f)
        x = g.var("value")
        g.emit(depth, f"{x} = {read}")
        if f.numeric:
            t = g.var("type")
            g.emit(depth, f"{t} = type({x})")
            # an int within doubles' exact range compares with the boundaries as its double
            g.emit(depth, f"if {t} is float or ({t} is int and -{_BIG} <= {x} <= {_BIG}):")
            g.emit(depth + 1, f"m &= {_tree(g, f, x)}")
            g.emit(depth, f"elif {t} is list:")
            g.emit(depth + 1, f"m &= {self._array_fn(g, f)}({x})")
            g.emit(depth, "else:")
            g.emit(depth + 1, f"m &= {fn}({x})")
        else:
            # values that repeat (names, types, statuses) are one memo lookup; a field whose
            # values do not (ids) has its memo switched off (writer.memo_switch) and tests inline
            g.namespace["memos"].setdefault(f.path, True)
            g.emit(depth, f"if {f.flag_name}:")
            g.emit(depth + 1, f"m &= {f.memo_name}.get({x}) or {fn}({x})")
            g.emit(depth, f"elif type({x}) is str:")
            mm = g.var("string_mask")
            self._string_tests(g, f, x, depth + 1, mm)
            g.emit(depth + 1, f"m &= {mm}")
            g.emit(depth, "else:")
            g.emit(depth + 1, f"m &= {fn}({x})")

    def _string_tests(self, g: CodeWriter, f: _Field, x: str, depth: int, out: str) -> None:
        """Code that sets `out` to the mask of the string `x` on field `f`, by inline tests."""
        always = f.other
        tests = []
        for bit, checks in f.entries:
            parts = []
            for check in checks:
                if check.exists_true:
                    continue
                conds = [c for c in check.conds if c.kind not in _STRING_BLIND
                         and not (c.kind is Kind.EXACT and type(c.arg) is not str)]
                # the value is `x`, a str
                parts.append(" or ".join(f"({scalar_test(g, c, x, 'str')})" for c in conds) or "False")
            if not parts:
                always |= bit
            elif "False" not in parts:
                tests.append((bit, " and ".join(f"({p})" for p in parts)))
        g.emit(depth, f"{out} = {always}")
        for bit, test in tests:
            g.emit(depth, f"if {test}:")
            g.emit(depth + 1, f"{out} |= {bit}")

    def _value_fn(self, g: CodeWriter, f: _Field) -> str:
        """Name of the generated `mask(x)` of field `f` (made once): strings by inline tests
        (remembered while the field's memo is on), floats by comparisons, anything else by the
        field's checks."""
        name = f.fn_name
        if name is not None:
            return name
        name = f.fn_name = g.var("mask_of")
        memo = f.memo_name = g.const("memo", {MISSING: f.missing})
        flag = f.flag_name = g.const("memo_on", True)
        slow = g.const("checked_mask", f.mask)
        main, g.lines = g.lines, []
        g.emit(0, "")
        g.emit(0, f"def {name}(x):")
        g.emit(1, "t = type(x)")
        g.emit(1, "if t is str:")
        self._string_tests(g, f, "x", 2, "m")
        g.emit(2, f"if {flag}:")
        g.emit(3, f"if len({memo}) >= {MEMO_SIZE}:")
        g.emit(4, f"memo_full({f.path!r}, {flag!r}, {memo}, events_seen)")
        g.emit(4, f"{memo}[MISSING] = {f.missing}")
        g.emit(3, f"{memo}[x] = m")
        g.emit(2, "return m")
        g.emit(1, "if t is float:")
        g.emit(2, f"return {_tree(g, f, 'x')}")
        g.emit(1, f"if t is int and -{_BIG} <= x <= {_BIG}:")
        g.emit(2, "y = float(x)")  # exactly the double EventBridge compares
        g.emit(2, f"return {_tree(g, f, 'y')}")
        g.emit(1, "if x is MISSING:")
        g.emit(2, f"return {f.missing}")
        g.emit(1, f"return {slow}(x)")
        g.helpers += g.lines
        g.lines = main
        return name

    def _array_fn(self, g: CodeWriter, f: _Field) -> str:
        """Name of the generated mask of an array of numbers: flattened and sorted once; each run
        of slots (intervals and points between the field's boundaries) whose mask adds clauses
        is tested by one bisection at its low end. Anything unusual (a string, null or object
        among the numbers, an empty array, uneven nesting) raises on the way and takes the
        field's checks; so does a bool found where a number is needed (bools sort as 0 and 1)."""
        name = g.var("array_mask")
        slow = g.const("checked_mask", f.mask)
        intervals, points = f.slot_masks()
        # slot 2i is the interval below points[i], slot 2i+1 the point; slot 2K the top interval
        slots = [m for i, p in enumerate(points) for m in (intervals[i], p)] + [intervals[-1]]
        pts = [_num(g, p) for p in f.points]
        present = self.full  # what any array of numbers holds: its values fill some slot
        for m in slots:
            present &= m
        main, g.lines = g.lines, []
        g.emit(0, "")
        g.emit(0, f"def {name}(x):")
        g.emit(1, "try:")
        g.emit(2, "if type(x[0]) is list:")
        g.emit(3, "s = x")
        g.emit(3, "while type(s[0][0]) is list:")
        # one level down: a single inner array is that array (GeoJSON's [[[x, y], ...]])
        g.emit(4, "s = s[0] if len(s) == 1 else list(chain_from(s))")
        g.emit(3, "s = sorted(chain_from(s))")
        g.emit(2, "else:")
        g.emit(3, "s = sorted(x)")
        g.emit(2, f"if s[0] < -{_BIG}.0 or s[-1] > {_BIG}.0:")  # ints beyond doubles
        g.emit(3, f"return {slow}(x)")
        if present & ~(f.mask(False) & f.mask(True)):
            # `present` is what a number holds, and bools (sorted as 0 and 1) are not numbers: an
            # array of bools alone (bools at both ends: the checks decide) must not get it
            g.emit(2, "if type(s[0]) is bool and type(s[-1]) is bool:")
            g.emit(3, f"return {slow}(x)")
        g.emit(2, f"m = {present}")
        j = 0
        while j < len(slots):
            k = j
            while k + 1 < len(slots) and slots[k + 1] == slots[j]:
                k += 1
            if slots[j] != present:
                # the first value at or above the run's low end, and whether it is below its top
                # (the lowest value for a run from the bottom, the highest for one to the top)
                top = k == len(slots) - 1
                if j == 0:
                    first = "0"
                elif top:
                    first = "-1"
                elif j % 2:
                    first = f"bisect_left(s, {pts[j // 2]})"
                else:
                    first = f"bisect_right(s, {pts[j // 2 - 1]})"
                if top:
                    inside = "True" if j == 0 else f"s[-1] >= {pts[j // 2]}" if j % 2 else f"s[-1] > {pts[j // 2 - 1]}"
                else:
                    within = "" if j == 0 else "len(s) > i and "  # from the bottom: s[0] was read
                    inside = f"{within}s[i] {'<=' if k % 2 else '<'} {pts[k // 2]}"
                g.emit(2, f"i = {first}")
                g.emit(2, f"if {inside}:")
                g.emit(3, "if type(s[i]) is bool:")
                g.emit(4, f"return {slow}(x)")
                g.emit(3, f"m |= {slots[j]}")
            j = k + 1
        g.emit(2, "return m")
        g.emit(1, "except (TypeError, IndexError):")
        g.emit(2, f"return {slow}(x)")
        g.helpers += g.lines
        g.lines = main
        return name


def _num(g: CodeWriter, p: float) -> str:
    return repr(p) if math.isfinite(p) else g.const("point", p)


def _tree(g: CodeWriter, f: _Field, v: str) -> str:
    """The mask of the double `v` as nested comparisons with the field's points (a bisection
    written out); runs of equal masks collapse into one constant."""
    intervals, points = f.slot_masks()
    pts = f.points

    def tree(lo: int, hi: int) -> str:  # v above pts[lo - 1] and below pts[hi]
        if len(set(intervals[lo:hi + 1]) | set(points[lo:hi])) == 1:
            return str(intervals[lo])
        mid = (lo + hi) // 2
        p = _num(g, pts[mid])
        return f"({tree(lo, mid)} if {v} < {p} else {points[mid]} if {v} == {p} else {tree(mid + 1, hi)})"
    return tree(0, len(pts))

