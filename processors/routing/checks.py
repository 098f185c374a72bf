"""One field of a clause checked on a value already read: the obviously-right semantics that the
generated checks (engines/indexed.py) and the bit-mask engine (engines/bitmask.py) inline or fall back to.

A slot holds a field's value: a scalar, a list of scalars (an array, flattened), a SortedNumbers,
or MISSING.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from typing import Any

from .conditions import Condition, NumericRange, as_double
from .kinds import Kind
from .values import MISSING, SortedNumbers

_NUMBERS = {int, float}


def _any_in_ranges(xs: Sequence[float], ranges: Sequence[NumericRange]) -> bool:
    """Whether some number of the sorted list `xs` lies in one of the ranges."""
    n = len(xs)
    for lo, lo_incl, hi, hi_incl in ranges:
        if lo is None:
            i = 0
        else:
            i = bisect_left(xs, lo) if lo_incl else bisect_right(xs, lo)
        if i < n:
            x = xs[i]
            if hi is None or x < hi or (hi_incl and x == hi):
                return True
    return False


class Check:
    """One field of a clause (its conditions, OR-ed), checked on the value in its slot."""

    __slots__ = ("fid", "slot", "conds", "preds", "exists_true", "exists_false", "ranges")
    same_element = False  # see SameElementCheck

    def __init__(self, fid: int | None, slot: int, conds: Sequence[Condition]) -> None:
        self.fid = fid  # the anchor's id in the index, else None
        self.slot = slot
        self.conds = tuple(c for c in conds if c.kind is not Kind.EXISTS)
        self.preds = tuple(c.pred for c in self.conds)
        self.exists_true = any(c.kind is Kind.EXISTS and c.arg for c in conds)
        self.exists_false = any(c.kind is Kind.EXISTS and not c.arg for c in conds)
        # numeric-only fields test arrays of numbers by bisection over the sorted values
        self.ranges: list[NumericRange] | None = (
            [c.arg for c in conds] if conds and all(c.kind is Kind.NUMERIC for c in conds) else None)

    def holds(self, slots: list[Any]) -> bool:
        x = slots[self.slot]
        if x is MISSING:
            return self.exists_false
        if self.exists_true:
            return True
        preds = self.preds
        t = type(x)
        if t is SortedNumbers:
            if self.ranges is not None:
                return _any_in_ranges(x, self.ranges)
            return any(p(v) for v in x for p in preds)
        if t is list:
            if self.ranges is not None and len(x) > 4:
                types = set(map(type, x))
                if types <= _NUMBERS:
                    # slot lists are this event's own copies and order is irrelevant to
                    # matching: keep the sorted numbers (ints past 2**53 as the doubles
                    # EventBridge compares) for the next check on this field
                    x = slots[self.slot] = SortedNumbers(sorted(map(as_double, x) if int in types else x))
                    return _any_in_ranges(x, self.ranges)
            return any(p(v) for v in x for p in preds)
        for p in preds:
            if p(x):
                return True
        return False


class SameElementCheck(Check):
    """A path a clause reads more than once (`{"v": [..], "$or": [{"v": [..]}, ..]}`): every
    reading must hold on one and the same value, one element of an array (array consistency,
    as pattern.clause_matches decides it). Generated code calls `holds`."""

    __slots__ = ("groups",)
    same_element = True

    def __init__(self, slot: int, groups: Iterable[Sequence[Condition]]) -> None:
        super().__init__(None, slot, [])
        self.groups = [Check(None, 0, conds) for conds in groups]

    def holds(self, slots: list[Any]) -> bool:
        x = slots[self.slot]
        if type(x) is list or type(x) is SortedNumbers:
            return any(all(c.holds([v]) for c in self.groups) for v in x)
        return all(c.holds([x]) for c in self.groups)
