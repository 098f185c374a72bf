"""`wildcard` operator: parsing, AWS's complexity limit, and a linear-time matcher.

A wildcard holds only `*` (zero or more characters), so it is matched as literal segments found
left to right with str.find: no regex backtracking, bounded time on adversarial patterns such as
`*a*a*a*b` against long runs of `a`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

from .errors import invalid

Tokens: TypeAlias = list[str | None]  # a parsed wildcard: one-character strings, None for `*`

# event-ruler rejects a rule when more than this many wildcard-pattern prefixes can match one
# input value at once (MachineComplexityEvaluator as configured by EventBridge).
COMPLEXITY_LIMIT = 9
_STAR = None  # token for `*` in a parsed pattern
_EXPLORE_BUDGET = 20000  # state sets examined before we call a pattern too complex


def _pos(text: str, i: int) -> int:
    """event-ruler's position of character `i`: a byte offset into the UTF-8 of the pattern in
    its JSON quotes (WildcardParser parses '"' + text + '"'), so one more than the index for ASCII.
    Java writes an unpaired surrogate as one byte, '?', as errors="replace" does."""
    return len(text[:i].encode("utf-8", errors="replace")) + 1


def parse_wildcard(text: str) -> Tokens:
    """Tokens of `text`: one-character strings, or None for `*`. Raises AWS's errors."""
    tokens: Tokens = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "*":
            if tokens and tokens[-1] is _STAR:
                raise invalid(f"Consecutive wildcard characters at pos {_pos(text, i - 1)}")
            tokens.append(_STAR)
        elif c == "\\":
            if i + 1 >= n or text[i + 1] not in "*\\":
                raise invalid(f"Invalid escape character at pos {_pos(text, i)}")
            i += 1
            tokens.append(text[i])
        else:
            tokens.append(c)
        i += 1
    return tokens


def segments(tokens: Tokens) -> tuple[str, ...]:
    """Literal runs between stars: ('a', 'b') for a*b, ('', 'x', '') for *x*."""
    out: list[str] = []
    cur: list[str] = []
    for t in tokens:
        if t is _STAR:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(t)
    out.append("".join(cur))
    return tuple(out)


def make_matcher(segs: tuple[str, ...]) -> Callable[[Any], bool]:
    """A predicate on any JSON value: a str matching the wildcard with these literal segments.

    Common shapes get a single C-level string operation.
    """
    if len(segs) == 1:
        lit = segs[0]
        return lambda s: type(s) is str and s == lit
    head, tail, middle = segs[0], segs[-1], segs[1:-1]
    need = sum(len(x) for x in segs)
    if not middle:
        if not tail:
            return lambda s: type(s) is str and s.startswith(head)
        if not head:
            return lambda s: type(s) is str and s.endswith(tail)
        return lambda s: type(s) is str and len(s) >= need and s.startswith(head) and s.endswith(tail)
    if len(middle) == 1 and not head and not tail:
        mid = middle[0]
        return lambda s: type(s) is str and mid in s

    def match(s: Any) -> bool:
        if type(s) is not str or len(s) < need or not s.startswith(head) or not s.endswith(tail):
            return False
        pos, end = len(head), len(s) - len(tail)
        for seg in middle:
            found = s.find(seg, pos, end)
            if found < 0:
                return False
            pos = found + len(seg)
        return True
    return match


def complexity(patterns: list[Tokens]) -> int:
    """Most wildcard-pattern prefixes that one input can match at once (event-ruler's measure).

    Each pattern is an NFA over its tokens; state k means "tokens[:k] matched the input so far".
    A state after a `*` also stays live on any character. We explore the reachable sets of live
    states (one representative character for "any other"), weighting each live state 1, and stop
    early once the limit is passed.
    """
    machines: list[tuple[str | None, ...]] = []
    alphabet: set[str] = set()
    for toks in {tuple(p) for p in patterns}:
        if _STAR not in toks:
            continue
        machines.append(toks)
        alphabet.update(t for t in toks if t is not _STAR)
    if not machines:
        return 0
    chars = list(alphabet) + ["\x00other"]

    def closure(m: int, states: set[int]) -> set[int]:
        toks = machines[m]
        out = set(states)
        stack = list(states)
        while stack:
            k = stack.pop()
            if k < len(toks) and toks[k] is _STAR and k + 1 not in out:
                out.add(k + 1)
                stack.append(k + 1)
        return out

    start = tuple(frozenset(closure(m, {0})) for m in range(len(machines)))
    seen = {start}
    todo = [start]
    best = 0
    budget = _EXPLORE_BUDGET
    while todo:
        budget -= 1
        if budget < 0:
            return COMPLEXITY_LIMIT + 1
        cur = todo.pop()
        for ch in chars:
            nxt: list[frozenset[int]] = []
            size = 0
            for m, states in enumerate(cur):
                toks = machines[m]
                step: set[int] = set()
                for k in states:
                    if k and toks[k - 1] is _STAR:
                        step.add(k)  # the star just passed absorbs ch
                    if k < len(toks) and toks[k] == ch:
                        step.add(k + 1)
                step = closure(m, step)
                # state 0 (nothing matched) is not a prefix; every other live state is one
                size += len(step) - (0 in step)
                nxt.append(frozenset(step))
            if size > best:
                best = size
                if best > COMPLEXITY_LIMIT:
                    return best
            key = tuple(nxt)
            if key not in seen and any(nxt):
                seen.add(key)
                todo.append(key)
    return best
