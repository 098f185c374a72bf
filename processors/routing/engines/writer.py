"""Writing the engines' generated Python: source, the namespace it runs in, and its line cache.

A `CodeWriter` collects the lines of one or more generated functions and owns the namespace
(globals) they run in: one per engine, so names never collide and nothing needs an offset. The
constants a function reads are globals named after what they hold (`exact_3`, `memo_on_2`);
locals are named the same way (`value_1`, `type_1`).

`define` compiles source (code objects are cached by source: a rule set reloaded in-process
regenerates mostly the same text) and registers it in `linecache` under a name derived from the
source, so a traceback through generated code shows its lines.

Also here: the expression builders that both engines inline (a condition's test on a scalar,
numeric ranges, wildcards) and the memo switch of string fields.
"""
from __future__ import annotations

import hashlib
import linecache
import weakref
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from types import CodeType
from typing import Any, Protocol, assert_never

from ..conditions import Condition, leaf_key
from ..kinds import Kind
from ..values import MISSING

MEMO_SIZE = 4096  # values a string field's memo holds before it is cleared (see memo_switch)
CODE_CACHE_SIZE = 2048  # generated sources whose code objects are kept for reuse

_CODE: dict[tuple[str, str], CodeType] = {}  # (label, source) -> its code object


def _forget(filename: str, entry: tuple[Any, ...]) -> None:
    if linecache.cache.get(filename) is entry:
        del linecache.cache[filename]


def compile_source(source: str, label: str) -> CodeType:
    """The code object of generated `source`, named `<eventweir-{label}-{hash}>` and registered in
    `linecache` for as long as some code object of it lives, so tracebacks show its lines."""
    key = (label, source)
    code = _CODE.get(key)
    if code is not None:
        return code
    if len(_CODE) >= CODE_CACHE_SIZE:
        _CODE.clear()
    filename = f"<eventweir-{label}-{hashlib.sha1(source.encode()).hexdigest()[:12]}>"
    code = _CODE[key] = compile(source, filename, "exec")
    entry = (len(source), None, source.splitlines(True), filename)  # mtime None: kept by checkcache
    linecache.cache[filename] = entry
    weakref.finalize(code, _forget, filename, entry)
    return code


class CodeWriter:
    """Lines of generated code and the namespace they run in (one per engine)."""

    def __init__(self, label: str, namespace: dict[str, Any] | None = None) -> None:
        self.label = label  # names the generated file: <eventweir-{label}-...>
        # the names every generated function may read
        self.namespace: dict[str, Any] = {"MISSING": MISSING, "leaf_key": leaf_key} if namespace is None else namespace
        self.lines: list[str] = []
        self.helpers: list[str] = []  # functions emitted after the main one
        self._counts: dict[str, int] = {}
        self._mirrors: list[dict[str, Any]] = []

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def var(self, prefix: str) -> str:
        """A fresh name: `prefix_1`, `prefix_2`... (a local, or a global through `const`)."""
        n = self._counts[prefix] = self._counts.get(prefix, 0) + 1
        return f"{prefix}_{n}"

    def const(self, prefix: str, value: object) -> str:
        """A fresh global holding `value`, by name."""
        name = self.var(prefix)
        self.namespace[name] = value
        return name

    def rebind(self, name: str, value: object) -> None:
        """Set a global the generated code reads (a memo switched off), here and in every namespace
        that runs this writer's code too (`mirror_into`)."""
        self.namespace[name] = value
        for m in self._mirrors:
            m[name] = value

    def mirror_into(self, target: dict[str, Any]) -> None:
        """Make `target` a namespace this writer's functions may run in too: it gets every global,
        now and when defined or rebound later. (A function's globals cannot be swapped, its code
        can: RuleSet's engine trial turns its function into the winner's this way.)"""
        target.update(self.namespace)
        self._mirrors.append(target)

    def define(self, source: str | None = None) -> None:
        """Run `source` (by default the lines and helpers written so far) in the namespace."""
        if source is None:
            source = "\n".join(self.lines + self.helpers) + "\n"
        exec(compile_source(source, self.label), self.namespace)
        for m in self._mirrors:
            m.update(self.namespace)

    def source(self) -> str:
        return "\n".join(self.lines + self.helpers) + "\n"


class _Trie(Protocol):
    children: dict[str, Any]


def dotted_names(node: _Trie) -> set[str]:
    """Keys that would reach a used field from `node` across two or more levels at once
    ("measurements.temperature"): EventBridge joins nested keys with dots, so an event key
    spelled like that must be read the generic way."""
    names: set[str] = set()

    def walk(n: _Trie, prefix: str) -> None:
        for seg, child in n.children.items():
            name = f"{prefix}.{seg}"
            names.add(name)
            walk(child, name)
    for seg, child in node.children.items():
        walk(child, seg)
    return names


def dotted_check(w: CodeWriter, node: _Trie, d: str, depth: int, generic: str) -> None:
    """Send the event the generic way if object `d` has a key that spans levels of a used path.
    Other dotted keys cannot reach a used field, and need no check (a set lookup per key in C)."""
    names = dotted_names(node)
    if names:
        w.emit(depth, f"if not {w.const('dotted_keys', frozenset(names))}.isdisjoint({d}):")
        w.emit(depth + 1, f"return {generic}(ev)")


MemoFull = Callable[[str, str, dict[Any, Any], list[int]], None]


def memo_switch(w: CodeWriter, memos: dict[str, bool]) -> MemoFull:
    """What a field's lookup does when its memo is full: clear it, and when most events since
    the last clear brought a value it had not seen (ids, timestamps), switch the memo off: the
    generated code then takes its inline branch for that field. `memos` maps each field to
    whether its memo is on; the switch is the global named `flag` in the writer's namespace."""
    since: dict[str, int] = {}

    def full(path: str, flag: str, memo: dict[Any, Any], events: list[int]) -> None:
        seen = events[0] - since.get(path, 0)
        since[path] = events[0]
        memo.clear()
        if MEMO_SIZE * 2 > seen:
            w.rebind(flag, False)
            memos[path] = False
    return full


def scalar_test(w: CodeWriter, cond: Condition, x: str = "x", t: str = "t") -> str:
    """A Python expression true when the scalar leaf `x` (of type `t`, an expression: a name, or
    `str` where the type is known) satisfies `cond`.

    The common kinds are inlined; the rest call the condition's own predicate. Numbers compare
    as IEEE doubles (ints converted), exactly as conditions.build_predicate does.
    """
    kind, arg = cond.kind, cond.arg
    match kind:
        case Kind.EXACT:
            if type(arg) is str:
                return f"{x} == {w.const('key', arg)}"  # a str key: only an equal str compares equal
        case Kind.PREFIX:
            return f"({t} is str and {x}.startswith({w.const('key', arg)}))"
        case Kind.SUFFIX:
            return f"({t} is str and {x}.endswith({w.const('key', arg)}))"
        case Kind.NUMERIC:
            lo, hi = bound_names(w, arg)  # the bounds' constants made once, for both types
            tests = range_on(arg, lo, hi, x)
            if tests == "True":
                return f"({t} is float or {t} is int)"
            return f"(({t} is float and {tests}) or ({t} is int and {range_on(arg, lo, hi, f'float({x})')}))"
        case Kind.EQUALS_IC:
            return f"({t} is str and {x}.lower() == {w.const('key', arg)})"
        case Kind.ANYTHING_BUT:  # arg: the excluded leaf keys (conditions.leaf_key)
            keys = w.const("excluded", arg)
            return f"({x} not in {keys} if {t} is str else leaf_key({x}) not in {keys})"
        case Kind.ANYTHING_BUT_PREFIX:
            return f"not ({t} is str and {x}.startswith({w.const('excluded', tuple(arg))}))"
        case Kind.ANYTHING_BUT_SUFFIX:
            return f"not ({t} is str and {x}.endswith({w.const('excluded', tuple(arg))}))"
        case Kind.WILDCARD:
            test = wildcard_test(w, arg, x)
            if test:
                return f"({t} is str and {test})"
        case Kind.ANYTHING_BUT_WILDCARD:
            test = wildcard_test(w, arg[0], x) if len(arg) == 1 else None
            if test:
                return f"not ({t} is str and {test})"
        case Kind.PREFIX_IC | Kind.SUFFIX_IC | Kind.ANYTHING_BUT_IC | Kind.CIDR | Kind.EXISTS:
            pass  # the condition's own predicate
        case _:
            assert_never(kind)
    return f"{w.const('predicate', cond.pred)}({x})"


def wildcard_test(w: CodeWriter, segs: tuple[str, ...], x: str) -> str | None:
    """The str `x` against a wildcard of one `*` or of `*middle*`, as one string operation
    (wildcard.make_matcher's shapes); None for other shapes, which keep their predicate."""
    if len(segs) == 2:
        head, tail = segs
        if not tail:
            return f"{x}.startswith({w.const('key', head)})"
        if not head:
            return f"{x}.endswith({w.const('key', tail)})"
        return (f"len({x}) >= {len(head) + len(tail)} and {x}.startswith({w.const('key', head)}) "
                f"and {x}.endswith({w.const('key', tail)})")
    if len(segs) == 3 and not segs[0] and not segs[2]:
        return f"{w.const('key', segs[1])} in {x}"
    return None


NumericRange = tuple[float | None, bool, float | None, bool]


def bound_names(w: CodeWriter, numeric_range: NumericRange) -> tuple[str | None, str | None]:
    """Globals holding a numeric range's low and high ends (None for an open end)."""
    lo, _, hi, _ = numeric_range
    return (None if lo is None else w.const("low", lo)), (None if hi is None else w.const("high", hi))


def range_on(numeric_range: NumericRange, lo: str | None, hi: str | None, n: str) -> str:
    """The double `n` (an expression) in a numeric range whose ends are the globals `lo` and `hi`,
    as code; "True" for an unbounded one."""
    _, lo_incl, _, hi_incl = numeric_range
    tests = []
    if lo is not None:
        tests.append(f"{n} {'>=' if lo_incl else '>'} {lo}")
    if hi is not None:
        tests.append(f"{n} {'<=' if hi_incl else '<'} {hi}")
    return " and ".join(tests) or "True"


def sorted_range_test(w: CodeWriter, numeric_range: NumericRange, x: str = "x") -> str:
    """Whether the sorted numbers `x` hold one in the range: the first at or above its low end
    (by bisection) must be under its high end; checks.any_in_ranges, for one range."""
    lo, lo_incl, hi, hi_incl = numeric_range
    if lo is None:
        first = f"(i := 0) < len({x})"
    else:
        fn = "bisect_left" if lo_incl else "bisect_right"
        w.namespace[fn] = bisect_left if lo_incl else bisect_right
        first = f"(i := {fn}({x}, {w.const('low', lo)})) < len({x})"
    if hi is None:
        return f"({first})"
    return f"({first} and {x}[i] {'<=' if hi_incl else '<'} {w.const('high', hi)})"
