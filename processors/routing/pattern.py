"""A compiled event pattern: `compile_pattern(p).matches(event)`."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .compiler import Clause, PatternSource, compile_clauses
from .flatten import Flat, Trail, build_trie, flatten
from .kinds import Kind

_EXISTS = Kind.EXISTS


def clause_matches(clause: Clause, flat: Flat) -> bool:
    """True when every field of the clause holds, with array-consistent choices of values."""
    choices: list[list[Trail]] = []
    for path, conds in clause:
        entries = flat.get(path)
        trails: list[Trail] | None = None  # trails of values satisfying the field; ANY = satisfied without a value
        for c in conds:
            if c.kind is _EXISTS:
                if c.arg:
                    if entries:
                        trails = _union(trails, [t for _, t in entries])
                elif not entries:
                    trails = _ANY
            elif entries:
                pred = c.pred
                hit = [t for v, t in entries if pred(v)]
                if hit:
                    trails = _union(trails, hit)
            if trails is _ANY:
                break
        if not trails:
            return False
        if trails is not _ANY and any(trails):
            choices.append(trails)
    if len(choices) < 2:
        return True
    return _consistent(choices, 0, {})


class _Any(list[Trail]):
    """Marker: the field holds whatever element the other fields pick (e.g. exists:false)."""


_ANY = _Any([()])


def _union(a: list[Trail] | None, b: Iterable[Trail]) -> list[Trail]:
    if a is None:
        return list(b)
    if a is _ANY:
        return a
    a.extend(b)
    return a


def _consistent(choices: list[list[Trail]], i: int, picked: dict[int, int]) -> bool:
    if i == len(choices):
        return True
    for trail in choices[i]:
        ok = True
        added: list[int] = []
        for arr, idx in trail:
            have = picked.get(arr)
            if have is None:
                picked[arr] = idx
                added.append(arr)
            elif have != idx:
                ok = False
                break
        if ok and _consistent(choices, i + 1, picked):
            return True
        for arr in added:
            del picked[arr]
    return False


class Pattern:
    """One compiled pattern. Build once, call `matches` per event."""

    __slots__ = ("clauses", "trie", "source")

    def __init__(self, clauses: list[Clause], source: PatternSource | None = None) -> None:
        self.clauses = clauses
        self.trie = build_trie({p for c in clauses for p, _ in c})
        self.source = source

    def matches(self, event: dict[str, Any]) -> bool:
        flat = flatten(event, self.trie)
        for clause in self.clauses:
            if clause_matches(clause, flat):
                return True
        return False


def compile_pattern(pattern: PatternSource) -> Pattern:
    """Validate and compile; raises InvalidEventPatternException with AWS's message."""
    return Pattern(compile_clauses(pattern), pattern)
