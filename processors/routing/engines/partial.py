"""Decode only what the rules read, in C (msgspec), and route on that: `matching_bytes(lines)`.

From the paths a rule set reads (its trie) come nested msgspec Struct types, one per object
level, with one attribute per key read there. Decoding a line into the root type builds only
those values: every other key is skipped in C without making an object. An absent key reads
MISSING (the default), a JSON null None, and a leaf keeps any JSON type (objects and arrays
whole, as orjson gives them: arrays of objects too). The engines' generated `match` functions
(indexed.build_fast_path and bitmask.BitMatcher with `structs`) read the attributes where they
read dict keys; which of them, or today's path, answers is timed on the traffic (PartialDecoder).

Whatever the structs cannot say exactly is refused by the decoder and takes today's path
(orjson.loads, then the rule set's `matching`), per event:
- a key that spans levels of a used path ("detail.state" where a rule reads detail -> state:
  EventBridge joins keys with dots) is an attribute of a type no JSON value has (UnsetType), at
  every level, however the key is escaped (msgspec compares keys unescaped);
- an array on the way to a used field (array consistency needs per-element trails): the union
  a level's key decodes to has no array type;
- anything the index engine's `match` hands to `generic` (a type its lookups do not take, an
  integer too large for a double) raises `Fallback`;
- JSON that msgspec refuses (also nesting deeper than it goes), and lines that are not UTF-8
  (msgspec does not check the strings it skips), are left to orjson, which decides as the
  decode stage does.
Integers past 64 bits are ints here and floats from orjson: the engines compare both as the same
double.

Numbers beyond the double range (decided here; pinned in tests/unit/processors/routing/test_partial.py).
msgspec, when it skips a value no rule reads, checks its JSON syntax as orjson does (truncation,
bad escapes, lone surrogates, control characters, NaN/Infinity, leading zeros, trailing commas or
garbage: both refuse; duplicate keys: both keep the last), except for two things: it does not
check the UTF-8 of skipped strings (checked here first), and it takes a number of any magnitude
(1e400, a 400-digit integer) where it skips, and an integer of any size where it reads, all of
which orjson refuses ("number is infinity when parsed as double"). RFC 8259 sets no range on
numbers: such a line is valid JSON, and making it a dead letter because of a value no rule reads
would be our parser's limit, not the event's fault. So every way answers it as the reference
does on the event a parser without a range reads (floats beyond the range as +-infinity, integers
as ints, which conditions.as_double compares as +-infinity): the structs where they read the line,
and today's path too (`full`: where orjson refuses a line, processors.decode.loads_beyond_doubles
reads it), with every engine, the reference one included. An event forwarded unchanged then goes
out as it came; whatever needs it whole (an input transformer, a key path, an enrichment stage or
schema) cannot decode it with orjson and dead-letters it with the reason (decode.why_not_decoded).
No event is lost and no two ways answer differently.
"""
from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any, Union

import msgspec
import orjson

from processors.decode import loads_beyond_doubles

from ..flatten import PathTrie
from ..values import MISSING
from .indexed import StructLevels
from .trial import Matching
from .writer import dotted_names

log = logging.getLogger("processors.routing.ruleset")

# the decoder's answer per line: rule names, or None where orjson refuses the line or it is not an object
Answer = list[str] | None


class Fallback(Exception):
    """Raised by the struct `match` for an event it cannot decide: today's path decides it."""


def build_structs(trie: PathTrie) -> tuple[type, StructLevels]:
    """(the root Struct type, its levels for indexed.build_fast_path) for the paths of `trie`."""
    levels: StructLevels = {}

    def level(node: PathTrie) -> type:
        fields: list[tuple[str, Any, Any]] = []
        attrs: dict[str, str] = {}
        for i, (seg, child) in enumerate(node.children.items()):
            attrs[seg] = attr = f"f{i}"
            # an object on the way to a used field decodes to its level; a scalar is kept (it
            # may be a used leaf too); an array is refused (array consistency: today's path)
            typ: Any = Union[level(child), str, int, float, bool, None] if child.children else Any  # noqa: UP007
            fields.append((attr, typ, msgspec.field(default=MISSING, name=seg)))
        for j, name in enumerate(sorted(dotted_names(node))):
            fields.append((f"d{j}", msgspec.UnsetType, msgspec.field(default=MISSING, name=name)))
        cls = msgspec.defstruct(f"Level{len(levels)}", fields, gc=False)
        levels[id(node)] = (cls, attrs)
        return cls
    return level(trie), levels


def struct_fallback(ev: Any) -> list[str]:
    """The struct `match`'s `generic`: the event takes today's path."""
    raise Fallback


# one line's answer by one way of reading it
LineMatching = Callable[[bytes], Answer]
# what sends a line to today's path (msgspec.ValidationError is a DecodeError; RecursionError:
# nesting deeper than msgspec goes)
_REFUSED = (msgspec.DecodeError, RecursionError, UnicodeDecodeError, Fallback)


class PartialDecoder:
    """`matching_bytes(lines)`: per line, the names of the rules its event matches (as
    `matching(orjson.loads(line))` gives them), or None when orjson refuses the line or it is not
    a JSON object.

    The ways to answer: "partial-index" (the structs, the index engine's `match` for structs),
    "partial-bitmask" (the same with the bit-mask engine, for the rule sets that have it) and
    "orjson" (today's path). Which is faster depends on the rule set and the traffic (rules on
    arrays of numbers decode those arrays either way), so, as the engines' own trial does
    (trial.py), they are timed on the traffic and the fastest kept: every way reads every line,
    and on one line in `every` each is timed (in turns) past `warmup` untimed samples, until
    `timed` samples. A partial way is kept only if its median time is at most `margin` times
    today's (a close call on a shared machine is noise: today's path stays). A line on which
    the ways disagree takes the partial ways out for good (logged as an error: a fault).
    Until then, and while `ready()` is false (the rule set's own trial is still choosing its
    engine from the events `matching` sees), today's path answers. `decoder` names the way that
    answers; `decoded` and `fallbacks` count the lines the partial way took, and those it handed
    to today's path."""

    def __init__(self, match_index: Matching, match_bitmask: Matching | None, decode: Callable[[bytes], Any],
                 matching: Matching, ready: Callable[[], bool], decided: Callable[[str, dict[str, float]], None],
                 every: int, warmup: int, timed: int, margin: float) -> None:
        self.decode = decode
        self.matching = matching  # today's path: an event as orjson reads it
        self.ways: dict[str, Matching] = {"partial-index": match_index}
        if match_bitmask is not None:
            self.ways["partial-bitmask"] = match_bitmask
        self.decoder = "choosing"
        self.match: Matching | None = None  # the winner's struct matcher, once it is a partial way
        self.decoded = 0
        self.fallbacks = 0
        self._ready, self._decided = ready, decided
        self._every, self._warm, self._last = every, warmup * every, (warmup + timed) * every
        self._margin = margin
        self._count = 0
        self._times: dict[str, list[int]] = {}

    def matching_bytes(self, lines: Sequence[bytes]) -> list[Answer]:
        match = self.match
        if match is not None:
            return self._partial(lines, match)
        if self.decoder == "orjson" or not self._ready():
            return matching_bytes_full(lines, self.matching)
        return self._trial(lines)

    def matching_bytes_by(self, lines: Iterable[bytes], way: str) -> list[Answer]:
        """`matching_bytes` by one way ("partial-index", "partial-bitmask", "orjson"), whatever
        the trial chose (for tests and benchmarks)."""
        if way == "orjson":
            return matching_bytes_full(lines, self.matching)
        return self._partial(lines, self.ways[way])

    def _partial(self, lines: Iterable[bytes], match: Matching) -> list[Answer]:
        out: list[Answer] = []
        decode = self.decode
        slow = 0
        if type(lines) is list and all(map(bytes.isascii, lines)):
            # ASCII lines need no UTF-8 check: decoded and matched by map, with no Python step per
            # line. `extend` keeps the answers made before a line raises: that line takes today's
            # path, and the lines after it go on by map
            while len(out) < len(lines):
                try:
                    out.extend(map(match, map(decode, islice(lines, len(out), None))))
                except _REFUSED:
                    slow += 1
                    out.append(self.full(lines[len(out)]))
            self.fallbacks += slow
            self.decoded += len(out) - slow
            return out
        append = out.append
        for line in lines:
            try:
                # UTF-8 checked first: msgspec does not check the strings it skips (a non-empty
                # str is true, an invalid line raises)
                if line.isascii() or line.decode():
                    append(match(decode(line)))
                    continue
            except _REFUSED:
                pass
            slow += 1
            append(self.full(line))
        self.fallbacks += slow
        self.decoded += len(out) - slow
        return out

    def full(self, line: bytes) -> Answer:
        """Today's path for one line: orjson reads it whole, the rule set matches the dict."""
        return answer_whole(line, self.matching)

    def _trial(self, lines: Sequence[bytes]) -> list[Answer]:
        ways: list[tuple[str, LineMatching]] = [(name, self._one(m)) for name, m in self.ways.items()]
        ways.append(("orjson", self.full))
        times = self._times
        for name, _ in ways:
            times.setdefault(name, [])
        clock = time.perf_counter_ns
        out: list[Answer] = []
        for k, line in enumerate(lines):
            n = self._count = self._count + 1
            answers: dict[str, Answer] = {}
            if n % self._every:
                # every way reads every line (their memos and generated checks keep in step with
                # the traffic, and every answer is compared); one line in `every` is timed
                for name, way in ways:
                    answers[name] = way(line)
            else:
                turn = (n // self._every) % len(ways)
                for name, way in ways[turn:] + ways[:turn]:
                    start = clock()
                    answers[name] = way(line)
                    if n > self._warm:
                        times[name].append(clock() - start)
            answer = answers["orjson"]
            out.append(answer)
            if any(a != answer for a in answers.values()):
                log.error("partial decoding disagrees with orjson on a line (%d bytes): not used; "
                          "answers %s", len(line), answers)
                self._decide("orjson", {})
                return out + matching_bytes_full(lines[k + 1:], self.matching)
            if n >= self._last:
                medians = {name: float(statistics.median(t)) for name, t in times.items()}
                best = min(medians, key=medians.__getitem__)
                if medians[best] > self._margin * medians["orjson"]:
                    best = "orjson"  # not clearly faster: today's path stays
                self._decide(best, medians)
                rest = lines[k + 1:]
                return out + (self._partial(rest, self.match) if self.match is not None
                              else matching_bytes_full(rest, self.matching))
        return out

    def _one(self, match: Matching) -> LineMatching:
        """One line by a partial way, as `_partial` reads it (uncounted)."""
        decode, full = self.decode, self.full

        def one(line: bytes) -> Answer:
            try:
                if line.isascii() or line.decode():
                    return match(decode(line))
            except _REFUSED:
                pass
            return full(line)
        return one

    def _decide(self, decoder: str, medians_ns: dict[str, float]) -> None:
        self.decoder = decoder
        self.match = self.ways.get(decoder)
        self._times = {}
        self._decided(decoder, medians_ns)


def struct_decoder(root: type) -> Callable[[bytes], Any]:
    """`decode(line) -> root struct`; raises msgspec.DecodeError (ValidationError) where the
    structs cannot say the line (see the module's docstring)."""
    decode: Callable[[bytes], Any] = msgspec.json.Decoder(root).decode
    return decode


def answer_whole(line: bytes, matching: Matching) -> Answer:
    """One line's answer without partial decoding: orjson reads it whole, `matching` matches the
    dict; where orjson refuses the line, the event of a line refused only for a number beyond the
    double range (see the module's docstring), else None."""
    try:
        ev = orjson.loads(line)
    except orjson.JSONDecodeError:
        ev = loads_beyond_doubles(line)
    return matching(ev) if type(ev) is dict else None


def matching_bytes_full(lines: Iterable[bytes], matching: Matching) -> list[Answer]:
    """`matching_bytes` without partial decoding: every line read whole (answer_whole, inlined)."""
    out: list[Answer] = []
    append, loads = out.append, orjson.loads
    for line in lines:
        try:
            ev = loads(line)
        except orjson.JSONDecodeError:
            ev = loads_beyond_doubles(line)
        append(matching(ev) if type(ev) is dict else None)
    return out
