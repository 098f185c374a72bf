"""The pattern operators, one `Kind` member each: what a compiled condition is.

A new operator is one member here; `mypy` then lists every `match` over `Kind` that must handle
it (each ends in `assert_never`): its predicate (conditions.build_predicate), whether and how
an index takes it (planner.index_plan, index.FieldIndex.add), its inlined test in generated code
(engines/writer.scalar_test) and the numbers where its answer changes (engines/bitmask).
Values are EventBridge's spelling of the operator.
"""
from __future__ import annotations

from enum import Enum


class Kind(Enum):
    EXACT = "exact"  # a JSON value: str, number (as a double), true/false/null
    PREFIX = "prefix"
    PREFIX_IC = "prefix/equals-ignore-case"
    SUFFIX = "suffix"
    SUFFIX_IC = "suffix/equals-ignore-case"
    EQUALS_IC = "equals-ignore-case"
    WILDCARD = "wildcard"
    NUMERIC = "numeric"
    CIDR = "cidr"
    EXISTS = "exists"
    ANYTHING_BUT = "anything-but"  # values
    ANYTHING_BUT_PREFIX = "anything-but/prefix"
    ANYTHING_BUT_SUFFIX = "anything-but/suffix"
    ANYTHING_BUT_IC = "anything-but/equals-ignore-case"
    ANYTHING_BUT_WILDCARD = "anything-but/wildcard"

    def __repr__(self) -> str:
        return f"Kind.{self.name}"


# anything-but kinds an index enters by exclusion (a value finds the fields it fails)
NEGATIVE = frozenset({Kind.ANYTHING_BUT, Kind.ANYTHING_BUT_PREFIX, Kind.ANYTHING_BUT_SUFFIX, Kind.ANYTHING_BUT_IC})
