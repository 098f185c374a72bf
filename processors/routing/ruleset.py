"""A whole rule set compiled once; `matching(event)` costs the same for 1 or 100,000 rules.

Each clause (one `$or` alternative of a rule) is a list of fields. Its anchor, the most
selective field an index can answer (exact values, prefixes/suffixes, equals-ignore-case,
numeric ranges, exists:true, anything-but by exclusion, wildcards by their literal head or
tail), goes into the index of its path (index.py; planner.py picks it). A generated function
(engines/indexed.py) reads each field some rule uses once and looks its value up; the anchors
hit give the candidate clauses,
and a candidate matches when its remaining fields hold on the values already read. Clauses
without any indexable field (a `*x*` wildcard, anything-but wildcard, cidr, exists:false) are
checked for every event, so only they cost per rule.

Events of one kind keep hitting the same set of candidate clauses: a set seen often enough gets
one generated function with every clause test inlined (`_resolve`). String fields with several
index tables remember their ids per repeated value (engines/indexed._string_hits).

Events whose used fields sit under arrays of objects, or whose objects have dotted keys, take the
generic path (flatten.py + pattern.clause_matches), which also enforces array consistency.

That is the index engine. Rule sets of up to bitmask.MAX_CLAUSES clauses also get the bit-mask
engine (engines/bitmask.py), which has no candidates to check; `RuleSet(rules)` times both on the
traffic and keeps the faster (engines/trial.py). `engine` says which answers: "index",
"bitmask", or "choosing" while the trial runs; the choice is logged once (logger
`processors.routing.ruleset`), with the trial's timings, and a metric exporter reads `engine`.

`matching_bytes(lines)` routes JSON lines decoded only as far as the rules read (msgspec structs,
engines/partial.py), by either engine, where a second timing trial finds that faster than
orjson.loads and `matching`; `decoder` says which way answers.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from processors.decode import loads_beyond_doubles

from .checks import Check, SameElementCheck
from .compiler import Clause, compile_clauses
from .conditions import Condition
from .engines.bitmask import MAX_CLAUSES, BitMatcher
from .engines.indexed import (
    CandidatesCheck,
    ClauseCheck,
    Slots,
    Tail,
    build_candidates_check,
    build_clause_check,
    build_fast_path,
)
from .engines.partial import Answer, PartialDecoder, build_structs, matching_bytes_full, struct_decoder, struct_fallback
from .engines.trial import engine_trial
from .flatten import build_trie, flatten
from .index import FieldIndex
from .pattern import clause_matches
from .planner import IndexPlan, choose_anchor, index_plan

log = logging.getLogger(__name__)

class RuleSet:
    """Compile `{rule name: pattern}` once; `matching(event)` -> names of the rules it matches."""

    # a set of candidate clauses seen this often gets its own generated check (see _resolve)
    MAX_COMPILED = 1024  # a few KB of code each
    MAX_REST_CHECKS = 1024  # the same, for the checked part of sets that are not compiled whole
    MAX_SEEN = 100_000

    matching: Callable[[Any], list[str]]  # event -> the names of the rules it matches
    index_matching: Callable[[Any], list[str]]

    def __init__(self, rules: Mapping[str, dict[str, Any] | str], compile_after: int = 16,
                 engine: str = "auto") -> None:
        """`engine`: "index", "bitmask" (engines/bitmask.py), or "auto": for up to MAX_CLAUSES
        clauses both are timed on the first events and the faster kept (engines/trial.py), past
        that the index engine. The index engine is built either way: the bit-mask engine hands
        it the events it does not take. "reference" generates no code: every clause is tested
        by the reference matcher (pattern.py), for debugging a suspected engine fault."""
        if engine not in ("auto", "index", "bitmask", "reference"):
            raise ValueError(f"engine: expected 'auto', 'index', 'bitmask' or 'reference', got {engine!r}")
        self.compile_after = compile_after
        self._seen: dict[frozenset[int], int] = {}
        self._compiled: dict[frozenset[int], Callable[[Slots], list[str]]] = {}  # candidates -> rule names
        self._rest_seen: dict[frozenset[int], int] = {}  # see _check_rest
        self._rest_checks: dict[frozenset[int], Callable[[Slots], list[int]]] = {}  # candidates -> rule indexes
        self.names: list[str] = []
        self.clauses: list[Clause] = []  # clause id -> clause
        self.clause_rule: list[int] = []  # clause id -> rule index
        self.index: dict[str, FieldIndex] = {}
        self.anchor_of: dict[int, int] = {}  # anchor field id -> clause id
        self.always: list[int] = []  # clause ids without an indexed field
        self.direct: dict[int, int] = {}  # anchor field id -> rule index, when it decides
        plans: list[list[tuple[str, list[Condition], IndexPlan | None]]] = []
        paths: set[str] = set()
        for r, (name, pattern) in enumerate(rules.items()):
            self.names.append(name)
            for clause in compile_clauses(pattern):
                cid = len(self.clauses)
                self.clauses.append(clause)
                self.clause_rule.append(r)
                paths.update(p for p, _ in clause)
                plans.append([(path, conds, index_plan(conds)) for path, conds in clause])
        self.trie = build_trie(paths)
        self.slot_paths = sorted(paths)
        slot_of = {p: i for i, p in enumerate(self.slot_paths)}

        n_fields = 0
        # per clause: (anchor check or None, [checks of the other fields]); planner.py says why only
        # anchors go into the index
        self.plan: list[tuple[Check | None, tuple[Check, ...]]] = []
        self.checks: list[ClauseCheck | None] = []  # clause id -> generated `ok(slots)` for what its anchor leaves open
        for cid, fields in enumerate(plans):
            best = choose_anchor([ip for _, _, ip in fields])
            checks = [Check(None, slot_of[path], conds) for path, conds, _ in fields]
            anchor = None
            if best is None:
                self.always.append(cid)
            else:
                path, conds, (entries, exact) = fields[best]  # type: ignore[misc]  # an anchor has a plan
                fid = n_fields
                n_fields += 1
                fi = self.index.setdefault(path, FieldIndex())
                for kind, arg in entries:
                    fi.add(kind, arg, fid)
                anchor = checks[best]
                anchor.fid = fid
                self.anchor_of[fid] = cid
                if exact:
                    # an exact index hit proves the field: nothing left to evaluate
                    anchor.conds, anchor.preds, anchor.ranges, anchor.exists_true = (), (), None, True
            rest = [c for c in checks if c is not anchor]
            readings: dict[str, list[list[Condition]]] = {}
            for path, conds, _ in fields:
                readings.setdefault(path, []).append(conds)
            for path, groups in readings.items():
                if len(groups) > 1:  # one value must hold them all: checked together
                    rest = [c for c in rest if c.slot != slot_of[path]]
                    rest.append(SameElementCheck(slot_of[path], groups))
            # cheap tests first: presence, then single values, numeric arrays last
            rest.sort(key=lambda c: (bool(c.preds), c.ranges is not None))
            self.plan.append((anchor, tuple(rest)))
            self.checks.append(None)  # see _clause_check
            if anchor is not None and not rest and not anchor.preds:
                # the anchor hit alone proves the clause: map it straight to its rule
                self.direct[anchor.fid] = self.clause_rule[cid]  # type: ignore[index]  # an anchor's fid is set above
        for fi in self.index.values():
            fi.finish()
        needed = {c.slot for anchor, rest in self.plan for c in rest}
        needed.update(a.slot for a, _ in self.plan if a is not None and a.preds)
        self.bits: BitMatcher | None = None
        self._slot_of, self._needed = slot_of, needed
        self.partial: PartialDecoder | None = None  # made by the first matching_bytes
        self.trial_medians_ns: tuple[float, float] | None = None  # (index, bitmask), once timed
        if engine == "reference":
            self.matching = self._matching_reference
            self.index_matching = self._matching_reference
            self.engine, self.source = "reference", ""
            log.info("rule set of %d rules (%d clauses): engine reference (asked for: no generated code)",
                     len(self.names), len(self.clauses))
            return
        self._tail: Tail = {"generic": self._matching_generic, "compiled_get": self._compiled.get,
                      "resolve": self._resolve, "always": bool(self.always)}
        # `matching(event) -> names`: one generated function (engines.indexed.build_fast_path)
        self.matching, self.source, self._index_writer = build_fast_path(
            self.trie, slot_of, self.index, needed, self._tail)
        self.index_matching = self.matching
        self.engine = "index"  # "index", "bitmask", "reference", or "choosing" while the trial runs
        if engine == "bitmask" or (engine == "auto" and len(self.clauses) <= MAX_CLAUSES):
            self.bits = BitMatcher(self.names, self.clauses, self.clause_rule, self.trie, self.index_matching)
            if engine == "bitmask":
                self.matching, self.engine = self.bits.matching, "bitmask"
            else:
                contenders = [("index", self.index_matching, self._index_writer),
                              ("bitmask", self.bits.matching, self.bits.writer)]
                self.matching = engine_trial(contenders, self._decided, self.TRIAL_EVERY, self.TRIAL_WARMUP,
                                             self.TRIAL_TIMED)
                self.engine = "choosing"
        if self.engine != "choosing":
            log.info("rule set of %d rules (%d clauses): engine %s (%s)", len(self.names), len(self.clauses),
                     self.engine, "asked for" if engine == self.engine else
                     f"more than {MAX_CLAUSES} clauses: no bit-mask engine")

    TRIAL_EVERY = 8  # one event in this many is a trial sample: a sample spans the traffic
    TRIAL_WARMUP = 200  # samples both engines run before they are timed (generated checks, memos)
    TRIAL_TIMED = 1000  # samples both engines are timed on

    def _decided(self, engine: str, medians_ns: dict[str, float]) -> None:
        """The trial's verdict (engines/trial.py): `engine` now answers through `matching`."""
        self.engine = engine
        self.trial_medians_ns = (medians_ns["index"], medians_ns["bitmask"])
        log.info("rule set of %d rules (%d clauses): engine %s, chosen by a timing trial "
                 "(median ns per event: index %.0f, bitmask %.0f)", len(self.names), len(self.clauses),
                 engine, medians_ns["index"], medians_ns["bitmask"])

    def matching_bytes(self, lines: Sequence[bytes]) -> list[Answer]:
        """Per JSON line, the names of the rules its event matches, as `matching(orjson.loads(line))`
        gives them; None where orjson refuses the line or it is not an object (the decode stage's
        failures: the caller dead-letters those). Lines are decoded only as far as the rules read
        where a timing trial on the traffic finds that faster (engines/partial.py; `decoder` says
        which way answers), and an event that needs more takes today's path. The reference engine
        reads every line whole."""
        if self.engine == "reference":
            return matching_bytes_full(lines, self.matching)
        partial = self.partial
        if partial is None:
            partial = self.partial = self._partial_decoder()
        return partial.matching_bytes(lines)

    def beyond_doubles(self, line: bytes) -> Answer:
        """The answer to a line orjson refuses: the rules matching the event of a line refused only
        for a number beyond the double range (valid JSON: engines/partial.py), else None."""
        ev = loads_beyond_doubles(line)
        return None if ev is None else self.matching(ev)

    @property
    def decoded(self) -> int:
        """Lines `matching_bytes` has answered by reading only what the rules read."""
        return 0 if self.partial is None else self.partial.decoded

    @property
    def decoder(self) -> str:
        """How `matching_bytes` reads lines: "partial-index", "partial-bitmask", "orjson", or
        "choosing" while its trial runs (or before its first call)."""
        if self.engine == "reference":
            return "orjson"
        return "choosing" if self.partial is None else self.partial.decoder

    # matching_bytes' trial (engines/partial.py): a partial way must take at most PARTIAL_MARGIN
    # of today's median time per line
    PARTIAL_EVERY, PARTIAL_WARMUP, PARTIAL_TIMED, PARTIAL_MARGIN = 4, 200, 1000, 0.9

    def _partial_decoder(self) -> PartialDecoder:
        root, levels = build_structs(self.trie)
        tail: Tail = {"generic": struct_fallback, "compiled_get": self._compiled.get, "resolve": self._resolve,
                      "always": bool(self.always)}
        match_index, _, _ = build_fast_path(self.trie, self._slot_of, self.index, self._needed, tail, structs=levels)
        match_bits = None
        if self.bits is not None:
            match_bits = BitMatcher(self.names, self.clauses, self.clause_rule, self.trie, match_index,
                                    structs=levels).matching
        # `matching` itself: the engine trial swaps its code, not the function
        return PartialDecoder(match_index, match_bits, struct_decoder(root), self.matching,
                              lambda: self.engine != "choosing", self._decoder_decided,
                              self.PARTIAL_EVERY, self.PARTIAL_WARMUP, self.PARTIAL_TIMED, self.PARTIAL_MARGIN)

    def _decoder_decided(self, decoder: str, medians_ns: dict[str, float]) -> None:
        log.info("rule set of %d rules (%d clauses): matching_bytes reads lines by %s, chosen by a timing "
                 "trial (median ns per line: %s)", len(self.names), len(self.clauses), decoder,
                 ", ".join(f"{k} {v:.0f}" for k, v in medians_ns.items()) or "none: the ways disagreed")

    @property
    def memos(self) -> dict[str, bool]:
        """Fields whose matches are remembered per value, and whether that memo is still in use
        (of the bit-mask engine when it runs, else of the index engine)."""
        if self.engine == "bitmask" and self.bits is not None:
            return self.bits.memos
        if self.engine == "reference":
            return {}
        memos: dict[str, bool] = self._index_writer.namespace["memos"]
        return memos

    def __len__(self) -> int:
        return len(self.names)

    def _resolve(self, found: frozenset[int], slots: Slots) -> list[str]:
        """The rules among the candidates `found` whose clauses hold. A set of candidates seen
        `compile_after` times gets one generated function (`_compile`).

        Until then (and for good once MAX_COMPILED sets have theirs) the set is split. Anchors
        that decide their rule alone (`direct`) give their rules at once. The candidates left
        to check are grouped the same way: their sets are few even when whole sets are not. A
        rule set with many fields that all hit (`combined` in tests/bench/patterns.py: every
        street, type and number adds its own hits) makes a new whole set for most events,
        while the checked part keeps recurring."""
        names: CandidatesCheck | list[str]  # the compiled check, else (below) the rule names
        seen = self._seen.get(found, 0) + 1
        if seen >= self.compile_after and len(self._compiled) < self.MAX_COMPILED:
            names = self._compiled[found] = self._compile(found)
            return names(slots)
        if len(self._seen) >= self.MAX_SEEN:
            self._seen.clear()  # a stream of one-off candidate sets (a large exact-match set)
        self._seen[found] = seen
        rules: set[int] = set(map(self.direct.get, found))  # type: ignore[arg-type]  # None discarded next
        rules.discard(None)  # type: ignore[arg-type,unused-ignore]
        rest = found.difference(self.direct)
        if rest or self.always:
            rules.update(self._check_rest(rest, slots))
        if not rules:
            return []
        names = self.names
        if len(rules) == 1:
            return [names[r] for r in rules]
        return [names[r] for r in sorted(rules)]

    def _check_rest(self, rest: frozenset[int], slots: Slots) -> Iterable[int]:
        """Indexes of the rules whose candidate clauses in `rest` (none decided by its anchor
        alone), or whose always-checked clauses, hold; by a generated function once `rest` recurs."""
        check: Callable[[Slots], list[int]] | None = self._rest_checks.get(rest)
        if check is not None:
            return check(slots)
        seen = self._rest_seen.get(rest, 0) + 1
        if seen >= self.compile_after and len(self._rest_checks) < self.MAX_REST_CHECKS:
            check = self._rest_checks[rest] = self._compile(rest, as_indexes=True)
            return check(slots)
        if len(self._rest_seen) >= self.MAX_SEEN:
            self._rest_seen.clear()
        self._rest_seen[rest] = seen
        cids = [self.anchor_of[f] for f in rest if f in self.anchor_of]
        cids.extend(self.always)
        clause_rule = self.clause_rule
        rules: set[int] = set()
        for cid in cids:
            r = clause_rule[cid]
            if r not in rules and self._clause_check(cid)(slots):
                rules.add(r)
        return rules

    def _clause_fields(self, cid: int) -> tuple[Check, ...]:
        """The fields of clause `cid` its anchor's index hit leaves to check."""
        anchor, rest = self.plan[cid]
        return ((anchor,) if anchor is not None and anchor.preds else ()) + rest

    def _clause_check(self, cid: int) -> ClauseCheck:
        ok = self.checks[cid]
        if ok is None:  # generated on first use: most clauses of a big set never are candidates
            ok = self.checks[cid] = build_clause_check(self._clause_fields(cid))
        return ok

    def _compile(self, found: frozenset[int], as_indexes: bool = False) -> CandidatesCheck:
        """The generated check of the candidates `found`: it returns the names of the rules that
        hold, or their indexes (`as_indexes`)."""
        by_rule: dict[int, list[tuple[Check, ...]] | None] = {}
        for f in found:
            if f in self.direct:
                by_rule[self.direct[f]] = None
        for cid in [self.anchor_of[f] for f in found if f not in self.direct and f in self.anchor_of] + self.always:
            r = self.clause_rule[cid]
            if r in by_rule and by_rule[r] is None:
                continue
            by_rule.setdefault(r, []).append(self._clause_fields(cid))  # type: ignore[union-attr]  # None: skipped
        return build_candidates_check([(r if as_indexes else self.names[r], by_rule[r]) for r in sorted(by_rule)])

    def _matching_reference(self, event: dict[str, Any]) -> list[str]:
        flat = flatten(event, self.trie)
        rules = {self.clause_rule[cid] for cid, clause in enumerate(self.clauses) if clause_matches(clause, flat)}
        return [self.names[r] for r in sorted(rules)]

    def _matching_generic(self, event: dict[str, Any]) -> list[str]:
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
