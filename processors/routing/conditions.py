"""One condition on one field's leaf value, as a small record plus a compiled predicate.

Event values are JSON leaves: str, int/float, bool, None. Numbers compare as IEEE doubles (as
event-ruler does), so 300, 300.0 and 3e2 are the same value and the string "300" is not a number.
"""
from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias, assert_never

from .kinds import Kind
from .wildcard import make_matcher

Predicate: TypeAlias = Callable[[Any], bool]  # a condition's test of one JSON leaf value
# the key of a leaf in exact-value tables (see leaf_key): a str, a number as a float, ("#lit", true/false/null)
LeafKey: TypeAlias = str | float | tuple[str, Any]
# a numeric condition's arg: (lo, lo_incl, hi, hi_incl), None for an open end
NumericRange: TypeAlias = tuple[float | None, bool, float | None, bool]


def as_double(v: int | float) -> float:
    """A JSON number as the IEEE double EventBridge compares: an integer too large for one is
    +-infinity, as a JSON parser reading it into a double gives (Python's float() raises)."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def number_key(v: float) -> float:
    """Dict key under which a JSON number is stored: a float, so 300 and 300.0 meet."""
    try:
        return float(v)
    except OverflowError:
        return v


def leaf_key(v: Any) -> LeafKey:
    """Key of a leaf in exact-value tables: str as is, numbers as float, literals tagged.

    Tagging keeps True apart from 1 and False from 0 (equal in Python, different in JSON).
    """
    t = type(v)
    if t is str:
        return v  # type: ignore[no-any-return]  # a str: `t is str` does not narrow v for mypy
    if t is int or t is float:
        return number_key(v)
    return ("#lit", v)


@dataclass(slots=True)
class Condition:
    kind: Kind
    arg: Any
    pred: Predicate = field(repr=False, compare=False, default=None)  # type: ignore[assignment]


def _ip(v: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(v)
    except ValueError:
        return None


def build_predicate(kind: Kind, arg: Any) -> Predicate:
    match kind:
        case Kind.EXACT:
            key = arg
            return lambda v: leaf_key(v) == key
        case Kind.PREFIX:
            return lambda v: type(v) is str and v.startswith(arg)
        case Kind.PREFIX_IC:
            return lambda v: type(v) is str and v.lower().startswith(arg)
        case Kind.SUFFIX:
            return lambda v: type(v) is str and v.endswith(arg)
        case Kind.SUFFIX_IC:
            return lambda v: type(v) is str and v.lower().endswith(arg)
        case Kind.EQUALS_IC:
            return lambda v: type(v) is str and v.lower() == arg
        case Kind.WILDCARD:
            return make_matcher(arg)
        case Kind.NUMERIC:
            lo, lo_incl, hi, hi_incl = arg

            def numeric(v: Any) -> bool:
                t = type(v)
                if t is not int and t is not float:
                    return False
                x = as_double(v) if t is int else v
                if lo is not None and (x < lo or (x == lo and not lo_incl)):
                    return False
                if hi is not None and (x > hi or (x == hi and not hi_incl)):
                    return False
                return True
            return numeric
        case Kind.CIDR:
            net = arg

            def cidr(v: Any) -> bool:
                if type(v) is not str:
                    return False
                ip = _ip(v)
                return ip is not None and ip.version == net.version and ip in net
            return cidr
        case Kind.ANYTHING_BUT:
            keys = arg  # frozenset of leaf keys
            return lambda v: leaf_key(v) not in keys
        case Kind.ANYTHING_BUT_PREFIX:
            tup = tuple(arg)
            return lambda v: not (type(v) is str and v.startswith(tup))
        case Kind.ANYTHING_BUT_SUFFIX:
            tup = tuple(arg)
            return lambda v: not (type(v) is str and v.endswith(tup))
        case Kind.ANYTHING_BUT_IC:
            keys = frozenset(arg)
            return lambda v: not (type(v) is str and v.lower() in keys)
        case Kind.ANYTHING_BUT_WILDCARD:
            ms = [make_matcher(a) for a in arg]
            if len(ms) == 1:
                m = ms[0]
                return lambda v: not m(v)
            return lambda v: not any(m(v) for m in ms)
        case Kind.EXISTS:
            # exists is decided on presence, never per value; a present leaf satisfies exists:true
            return lambda v: arg
        case _:
            assert_never(kind)


def make(kind: Kind, arg: Any) -> Condition:
    return Condition(kind, arg, build_predicate(kind, arg))
