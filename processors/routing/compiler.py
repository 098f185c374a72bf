"""Event pattern JSON -> validated clauses, raising AWS's messages word for word.

A pattern compiles to a list of clauses (alternatives produced by `$or`); a clause is a list of
fields `(path, conditions)` that must all hold (AND), a field holds when any of its conditions
holds (OR). Paths join keys with "." exactly as EventBridge does, so {"a": {"b": ..}} and
{"a.b": ..} name the same field.
"""
from __future__ import annotations

import ipaddress
import math
import re
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
# Field names event-ruler refuses inside an alternative of `$or` (Constants.RESERVED_FIELD_NAMES_IN_OR_RELATIONSHIP):
# its operators, and names it keeps for operators to come.
_RESERVED_IN_OR = frozenset([
    "exactly", "equals-ignore-case", "prefix", "suffix", "anything-but", "exists", "wildcard", "numeric", "cidr",
    "=", "<", "<=", ">", ">=",
    "regex", "not-wildcard", "not-equals-ignore-case",
    "date-after", "date-on-or-after", "date-before", "date-on-or-before", "in-date-range",
    "ip-address-in-range", "ip-address-not-in-range",
])
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


def _object(obj: dict[str, Any], prefix: str, in_or: bool = False) -> list[Clause]:
    """The clauses of one pattern object; `in_or` inside an alternative of `$or`, at any depth."""
    if not obj:
        raise invalid("Empty objects are not allowed")
    clauses: list[Clause] = [[]]
    for key, value in obj.items():
        if not isinstance(key, str):
            raise invalid("Filter is not valid JSON")
        path = f"{prefix}.{key}" if prefix else key
        if key == "$or":
            alts = _or(value, prefix)
            clauses = [c + a for c in clauses for a in alts]
        elif in_or and key in _RESERVED_IN_OR:
            raise invalid(f"{key} is Ruler reserved fieldName which cannot be used inside $or.")
        elif isinstance(value, dict):
            sub = _object(value, path, in_or)
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


def _or(alternatives: Any, prefix: str) -> list[Clause]:
    if not isinstance(alternatives, list):
        raise invalid("It must be an Array followed with $or.")
    out: list[Clause] = []
    for alt in alternatives:  # each alternative is checked before the count, as event-ruler does
        if not isinstance(alt, dict):
            raise invalid("Only JSON object is allowed in array of $or relationship.")
        out.extend(_object(alt, prefix, in_or=True))
    if len(alternatives) < 2:
        raise invalid("There must have at least 2 Objects in $or relationship.")
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
    if not v:
        raise invalid("Match expression name not found")
    # event-ruler reads a match expression as a stream: the first key and its value are checked
    # before it notices a second key
    (op, arg), *more = v.items()
    cond = _match(op, arg)
    if more:
        # numeric and anything-but report a second key with the numeric message (tooManyElements)
        raise invalid("Too many elements in numeric expression" if op in ("numeric", "anything-but")
                      else "Only one key allowed in match expression")
    return cond


def _match(op: str, arg: Any) -> C.Condition:
    if op == "exactly":
        # event-ruler's "exactly" (a string compared as is); EventBridge does not document it,
        # and we have no recording either way, so we follow event-ruler
        if not isinstance(arg, str):
            raise invalid("exact match pattern must be a string")
        return C.make(Kind.EXACT, arg)
    if op == "prefix" or op == "suffix":
        if isinstance(arg, dict):
            return _with_ignore_case(op, arg)
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


def _with_ignore_case(op: str, arg: dict[str, Any]) -> C.Condition:
    """`{"prefix": {"equals-ignore-case": ..}}` and its suffix twin."""
    if not arg:
        raise invalid(f"{op.capitalize()} expression name not found")
    (inner_op, inner), *more = arg.items()
    if inner_op != "equals-ignore-case":
        raise invalid(f"Unsupported {op} pattern: {inner_op}")
    if not isinstance(inner, str):
        raise invalid("equals-ignore-case match pattern must be a string")
    if more:
        raise invalid("Only one key allowed in match expression")
    return C.make(Kind.PREFIX_IC if op == "prefix" else Kind.SUFFIX_IC, inner.lower())


class _WildcardCondition(C.Condition):
    __slots__ = ("tokens",)
    tokens: list[Tokens]


def _with_tokens(c: C.Condition, tokens: list[Tokens]) -> C.Condition:
    w = _WildcardCondition(c.kind, c.arg, c.pred)
    w.tokens = tokens
    return w


_ANYTHING_BUT_OPS = {
    "equals-ignore-case": Kind.ANYTHING_BUT_IC,
    "prefix": Kind.ANYTHING_BUT_PREFIX,
    "suffix": Kind.ANYTHING_BUT_SUFFIX,
    "wildcard": Kind.ANYTHING_BUT_WILDCARD,
}
# what event-ruler says of a value that is not a string, inside anything-but's operators
_NOT_A_STRING = {
    Kind.ANYTHING_BUT_IC: "Inside anything-but/equals-ignore-case list, number|start|null|boolean is not supported.",
    Kind.ANYTHING_BUT_PREFIX: "prefix/suffix match pattern must be a string",
    Kind.ANYTHING_BUT_SUFFIX: "prefix/suffix match pattern must be a string",
    Kind.ANYTHING_BUT_WILDCARD: "wildcard match pattern must be a string",
}


def _anything_but(arg: Any) -> C.Condition:
    kind, more = Kind.ANYTHING_BUT, False
    if isinstance(arg, dict):
        if not arg:
            raise invalid("Anything-But expression name not found")
        (op, arg), *rest = arg.items()
        more = bool(rest)
        if op not in _ANYTHING_BUT_OPS:
            raise invalid(f"Unsupported anything-but pattern: {op}")
        kind = _ANYTHING_BUT_OPS[op]
    # the same test for plain anything-but and for each of its operators
    if not (isinstance(arg, (list, str)) or _is_num(arg)):
        raise invalid("Value of anything-but must be an array or single string/number value.")
    cond = _anything_but_values(arg) if kind is Kind.ANYTHING_BUT else _anything_but_strings(kind, arg)
    if more:
        raise invalid("Too many elements in numeric expression")
    return cond


def _anything_but_values(arg: Any) -> C.Condition:
    """Plain anything-but: one string or number, or a non-empty list of strings only or numbers only."""
    if not isinstance(arg, list):
        return C.make(Kind.ANYTHING_BUT, frozenset([C.leaf_key(arg)]))
    has_string = has_number = False
    for x in arg:
        if isinstance(x, str):
            has_string = True
        elif _is_num(x):
            has_number = True
        else:
            raise invalid("Inside anything but list, start|null|boolean is not supported.")
    if has_string == has_number:  # both kinds, or an empty list
        raise invalid("Inside anything but list, either all values are number or string, "
                      "mixed type is not supported")
    return C.make(Kind.ANYTHING_BUT, frozenset(C.leaf_key(x) for x in arg))


def _anything_but_strings(kind: Kind, arg: Any) -> C.Condition:
    """anything-but's operators: one string or a list of strings, checked in order. An empty list
    is accepted (event-ruler builds an empty set, which excludes nothing)."""
    items = arg if isinstance(arg, list) else [arg]
    for x in items:
        if not isinstance(x, str):
            raise invalid(_NOT_A_STRING[kind])
        if x == "" and kind in (Kind.ANYTHING_BUT_PREFIX, Kind.ANYTHING_BUT_SUFFIX):
            raise invalid("Null prefix/suffix not allowed")
    if kind is Kind.ANYTHING_BUT_WILDCARD:
        toks = [parse_wildcard(x) for x in items]
        return _with_tokens(C.make(kind, tuple(segments(t) for t in toks)), toks)
    if kind is Kind.ANYTHING_BUT_IC:
        return C.make(kind, tuple(x.lower() for x in items))
    return C.make(kind, tuple(items))


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
    if len(items) > 4:
        raise invalid("Too many terms in numeric range expression")
    hi, hi_incl = _finite(items[3]), op2 == "<="
    if hi <= x:  # lo is x here
        raise invalid("Bottom must be less than top")
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
    """The JSON token event-ruler names: a string's text, a container's opening bracket."""
    if isinstance(x, str):
        return x
    if isinstance(x, dict):
        return "{"
    if isinstance(x, list):
        return "["
    return orjson.dumps(x).decode()


# event-ruler only reads as an IP address what looks like one (CIDR.isIPv4OrIPv6)
_IPV4_LIKE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_IPV6_LIKE = re.compile(r"[0-9a-fA-F:]*:[0-9a-fA-F:]*")
_JAVA_INT = re.compile(r"[+-]?\d+")  # what Integer.parseInt reads, range aside


def _cidr(arg: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """event-ruler's CIDR.cidr, check for check."""
    if not isinstance(arg, str):
        # AWS reports the prefix error for a non-string CIDR
        raise invalid("prefix match pattern must be a string")
    parts = arg.split("/")
    while parts and not parts[-1]:  # Java's String.split drops trailing empty strings
        parts.pop()
    if len(parts) != 2:
        raise invalid("Malformed CIDR, one '/' required")
    addr, bits_text = parts
    bits = int(bits_text) if _JAVA_INT.fullmatch(bits_text) else None  # Integer.parseInt
    if bits is None or not -2**31 <= bits < 2**31:
        raise invalid("Malformed CIDR, mask bits must be an integer")
    if bits < 0:
        raise invalid("Malformed CIDR, mask bits must not be negative")
    if not (_IPV4_LIKE.fullmatch(addr) or _IPV6_LIKE.fullmatch(addr)):
        raise invalid(f"Nonstandard IP address: {addr}")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise invalid(f"Invalid IP address: {addr}") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # Java's InetAddress gives an IPv4 address for ::ffff:a.b.c.d
    # event-ruler refuses a full-length mask (a single address): /32 for IPv4, /128 for IPv6.
    # Whether EventBridge accepts those we have no recording of; we follow event-ruler.
    if ip.version == 4 and bits > 31:
        raise invalid("IPv4 mask bits must be < 32")
    if ip.version == 6 and bits > 127:
        raise invalid("IPv6 mask bits must be < 128")
    return ipaddress.ip_network(f"{ip}/{bits}", strict=False)


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
