"""A whole rule set compiled once; `matching(event)` costs the same for 1 or 100,000 rules.

Every clause (a rule's `$or` alternative) gets one anchor field whose conditions can be looked up
in an index: exact values by dict, prefixes/suffixes by dicts keyed per length, numeric ranges
by bisection over the sorted range boundaries, exists:true by path presence. An event's fields
are read once for all rules; the anchors it hits give candidate clauses, and a candidate is
verified in full only when the anchor alone does not decide it. Clauses with no indexable field
(only anything-but, wildcard, cidr, exists:false) are checked for every event.
"""
from __future__ import annotations

from bisect import bisect_right

from .compiler import compile_clauses
from .conditions import leaf_key
from .flatten import build_trie, flatten
from .pattern import clause_matches

_INDEXABLE = {"exact", "prefix", "prefix_ic", "suffix", "suffix_ic", "eic", "numeric"}


class _RangeIndex:
    """Numeric ranges: each elementary interval between sorted boundaries knows its clauses.

    Slot 2i+1 is the boundary point points[i]; slot 2i is the open interval just below it.
    """

    def __init__(self, ranges: list[tuple[tuple, int]]):
        points = sorted({b for (lo, _, hi, _), _ in ranges for b in (lo, hi) if b is not None})
        pos = {p: i for i, p in enumerate(points)}
        slots: list[list] = [[] for _ in range(2 * len(points) + 1)]
        for (lo, lo_incl, hi, hi_incl), cid in ranges:
            first = 0 if lo is None else 2 * pos[lo] + (1 if lo_incl else 2)
            last = len(slots) - 1 if hi is None else 2 * pos[hi] + (1 if hi_incl else 0)
            for s in range(first, last + 1):
                slots[s].append(cid)
        self.points = points
        self.slots = [tuple(s) for s in slots]

    def lookup(self, x: float) -> tuple:
        i = bisect_right(self.points, x)
        if i and self.points[i - 1] == x:
            return self.slots[2 * (i - 1) + 1]
        return self.slots[2 * i]


class _FieldIndex:
    __slots__ = ("exact", "prefix", "prefix_ic", "suffix", "suffix_ic", "eic", "ranges",
                 "range_index", "exists")

    def __init__(self) -> None:
        self.exact: dict = {}
        self.prefix: dict[int, dict] = {}
        self.prefix_ic: dict[int, dict] = {}
        self.suffix: dict[int, dict] = {}
        self.suffix_ic: dict[int, dict] = {}
        self.eic: dict = {}
        self.ranges: list = []
        self.range_index: _RangeIndex | None = None
        self.exists: list = []

    def add(self, cond, cid: int) -> None:
        k = cond.kind
        if k == "exact":
            self.exact.setdefault(cond.arg, []).append(cid)
        elif k == "eic":
            self.eic.setdefault(cond.arg, []).append(cid)
        elif k in ("prefix", "prefix_ic", "suffix", "suffix_ic"):
            getattr(self, k).setdefault(len(cond.arg), {}).setdefault(cond.arg, []).append(cid)
        elif k == "numeric":
            self.ranges.append((cond.arg, cid))
        elif k == "exists":
            self.exists.append(cid)

    def finish(self) -> None:
        if self.ranges:
            self.range_index = _RangeIndex(self.ranges)

    def hits(self, entries: list, found: set) -> None:
        if self.exists:
            found.update(self.exists)
        for v, _ in entries:
            t = type(v)
            key = v if t is str else leaf_key(v)
            got = self.exact.get(key)
            if got:
                found.update(got)
            if t is str:
                if self.prefix:
                    for n, table in self.prefix.items():
                        got = table.get(v[:n])
                        if got:
                            found.update(got)
                if self.suffix:
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
            elif (t is int or t is float) and self.range_index is not None:
                got = self.range_index.lookup(key)
                if got:
                    found.update(got)


class RuleSet:
    """Compile `{rule name: pattern}` once; `matching(event)` -> names of the rules it matches."""

    def __init__(self, rules: dict[str, dict | str]):
        self.names: list[str] = []
        self.clauses: list = []  # clause id -> clause
        self.clause_rule: list[int] = []  # clause id -> rule index
        self.decided: list[bool] = []  # anchor hit alone proves the clause
        self.always: list[int] = []  # clause ids with no anchor
        self.index: dict[str, _FieldIndex] = {}
        self.single: list = []  # clause id -> (path, predicates) for one-field value clauses
        paths = set()
        for r, (name, pattern) in enumerate(rules.items()):
            self.names.append(name)
            for clause in compile_clauses(pattern):
                cid = len(self.clauses)
                self.clauses.append(clause)
                self.clause_rule.append(r)
                paths.update(p for p, _ in clause)
                clause.sort(key=_field_cost)
                self.single.append(
                    (clause[0][0], tuple(c.pred for c in clause[0][1]))
                    if len(clause) == 1 and all(c.kind != "exists" for c in clause[0][1]) else None)
                anchor = _pick_anchor(clause)
                if anchor is None:
                    self.always.append(cid)
                    self.decided.append(False)
                    continue
                path, conds = anchor
                fi = self.index.setdefault(path, _FieldIndex())
                for c in conds:
                    fi.add(c, cid)
                self.decided.append(len(clause) == 1)
        for fi in self.index.values():
            fi.finish()
        self.trie = build_trie(paths)

    def __len__(self) -> int:
        return len(self.names)

    def matching(self, event: dict) -> list[str]:
        flat = flatten(event, self.trie)
        found: set[int] = set()
        index = self.index
        for path, entries in flat.items():
            fi = index.get(path)
            if fi is not None:
                fi.hits(entries, found)
        if self.always:
            found.update(self.always)
        if not found:
            return []
        rules = set()
        clause_rule, decided, clauses = self.clause_rule, self.decided, self.clauses
        single = self.single
        for cid in found:
            r = clause_rule[cid]
            if r in rules:
                continue
            if decided[cid]:
                rules.add(r)
                continue
            one = single[cid]
            if one is not None:
                # one field, value conditions only: no array consistency to track
                entries = flat.get(one[0])
                if entries:
                    preds = one[1]
                    if any(p(v) for v, _ in entries for p in preds):
                        rules.add(r)
            elif clause_matches(clauses[cid], flat):
                rules.add(r)
        names = self.names
        return [names[r] for r in sorted(rules)]


def _field_cost(field) -> int:
    """Verify cheap, selective fields first so a failing clause stops early."""
    kinds = {c.kind for c in field[1]}
    return 0 if kinds <= {"exact", "eic"} else 1 if "exists" not in kinds else 2


def _pick_anchor(clause):
    """The most selective indexable field: exact beats prefix/suffix beats ranges beats exists."""
    best, best_score = None, None
    for path, conds in clause:
        kinds = {c.kind for c in conds}
        if any(c.kind == "exists" and not c.arg for c in conds):
            continue
        if not kinds <= _INDEXABLE | {"exists"}:
            continue
        score = 3 if kinds == {"exact"} else 2 if "exists" not in kinds and "numeric" not in kinds \
            else 1 if "exists" not in kinds else 0
        if best_score is None or score > best_score:
            best, best_score = (path, conds), score
    return best
