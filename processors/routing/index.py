"""Per-field value indexes for a rule set: value -> ids of the fields (conditions) it satisfies.

Exact values by hash, prefixes/suffixes by one dict per distinct length (a slice then a hash
lookup), equals-ignore-case on the lowered value, numeric ranges by bisection over the sorted
range boundaries, exists:true by presence of the path. A wildcard with a literal head (or tail)
is entered as a prefix (or suffix) prefilter: a hit there is necessary, and the wildcard itself
is checked afterwards.
"""
from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from functools import partial
from typing import Any, TypeAlias, assert_never

from .conditions import LeafKey, NumericRange, as_double, leaf_key
from .kinds import Kind
from .values import SortedNumbers

_NUMBER_TYPES = {int, float}

Ids: TypeAlias = tuple[int, ...]  # field ids, as the lookups hand them out
# key -> the ids of the fields it hits: a list while the index is built, frozen into a tuple by finish()
IdTable: TypeAlias = dict[Any, list[int]]


class RangeIndex:
    """Each elementary interval between sorted boundaries knows the fields its numbers satisfy.

    Slot 2i+1 is the boundary point points[i]; slot 2i is the open interval just below it.
    """

    def __init__(self, ranges: list[tuple[NumericRange, int]]) -> None:
        points = sorted({b for (lo, _, hi, _), _ in ranges for b in (lo, hi) if b is not None})
        pos = {p: i for i, p in enumerate(points)}
        slots: list[list[int]] = [[] for _ in range(2 * len(points) + 1)]
        for (lo, lo_incl, hi, hi_incl), fid in ranges:
            first = 0 if lo is None else 2 * pos[lo] + (1 if lo_incl else 2)
            last = len(slots) - 1 if hi is None else 2 * pos[hi] + (1 if hi_incl else 0)
            for s in range(first, last + 1):
                slots[s].append(fid)
        self.points = points
        self.point_set = frozenset(points)
        self.pos = pos
        self.slots = [tuple(s) for s in slots]
        # each point, then the next double above it: bisect_right over these gives a float's
        # slot index directly (equal to points[i] -> 2i+1, strictly between -> 2i+2)
        self.float_keys = [k for p in points for k in (p, math.nextafter(p, math.inf))]
        self._bisect = partial(bisect_right, points)

    def lookup(self, x: float) -> Ids:
        x = as_double(x)  # an int past 2**53 compares as the double EventBridge reads
        i = bisect_right(self.points, x)
        if i and self.points[i - 1] == x:
            return self.slots[2 * (i - 1) + 1]
        return self.slots[2 * i]

    def lookup_sorted(self, xs: SortedNumbers, found: set[int]) -> None:
        """Fields hit by sorted numbers: per boundary, two bisections find which elementary
        intervals and points hold values, O(boundaries * log n)."""
        slots, n, start = self.slots, len(xs), 0
        for i, p in enumerate(self.points):
            lo = bisect_left(xs, p, start)
            if lo > start and slots[2 * i]:
                found.update(slots[2 * i])
            hi = bisect_right(xs, p, lo)
            if hi > lo and slots[2 * i + 1]:
                found.update(slots[2 * i + 1])
            start = hi
            if start == n:
                return
        if slots[-1]:
            found.update(slots[-1])

    def lookup_many(self, numbers: Sequence[float], found: set[int]) -> None:
        """All fields hit by any of `numbers` (ints/floats only), with the loops in C."""
        numbers = list(map(as_double, numbers))  # ints past 2**53 as doubles
        on = self.point_set.intersection(numbers)
        if on:
            slots = self.slots
            for x in on:
                found.update(slots[2 * self.pos[x] + 1])
            numbers = [x for x in numbers if x not in on]
        slots = self.slots
        for i in set(map(self._bisect, numbers)):
            got = slots[2 * i]
            if got:
                found.update(got)


class FieldIndex:
    """Positive tables map a value to the fields it satisfies. Negative tables (anything-but)
    map a value to the fields it fails; such a field holds for every other leaf value."""

    __slots__ = ("exact", "prefix", "prefix_ic", "suffix", "suffix_ic", "eic", "ranges",
                 "range_index", "exists", "neg_all", "neg_result", "neg_str_all",
                 "neg_prefix", "neg_suffix", "neg_eic", "_neg_value")

    def __init__(self) -> None:
        self.exact: IdTable = {}  # leaf key (conditions.leaf_key) -> ids
        self.prefix: dict[int, IdTable] = {}  # length -> {prefix: ids}
        self.prefix_ic: dict[int, IdTable] = {}
        self.suffix: dict[int, IdTable] = {}
        self.suffix_ic: dict[int, IdTable] = {}
        self.eic: IdTable = {}
        self.ranges: list[tuple[NumericRange, int]] = []
        self.range_index: RangeIndex | None = None
        self.exists: list[int] | Ids = []
        self.neg_all: Ids = ()  # anything-but <values>: fields failing only on their values
        self.neg_result: dict[LeafKey, Ids] = {}  # leaf key -> neg_all minus the fields that exclude it
        self._neg_value: dict[LeafKey, set[int]] = {}
        self.neg_str_all: Ids = ()  # anything-but prefix/suffix/equals-ignore-case fields
        self.neg_prefix: dict[int, IdTable] = {}
        self.neg_suffix: dict[int, IdTable] = {}
        self.neg_eic: IdTable = {}

    def add(self, kind: Kind, arg: Any, fid: int) -> None:
        """Enter field `fid`, which holds for values meeting (`kind`, `arg`)."""
        match kind:
            case Kind.EXACT:
                self.exact.setdefault(arg, []).append(fid)
            case Kind.EQUALS_IC:
                self.eic.setdefault(arg, []).append(fid)
            case Kind.PREFIX:
                self.prefix.setdefault(len(arg), {}).setdefault(arg, []).append(fid)
            case Kind.PREFIX_IC:
                self.prefix_ic.setdefault(len(arg), {}).setdefault(arg, []).append(fid)
            case Kind.SUFFIX:
                self.suffix.setdefault(len(arg), {}).setdefault(arg, []).append(fid)
            case Kind.SUFFIX_IC:
                self.suffix_ic.setdefault(len(arg), {}).setdefault(arg, []).append(fid)
            case Kind.NUMERIC:
                self.ranges.append((arg, fid))
            case Kind.EXISTS:
                self.exists.append(fid)  # type: ignore[union-attr]  # a list until finish()
            case Kind.ANYTHING_BUT:
                self.neg_all += (fid,)
                for key in arg:
                    self._neg_value.setdefault(key, set()).add(fid)
            case Kind.ANYTHING_BUT_PREFIX | Kind.ANYTHING_BUT_SUFFIX:
                self.neg_str_all += (fid,)
                table = self.neg_prefix if kind is Kind.ANYTHING_BUT_PREFIX else self.neg_suffix
                for x in arg:
                    table.setdefault(len(x), {}).setdefault(x, []).append(fid)
            case Kind.ANYTHING_BUT_IC:
                self.neg_str_all += (fid,)
                for x in arg:
                    self.neg_eic.setdefault(x, []).append(fid)
            case Kind.WILDCARD | Kind.CIDR | Kind.ANYTHING_BUT_WILDCARD:
                raise AssertionError(f"{kind!r} is not indexed (planner.index_plan)")
            case _:
                assert_never(kind)

    def finish(self) -> None:
        """Freeze the id lists into tuples and build the range structure."""
        for table in (self.exact, self.eic):
            for k in table:
                table[k] = tuple(dict.fromkeys(table[k]))  # type: ignore[assignment]  # frozen: see IdTable
        for by_len in (self.prefix, self.prefix_ic, self.suffix, self.suffix_ic):
            for table in by_len.values():
                for k in table:
                    table[k] = tuple(dict.fromkeys(table[k]))  # type: ignore[assignment]  # frozen: see IdTable
        self.exists = tuple(self.exists)
        self.neg_result = {k: tuple(f for f in self.neg_all if f not in ex)
                           for k, ex in self._neg_value.items()}
        if self.ranges:
            self.range_index = RangeIndex(self.ranges)

    def hits_values(self, values: Sequence[Any], found: set[int]) -> None:
        """Add to `found` the ids of fields satisfied by any of `values` (leaves of one path)."""
        if self.exists:
            found.update(self.exists)
        exact = self.exact
        strs = self.prefix or self.suffix or self.eic or self.prefix_ic or self.suffix_ic
        neg = self.neg_all or self.neg_str_all
        if not exact and not strs and not neg and self.range_index is not None and len(values) > 1:
            # a numeric array (coordinates, readings): bisection, no Python loop per value
            ri = self.range_index
            if type(values) is SortedNumbers:
                if len(ri.points) < len(values):
                    ri.lookup_sorted(values, found)
                else:
                    ri.lookup_many(values, found)
                return
            if _NUMBER_TYPES.issuperset(map(type, values)):
                ri.lookup_many(values, found)
                return
        got: Sequence[int] | None  # from a table (a list, a tuple once frozen) or the range index
        numbers = []
        for v in values:
            t = type(v)
            if exact:
                got = exact.get(v if t is str else leaf_key(v))
                if got:
                    found.update(got)
            if t is str:
                if strs:
                    self._string(v, found)
            elif t is float or t is int:
                numbers.append(v)
            if neg:
                self.negative(v, found)
        if numbers and self.range_index is not None:
            if len(numbers) == 1:
                got = self.range_index.lookup(numbers[0])
                if got:
                    found.update(got)
            else:
                self.range_index.lookup_many(numbers, found)

    def negative(self, v: Any, found: set[int]) -> None:
        """Add the anything-but fields that the leaf value `v` satisfies."""
        if self.neg_all:
            found.update(self.neg_result.get(v if type(v) is str else leaf_key(v), self.neg_all))
        if self.neg_str_all:
            if type(v) is not str:
                found.update(self.neg_str_all)
                return
            excluded = set()
            for n, table in self.neg_prefix.items():
                got = table.get(v[:n])
                if got:
                    excluded.update(got)
            for n, table in self.neg_suffix.items():
                got = table.get(v[-n:])
                if got:
                    excluded.update(got)
            if self.neg_eic:
                got = self.neg_eic.get(v.lower())
                if got:
                    excluded.update(got)
            if excluded:
                found.update(f for f in self.neg_str_all if f not in excluded)
            else:
                found.update(self.neg_str_all)

    def _string(self, v: str, found: set[int]) -> None:
        for n, table in self.prefix.items():
            got = table.get(v[:n])
            if got:
                found.update(got)
        for n, table in self.suffix.items():
            got = table.get(v[-n:] if n else "")
            if got:
                found.update(got)
        if self.eic or self.prefix_ic or self.suffix_ic:
            low = v.lower()
            got = self.eic.get(low)
            if got:
                found.update(got)
            for n, table in self.prefix_ic.items():
                got = table.get(low[:n])
                if got:
                    found.update(got)
            for n, table in self.suffix_ic.items():
                got = table.get(low[-n:] if n else "")
                if got:
                    found.update(got)
