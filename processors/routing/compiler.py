"""Event pattern JSON -> validated clauses, raising AWS's messages word for word.

A pattern compiles to a list of clauses (alternatives produced by `$or`); a clause is a list of
fields `(path, conditions)` that must all hold (AND), a field holds when any of its conditions
holds (OR). Paths join keys with "." exactly as EventBridge does, so {"a": {"b": ..}} and
{"a.b": ..} name the same field.
"""
from __future__ import annotations

import ipaddress
import math
from typing import Any, TypeAlias

import orjson

from . import conditions as C
from .errors import invalid
from .kinds import Kind
from .wildcard import COMPLEXITY_LIMIT, Tokens, complexity, parse_wildcard, segments

Field: TypeAlias = tuple[str, list[C.Condition]]  # (path, [Condition, ...])
Clause: TypeAlias = list[Field]  # [Field, ...]
PatternSource: TypeAlias = dict[str, Any] | str | bytes  # a pattern as given: parsed JSON or its text

# A rule expands `$or` into at most this many alternative clauses.
MAX_OR_COMBINATIONS = 1000
_NUMERIC_OPS = ("<", "<=", "=", ">", ">=")
_TOO_COMPLEX = ("Rule is too complex - try using fewer wildcard characters or fewer repeating "
                "character sequences after a wildcard character")


def load_pattern(pattern: PatternSource) -> dict[str, Any]:
    if isinstance(pattern, (str, bytes)):
        try:
            pattern = orjson.loads(pattern)
        except orjson.JSONDecodeError:
            raise invalid("Filter is not valid JSON") from None
    if not isinstance(pattern, dict):
        raise invalid("Filter is not an object")
    return pattern


# Patterns deeper than this are refused before they are walked: the compiler recurses per level,
# and a pattern of a few thousand characters can nest past Python's recursion limit.
MAX_DEPTH = 100


def _depth(value: Any) -> int:
    """How deeply objects and arrays nest in `value`, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def compile_clauses(pattern: PatternSource) -> list[Clause]:
    pattern = load_pattern(pattern)
    if _depth(pattern) > MAX_DEPTH:
        raise invalid(f"Event pattern is nested deeper than {MAX_DEPTH} levels.")
    clauses = _object(pattern, "")
    for clause in clauses:
        _check_wildcard_complexity(clause)
    return clauses


def _object(obj: dict[str, Any], prefix: str) -> list[Clause]:
    clauses: list[Clause] = [[]]
    for key, value in obj.items():
        if not isinstance(key, str):
            raise invalid("Filter is not valid JSON")
        path = f"{prefix}.{key}" if prefix else key
        if key == "$or" and isinstance(value, list):
            alts = _or(value, prefix)
            clauses = [c + a for c in clauses for a in alts]
        elif isinstance(value, dict):
            sub = _object(value, path)
            clauses = [c + s for c in clauses for s in sub]
        elif isinstance(value, list):
            if not value:
                raise invalid("Empty arrays are not allowed")
            field = (path, [_condition(v) for v in value])
            clauses = [c + [field] for c in clauses]
        else:
            raise invalid(f'"{key}" must be an object or an array')
        if len(clauses) > MAX_OR_COMBINATIONS:
            raise invalid(_TOO_COMPLEX)
    return clauses


def _or(alternatives: list[Any], prefix: str) -> list[Clause]:
    if len(alternatives) < 2:
        raise invalid("Or relationship must have at least 2 sub-rules")
    out: list[Clause] = []
    for alt in alternatives:
        if not isinstance(alt, dict):
            raise invalid("Or relationship must contain only objects")
        out.extend(_object(alt, prefix))
    return out


def _condition(v: Any) -> C.Condition:
    if v is None or isinstance(v, bool):
        return C.make(Kind.EXACT, C.leaf_key(v))
    if isinstance(v, str):
        return C.make(Kind.EXACT, v)
    if isinstance(v, (int, float)):
        return C.make(Kind.EXACT, C.number_key(v))
    if not isinstance(v, dict):
        raise invalid("Match value must be String, number, true, false, or null")
    if len(v) != 1:
        raise invalid("Only one key allowed in match expression")
    (op, arg), = v.items()
    if op == "prefix" or op == "suffix":
        if isinstance(arg, dict):
            if list(arg) != ["equals-ignore-case"]:
                raise invalid(f"Unsupported {op} pattern: {next(iter(arg), '')}")
            inner = arg["equals-ignore-case"]
            if not isinstance(inner, str):
                raise invalid("equals-ignore-case match pattern must be a string")
            return C.make(Kind.PREFIX_IC if op == "prefix" else Kind.SUFFIX_IC, inner.lower())
        if not isinstance(arg, str):
            raise invalid(f"{op} match pattern must be a string")
        return C.make(Kind.PREFIX if op == "prefix" else Kind.SUFFIX, arg)
    if op == "equals-ignore-case":
        if not isinstance(arg, str):
            raise invalid("equals-ignore-case match pattern must be a string")
        return C.make(Kind.EQUALS_IC, arg.lower())
    if op == "wildcard":
        if not isinstance(arg, str):
            raise invalid("wildcard match pattern must be a string")
        toks = parse_wildcard(arg)
        return _with_tokens(C.make(Kind.WILDCARD, segments(toks)), [toks])
    if op == "anything-but":
        return _anything_but(arg)
    if op == "numeric":
        return C.make(Kind.NUMERIC, _numeric(arg))
    if op == "exists":
        if not isinstance(arg, bool):
            raise invalid("exists match pattern must be either true or false.")
        return C.make(Kind.EXISTS, arg)
    if op == "cidr":
        return C.make(Kind.CIDR, _cidr(arg))
    raise invalid(f"Unrecognized match type {op}")


class _WildcardCondition(C.Condition):
    __slots__ = ("tokens",)
    tokens: list[Tokens]


def _with_tokens(c: C.Condition, tokens: list[Tokens]) -> C.Condition:
    w = _WildcardCondition(c.kind, c.arg, c.pred)
    w.tokens = tokens
    return w


def _anything_but(arg: Any) -> C.Condition:
    if isinstance(arg, dict):
        if len(arg) != 1:
            raise invalid("Only one key allowed in match expression")
        (op, inner), = arg.items()
        if op in ("prefix", "suffix"):
            if isinstance(inner, dict):
                raise invalid("Value of anything-but must be an array or single string/number value.")
            items = inner if isinstance(inner, list) else [inner]
            if not all(isinstance(x, str) for x in items):
                raise invalid("prefix/suffix match pattern must be a string")
            if not items or any(x == "" for x in items):
                raise invalid("Null prefix/suffix not allowed")
            return C.make(Kind.ANYTHING_BUT_PREFIX if op == "prefix" else Kind.ANYTHING_BUT_SUFFIX, tuple(items))
        if op == "equals-ignore-case":
            items = inner if isinstance(inner, list) else [inner]
            if not items or not all(isinstance(x, str) for x in items):
                raise invalid("Inside anything-but/equals-ignore-case list, "
                              "number|start|null|boolean is not supported.")
            return C.make(Kind.ANYTHING_BUT_IC, tuple(x.lower() for x in items))
        if op == "wildcard":
            items = inner if isinstance(inner, list) else [inner]
            if not items or not all(isinstance(x, str) for x in items):
                raise invalid("wildcard match pattern must be a string")
            toks = [parse_wildcard(x) for x in items]
            return _with_tokens(C.make(Kind.ANYTHING_BUT_WILDCARD, tuple(segments(t) for t in toks)), toks)
        raise invalid(f"Unsupported anything-but pattern: {op}")
    if isinstance(arg, list):
        if not arg:
            raise invalid("Empty arrays are not allowed")
        for x in arg:
            if x is None or isinstance(x, (bool, dict, list)):
                raise invalid("Inside anything but list, start|null|boolean is not supported.")
        return C.make(Kind.ANYTHING_BUT, frozenset(C.leaf_key(x) for x in arg))
    if isinstance(arg, str) or (isinstance(arg, (int, float)) and not isinstance(arg, bool)):
        return C.make(Kind.ANYTHING_BUT, frozenset([C.leaf_key(arg)]))
    raise invalid("Value of anything-but must be an array or single string/number value.")


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _numeric(arg: Any) -> C.NumericRange:
    if not isinstance(arg, list):
        raise invalid("Value of numeric must be an array.")
    if not arg:
        raise invalid("Invalid member in numeric match: ]")
    items = list(arg)
    op = items[0]
    if not isinstance(op, str):
        raise invalid(f"Invalid member in numeric match: {_show(op)}")
    if op not in _NUMERIC_OPS:
        raise invalid(f"Unrecognized numeric range operator: {op}")
    if len(items) < 2 or not _is_num(items[1]):
        raise invalid(f"Value of {'equals' if op == '=' else op} must be numeric")
    x = _finite(items[1])
    if op == "=":
        if len(items) > 2:
            raise invalid("Too many elements in numeric expression")
        return (x, True, x, True)
    lo = hi = None
    lo_incl = hi_incl = False
    if op in (">", ">="):
        lo, lo_incl = x, op == ">="
    else:
        hi, hi_incl = x, op == "<="
    if len(items) == 2:
        return (lo, lo_incl, hi, hi_incl)
    if op not in (">", ">="):
        raise invalid("Too many elements in numeric expression")
    op2 = items[2]
    if not isinstance(op2, str):
        raise invalid(f"Bad value in numeric range: {_show(op2)}")
    if op2 not in ("<", "<="):
        raise invalid(f"Bad numeric range operator: {op2}")
    if len(items) < 4 or not _is_num(items[3]):
        raise invalid(f"Value of {op2} must be numeric")
    hi, hi_incl = _finite(items[3]), op2 == "<="
    if hi <= x:  # lo is x here
        raise invalid("Bottom must be less than top")
    if len(items) > 4:
        raise invalid("Too many terms in numeric range expression")
    return (lo, lo_incl, hi, hi_incl)


def _finite(x: Any) -> float:
    try:
        f = float(x)
    except OverflowError:
        f = math.inf
    if math.isinf(f):
        raise invalid("Value of numeric must be a number between "
                      "-1.7976931348623157E308 and 1.7976931348623157E308")
    return f


def _show(x: Any) -> str:
    return orjson.dumps(x).decode() if not isinstance(x, str) else x


def _cidr(arg: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(arg, str):
        # AWS reports the prefix error for a non-string CIDR
        raise invalid("prefix match pattern must be a string")
    parts = arg.split("/")
    if len(parts) != 2:
        raise invalid("Malformed CIDR, one '/' required")
    addr, bits = parts
    if not bits.isdigit() or not bits.isascii():
        raise invalid("Malformed CIDR, mask bits must be an integer")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise invalid(f"Nonstandard IP address: {addr}") from None
    if int(bits) > ip.max_prefixlen:
        raise invalid(f"Malformed CIDR, mask bits must be between 0 and {ip.max_prefixlen}")
    return ipaddress.ip_network(f"{addr}/{int(bits)}", strict=False)


def _check_wildcard_complexity(clause: Clause) -> None:
    by_path: dict[str, list[Tokens]] = {}
    for path, conds in clause:
        for c in conds:
            toks = getattr(c, "tokens", None)
            if toks:
                by_path.setdefault(path, []).extend(toks)
    for toks in by_path.values():
        if complexity(toks) > COMPLEXITY_LIMIT:
            raise invalid(_TOO_COMPLEX)
