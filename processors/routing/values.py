"""Values as the matchers hold them, shared by the reference matcher and the engines.

A slot holds one field's value of one event: a scalar, a list of scalars (an array, flattened), a
`SortedNumbers`, or `MISSING` (the field is absent).
"""
from __future__ import annotations

from itertools import chain
from typing import Any

from .conditions import as_double

_chain = chain.from_iterable
_NUMBERS = {int, float}


class _Missing:
    """The value of an absent field: one object, compared by identity."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class SortedNumbers(list[float]):
    """The numbers of one array-valued field of one event, sorted once for bisection."""


def scalars(values: list[Any]) -> list[Any]:
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
        out_: list[Any] = []
        for x in values:
            t = type(x)
            if t is list:
                out_.extend(scalars(x))
            elif t is not dict:
                out_.append(x)
        return out_
