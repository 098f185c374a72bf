"""A whole rule set compiled once; `matching(event)` costs the same for 1 or 100,000 rules.

Each clause (one `$or` alternative of a rule) is a list of fields. Every field whose conditions
an index can answer gets an id and goes into the index of its path (see index.py); reading an
event's fields once and looking each value up yields the set of field ids that hold. A clause is
a candidate when its anchor (its most selective indexed field) is hit; it matches when its other
indexed fields are hit too and its remaining fields (anything-but, cidr, exists:false, wildcard
checks) hold. Clauses without any indexed field are checked for every event.

Events whose used fields sit under arrays of objects, or whose objects have dotted keys, take the
generic path (flatten.py + pattern.clause_matches), which also enforces array consistency.
"""
from __future__ import annotations

from .codegen import MISSING, build_fast_path
from .compiler import compile_clauses
from .flatten import build_trie, flatten
from .index import FieldIndex
from .pattern import clause_matches

_INDEXABLE = {"exact", "prefix", "prefix_ic", "suffix", "suffix_ic", "eic", "numeric"}


def _index_plan(conds) -> tuple[list, bool] | None:
    """(entries for the index, exact) for a field, or None if it cannot be indexed.

    `exact` means an index hit proves the field; otherwise (wildcards entered by their literal
    head or tail) a hit is only necessary and the predicates are checked after.
    """
    if len(conds) == 1 and conds[0].kind in ("anything_but", "ab_prefix", "ab_suffix", "ab_eic"):
        return [(conds[0].kind, conds[0].arg)], True
    entries, exact = [], True
    for c in conds:
        if c.kind in _INDEXABLE:
            entries.append((c.kind, c.arg))
        elif c.kind == "exists" and c.arg:
            entries.append(("exists", True))
        elif c.kind == "wildcard" and (c.arg[0] or c.arg[-1]):
            head, tail = c.arg[0], c.arg[-1]
            entries.append(("prefix", head) if len(head) >= len(tail) else ("suffix", tail))
            exact = False
        else:
            return None
    return entries, exact


def _selectivity(entries, exact: bool) -> int:
    kinds = {k for k, _ in entries}
    if kinds & {"anything_but", "ab_prefix", "ab_suffix", "ab_eic"}:
        return 0
    if kinds <= {"exact", "eic"}:
        return 5
    if kinds <= {"exact", "eic", "prefix", "prefix_ic", "suffix", "suffix_ic"}:
        return 4 if exact else 3
    if "exists" not in kinds:
        return 2
    return 1


class _Check:
    """One non-anchor field of a clause, as checked on the fast path."""

    __slots__ = ("fid", "slot", "preds", "exists_true", "exists_false")

    def __init__(self, fid, slot, conds):
        self.fid = fid  # None unless the field is indexed
        self.slot = slot
        self.preds = tuple(c.pred for c in conds if c.kind != "exists")
        self.exists_true = any(c.kind == "exists" and c.arg for c in conds)
        self.exists_false = any(c.kind == "exists" and not c.arg for c in conds)

    def holds(self, slots) -> bool:
        x = slots[self.slot]
        if x is MISSING:
            return self.exists_false
        if self.exists_true:
            return True
        preds = self.preds
        if type(x) is list:
            return any(p(v) for v in x for p in preds)
        for p in preds:
            if p(x):
                return True
        return False


class RuleSet:
    """Compile `{rule name: pattern}` once; `matching(event)` -> names of the rules it matches."""

    def __init__(self, rules: dict[str, dict | str]):
        self.names: list[str] = []
        self.clauses: list = []  # clause id -> clause
        self.clause_rule: list[int] = []  # clause id -> rule index
        self.index: dict[str, FieldIndex] = {}
        self.anchor_of: dict[int, int] = {}  # anchor field id -> clause id
        self.always: list[int] = []  # clause ids without an indexed field
        self.direct: dict[int, int] = {}  # anchor field id -> rule index, when it decides
        plans = []
        paths = set()
        for r, (name, pattern) in enumerate(rules.items()):
            self.names.append(name)
            for clause in compile_clauses(pattern):
                cid = len(self.clauses)
                self.clauses.append(clause)
                self.clause_rule.append(r)
                paths.update(p for p, _ in clause)
                plans.append([(path, conds, _index_plan(conds)) for path, conds in clause])
        self.trie = build_trie(paths)
        self.slot_paths = sorted(paths)
        slot_of = {p: i for i, p in enumerate(self.slot_paths)}

        n_fields = 0
        # per clause: (anchor check or None, [checks of the other fields])
        self.plan: list = []
        for cid, fields in enumerate(plans):
            indexed, checks = [], []
            for path, conds, ip in fields:
                fid = None
                if ip is not None:
                    fid = n_fields
                    n_fields += 1
                    fi = self.index.setdefault(path, FieldIndex())
                    for kind, arg in ip[0]:
                        fi.add(kind, arg, fid)
                    indexed.append((_selectivity(*ip), fid, ip[1]))
                check = _Check(fid, slot_of[path], conds)
                # an exact index hit proves the field: nothing left to evaluate
                if ip is not None and ip[1]:
                    check.preds, check.exists_true = (), True
                checks.append(check)
            if not indexed:
                self.always.append(cid)
                anchor = None
            else:
                _, anchor_fid, _ = max(indexed, key=lambda x: x[0])
                self.anchor_of[anchor_fid] = cid
                anchor = next(c for c in checks if c.fid == anchor_fid)
            rest = [c for c in checks if c is not anchor]
            # cheap membership tests first, predicate evaluations last
            rest.sort(key=lambda c: (c.fid is None, bool(c.preds)))
            self.plan.append((anchor, tuple(rest)))
            if anchor is not None and not rest and not anchor.preds:
                # the anchor hit alone proves the clause: map it straight to its rule
                self.direct[anchor.fid] = self.clause_rule[cid]
        for fi in self.index.values():
            fi.finish()
        self.fast, self.source = build_fast_path(self.trie, slot_of, self.index)

    def __len__(self) -> int:
        return len(self.names)

    def matching(self, event: dict) -> list[str]:
        found: set[int] = set()
        slots = self.fast(event, found)
        if slots is None:
            return self._matching_generic(event)
        if not found and not self.always:
            return []
        rules = set()
        direct, anchor_of = self.direct, self.anchor_of
        cids = []
        for f in found:
            r = direct.get(f)
            if r is not None:
                rules.add(r)
            else:
                cid = anchor_of.get(f)
                if cid is not None:
                    cids.append(cid)
        if self.always:
            cids.extend(self.always)
        clause_rule, plan = self.clause_rule, self.plan
        for cid in cids:
            r = clause_rule[cid]
            if r in rules:
                continue
            anchor, rest = plan[cid]
            if anchor is not None and anchor.preds and not anchor.holds(slots):
                continue
            for check in rest:
                fid = check.fid
                if fid is not None and fid not in found:
                    break
                if (check.preds or check.exists_false) and not check.holds(slots):
                    break
            else:
                rules.add(r)
        if not rules:
            return []
        names = self.names
        if len(rules) == 1:
            return [names[r] for r in rules]
        return [names[r] for r in sorted(rules)]

    def _matching_generic(self, event: dict) -> list[str]:
        flat = flatten(event, self.trie)
        found: set[int] = set()
        index = self.index
        for path, entries in flat.items():
            fi = index.get(path)
            if fi is not None:
                fi.hits_values([v for v, _ in entries], found)
        cids = {self.anchor_of[f] for f in found if f in self.anchor_of}
        cids.update(self.always)
        rules = set()
        for cid in cids:
            r = self.clause_rule[cid]
            if r not in rules and clause_matches(self.clauses[cid], flat):
                rules.add(r)
        return [self.names[r] for r in sorted(rules)]
