"""How a rule set is indexed: which fields an index can answer, and which field of each clause
anchors it (its entry in the index; the clause's other fields are checked after a hit).

Only anchors go into the index: indexing every field would make busy fields (a wide numeric range
shared by thousands of rules) return thousands of ids per event.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, assert_never

from .conditions import Condition
from .kinds import NEGATIVE, Kind

IndexEntry = tuple[Kind, Any]  # what FieldIndex.add takes
IndexPlan = tuple[list[IndexEntry], bool]  # (entries, exact): see index_plan

_IC_OR_EXACT = frozenset({Kind.EXACT, Kind.EQUALS_IC})
_STRINGS = frozenset({Kind.EXACT, Kind.EQUALS_IC, Kind.PREFIX, Kind.PREFIX_IC, Kind.SUFFIX, Kind.SUFFIX_IC})


def index_plan(conds: Sequence[Condition]) -> IndexPlan | None:
    """(entries for the index, exact) for a field, or None if it cannot be indexed.

    `exact` means an index hit proves the field; otherwise (wildcards entered by their literal
    head or tail) a hit is only necessary and the predicates are checked after.
    """
    if len(conds) == 1 and conds[0].kind in NEGATIVE:
        return [(conds[0].kind, conds[0].arg)], True
    entries: list[IndexEntry] = []
    exact = True
    for c in conds:
        match c.kind:
            case (Kind.EXACT | Kind.PREFIX | Kind.PREFIX_IC | Kind.SUFFIX | Kind.SUFFIX_IC | Kind.EQUALS_IC
                  | Kind.NUMERIC):
                entries.append((c.kind, c.arg))
            case Kind.EXISTS:
                if not c.arg:  # exists:false holds where nothing is: no value to look up
                    return None
                entries.append((Kind.EXISTS, True))
            case Kind.WILDCARD:
                head, tail = c.arg[0], c.arg[-1]
                if not (head or tail):  # `*x*`: no literal end to enter
                    return None
                entries.append((Kind.PREFIX, head) if len(head) >= len(tail) else (Kind.SUFFIX, tail))
                exact = False
            case (Kind.CIDR | Kind.ANYTHING_BUT | Kind.ANYTHING_BUT_PREFIX | Kind.ANYTHING_BUT_SUFFIX
                  | Kind.ANYTHING_BUT_IC | Kind.ANYTHING_BUT_WILDCARD):
                return None  # anything-buts only alone (above), by exclusion
            case _:
                assert_never(c.kind)
    return entries, exact


def selectivity(entries: list[IndexEntry], exact: bool) -> int:
    """How few events a field's index entries let through, as a rank (higher: fewer)."""
    kinds = {k for k, _ in entries}
    if kinds & NEGATIVE:
        return 0
    if kinds <= _IC_OR_EXACT:
        return 5
    if kinds <= _STRINGS:
        return 4 if exact else 3
    if Kind.EXISTS not in kinds:
        return 2
    return 1


def choose_anchor(plans: Sequence[IndexPlan | None]) -> int | None:
    """The position of a clause's anchor among its fields' plans: the first most selective field
    an index can answer; None when none can (the clause is checked for every event)."""
    best: tuple[int, int] | None = None
    for k, plan in enumerate(plans):
        if plan is not None:
            score = selectivity(*plan)
            if best is None or score > best[0]:
                best = (score, k)
    return None if best is None else best[1]
