"""PII masking: the stage that replaces personal data in a source's events before anything else
sees them, and decides what its dead letters may carry.

A source with `mask:` runs this stage right after validation, before normalisation, enrichment,
routing and every target. Field paths are those of the payload as produced (the schema's
properties; processors/paths.py syntax), and a path that meets a list goes through it: `items.email`
masks the `email` of every object in `items`. Methods, per field:

- `hmac`: HMAC-SHA256 under a secret key, hex or base64url, cut to `length` characters: the same
  value gives the same pseudonym on every worker and run, so joins and counts still work, and
  without the key it cannot be reversed by hashing guesses. A string is keyed as its UTF-8 text,
  any other value as its JSON (so 42 and "42" give the same pseudonym, as one user's id should).
- `redact`: a fixed `replacement`.
- `truncate`: an IPv4 / IPv6 address to its network address (`ipv4_prefix`, `ipv6_prefix`), any
  other string to its first `length` characters.
- `generalise`: timestamps (ISO-8601 text, or epoch milliseconds) down to the `to` hour or day, or
  numbers down to a multiple of `bucket`.
- `drop`: the field is removed.

Masking never fails and never lets a value through: a value a method cannot handle (an invalid
IP, a string that is no timestamp, an object under `truncate`) becomes the `replacement`. JSON
null stays null (it hides nothing). A list at the end of a path has each element masked (`redact`
and `drop` take the whole list).

Each masked event's record is replaced by a `MaskedRecord` whose value is the masked JSON, so
what reads the record later (a target that takes the record as it came, a dead letter of a later
stage or of a target) never has the clear bytes. Records that fail before this stage (decode,
validate) are still the clear ones: `seal_failures` applies the source's dead-letter policy to
them (`mask`: the same masking on the raw JSON, withheld when it is not a JSON object;
`withhold`: no value; `raw`: kept as they are, for a dead-letter topic as protected as the source).
"""
from __future__ import annotations

import hmac as _hmac
import ipaddress
import math
import re
from base64 import urlsafe_b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson

from processors.core import Event, Failure, SourceRecord
from processors.decode import TOMBSTONE
from processors.paths import split_path

METHODS = ("hmac", "redact", "truncate", "generalise", "drop", "keep")
DEAD_LETTER_POLICIES = ("mask", "withhold", "raw")
_OPTIONS = {  # the options each method reads; any other is a mistake worth reporting
    "hmac": {"length", "encoding"},
    "redact": {"replacement"},
    "truncate": {"length", "ipv4_prefix", "ipv6_prefix", "replacement"},
    "generalise": {"to", "bucket", "replacement"},
    "drop": set(),
    "keep": set(),
}
_HOUR_MS, _DAY_MS = 3_600_000, 86_400_000
CACHE_SIZE = 65_536  # text values remembered per field
_MISSING = object()


@dataclass(frozen=True, slots=True)
class FieldRule:
    """How one field is masked (see the module docstring)."""

    method: str
    length: int | None = None
    encoding: str = "hex"
    replacement: Any = "[REDACTED]"
    ipv4_prefix: int = 24
    ipv6_prefix: int = 48
    to: str | None = None
    bucket: int | float | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r}: expected one of {', '.join(METHODS)}")
        if self.encoding not in ("hex", "base64url"):
            raise ValueError(f"encoding {self.encoding!r}: expected hex or base64url")
        if self.method == "hmac" and self.length is not None and not 8 <= self.length <= _hmac_width(self.encoding):
            raise ValueError(f"length {self.length}: an hmac in {self.encoding} has 8 to "
                             f"{_hmac_width(self.encoding)} characters")
        if self.length is not None and self.length < 1:
            raise ValueError(f"length {self.length}: expected at least 1")
        if not 0 <= self.ipv4_prefix <= 32 or not 0 <= self.ipv6_prefix <= 128:
            raise ValueError("ipv4_prefix is 0 to 32 and ipv6_prefix 0 to 128")
        if self.method == "generalise" and (self.to is None) == (self.bucket is None):
            raise ValueError("generalise takes one of `to` (hour or day, for timestamps) or `bucket` (for numbers)")
        if self.to is not None and self.to not in ("hour", "day"):
            raise ValueError(f"to {self.to!r}: expected hour or day")
        if self.bucket is not None and not self.bucket > 0:
            raise ValueError(f"bucket {self.bucket}: expected a positive width")

    @classmethod
    def of(cls, spec: str | Mapping[str, Any]) -> FieldRule:
        """From `"hmac"` or `{"method": "truncate", "ipv4_prefix": 16}` (x-pii and config alike);
        refuses an option the method does not read."""
        if isinstance(spec, str):
            return cls(spec)
        if not isinstance(spec, Mapping) or "method" not in spec:
            raise ValueError(f"expected a method name or an object with `method`, got {spec!r}")
        method = spec["method"]
        stray = sorted(set(spec) - {"method"} - _OPTIONS.get(method, set(spec)))
        if stray:
            raise ValueError(f"{', '.join(stray)}: not an option of {method}")
        return cls(**spec)


def _hmac_width(encoding: str) -> int:
    return 64 if encoding == "hex" else 43


def schema_rules(schema: Mapping[str, Any]) -> dict[str, FieldRule]:
    """The `x-pii` annotations of a JSON Schema, by field path: `{"x-pii": "hmac"}` or
    `{"x-pii": {"method": "truncate", "ipv4_prefix": 16}}` on a property; arrays (`items`) are
    gone through, as masking paths go through lists."""
    found: dict[str, FieldRule] = {}

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if not isinstance(node, Mapping):
            return
        if "x-pii" in node and path:
            try:
                found[".".join(path)] = FieldRule.of(node["x-pii"])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"x-pii of {'.'.join(path)}: {exc}") from None
        for name, sub in (node.get("properties") or {}).items():
            walk(sub, (*path, name))
        walk(node.get("items"), path)

    walk(schema, ())
    return found


class MaskedRecord:
    """A consumed record with its value masked: what later stages, targets and dead letters read
    instead of the clear one (the same attributes as core.SourceRecord). The value is the masked
    payload's JSON, written when first read (a dead letter), not for every event: events go on as
    their bodies. It is the payload then, with what enrichment added to it in place. `masked` is the
    dead-letter header eventweir-masked (`mask`, or `withhold`: no value)."""

    __slots__ = ("topic", "partition", "offset", "timestamp_ms", "key", "headers", "masked", "_payload", "_value")

    def __init__(self, record: SourceRecord, payload: dict[str, Any] | None, value: bytes | None = None,
                 masked: str = "mask"):
        self.topic, self.partition, self.offset = record.topic, record.partition, record.offset
        self.timestamp_ms, self.key, self.headers = record.timestamp_ms, record.key, record.headers
        self.masked, self._payload, self._value = masked, payload, value

    @property
    def value(self) -> bytes | None:
        payload = self._payload
        if payload is not None:  # later stages may have added to it (enrichment): never unmasked it
            self._payload = None
            try:
                self._value = orjson.dumps(payload)
            except orjson.JSONEncodeError:  # a later stage put in something JSON cannot hold
                self.masked = "withhold"
        return self._value


class Masker:
    stage = "mask"

    def __init__(self, fields: Mapping[str, FieldRule], secret: bytes | None = None, dead_letters: str = "mask"):
        if dead_letters not in DEAD_LETTER_POLICIES:
            raise ValueError(f"dead_letters {dead_letters!r}: expected one of {', '.join(DEAD_LETTER_POLICIES)}")
        # per rule, the pseudonyms of the text values met lately: a user sends many events, and the
        # HMAC or the IP parse is most of a mask's cost (bounded; the clear values are in the
        # worker's fetch buffers anyway)
        rules: list[tuple[tuple[str, ...], FieldRule, dict]] = [
            (split_path(path), rule, {}) for path, rule in fields.items() if rule.method != "keep"]
        self._rules = [(path, path[:-1], path[-1], rule, cache, rule.method) for path, rule, cache in rules]
        if not rules:
            raise ValueError("no field to mask: name some under `fields`, or use a schema with x-pii annotations")
        needs_key = sorted(path for path, rule in fields.items() if rule.method == "hmac")
        if needs_key and not secret:
            raise ValueError(f"hmac on {', '.join(needs_key)} needs a secret key: set hmac_secret "
                             "(e.g. ${PII_HMAC_KEY}, or PII_HMAC_KEY_FILE for a mounted secret)")
        if secret is not None and needs_key and len(secret) < 16:
            raise ValueError("hmac_secret: at least 16 bytes (32 random bytes recommended), got fewer")
        self._secret = secret or b""
        self.dead_letters = dead_letters

    # -- the stage ---------------------------------------------------------------------------------

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        for event in events:
            record, body = event.record, event.body
            if type(record) is MaskedRecord or TOMBSTONE in body:  # a re-run after a failure; nothing to mask
                continue
            self.mask(body)
            event.record = cast(SourceRecord, MaskedRecord(record, body))
            event.added = None  # the record's bytes are not the body's any more: serialise the body (core.Event)
        return events

    def mask(self, body: dict[str, Any], clear: list[str] | None = None) -> None:
        """Mask `body` in place; the clear text of what was masked is added to `clear` when given."""
        if clear is not None:  # a dead letter's record: the general walk, noting what it hides
            for path, _, _, rule, cache, _ in self._rules:
                self._walk(body, path, 0, rule, cache, clear)
            return
        # the common cases inline (objects in objects, a text met lately, a redaction): this runs
        # for every field of every event of a masked source
        for path, parents, leaf, rule, cache, method in self._rules:
            node: Any = body
            for step in parents:
                if type(node) is not dict:
                    break
                node = node.get(step)
            if type(node) is not dict:
                if type(node) is list:  # the path goes through a list: each of its objects
                    self._walk(body, path, 0, rule, cache, None)
                continue
            value = node.get(leaf)
            if value is None or method == "drop" or type(value) is list:
                if leaf in node:
                    self._leaf(node, leaf, rule, cache, None)
            elif method == "redact":
                node[leaf] = rule.replacement
            elif type(value) is str:
                masked = cache.get(value, _MISSING)
                node[leaf] = self._masked(value, rule, cache) if masked is _MISSING else masked
            else:
                node[leaf] = self._value(value, rule)

    def _walk(self, node: Any, path: tuple[str, ...], i: int, rule: FieldRule, cache: dict,
              clear: list[str] | None) -> None:
        if type(node) is list:
            for item in node:
                self._walk(item, path, i, rule, cache, clear)
            return
        if type(node) is not dict:
            return
        step = path[i]
        if step not in node:
            return
        if i + 1 < len(path):
            self._walk(node[step], path, i + 1, rule, cache, clear)
        else:
            self._leaf(node, step, rule, cache, clear)

    def _leaf(self, node: dict[str, Any], step: str, rule: FieldRule, cache: dict, clear: list[str] | None) -> None:
        value = node[step]
        if clear is not None:
            _clear_text(value, clear)
        if rule.method == "drop":
            del node[step]
        elif value is None:
            return
        elif rule.method == "redact":
            node[step] = rule.replacement
        else:
            node[step] = self._masked(value, rule, cache)

    def _masked(self, value: Any, rule: FieldRule, cache: dict) -> Any:
        kind = type(value)
        if kind is str:
            out = cache.get(value, _MISSING)
            if out is _MISSING:
                if len(cache) >= CACHE_SIZE:
                    cache.clear()
                out = cache[value] = self._value(value, rule)
            return out
        if kind is list:
            return [None if item is None else self._masked(item, rule, cache) for item in value]
        return self._value(value, rule)

    def _value(self, value: Any, rule: FieldRule) -> Any:
        method = rule.method
        if method == "hmac":
            data = value.encode() if type(value) is str else orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
            digest = _hmac.digest(self._secret, data, "sha256")
            text = digest.hex() if rule.encoding == "hex" else urlsafe_b64encode(digest).rstrip(b"=").decode()
            return text[:rule.length] if rule.length else text
        if method == "truncate":
            return _truncate(value, rule)
        return _generalise(value, rule)

    # -- dead letters ------------------------------------------------------------------------------

    def seal_failures(self, failures: list[Failure], start: int) -> None:
        """Apply the dead-letter policy to the failures from `start` on whose record is still the
        clear one (they failed before this stage): masked or withheld, and the clear values that
        a failure's message may quote (a schema error shows the value it refused) taken out."""
        if self.dead_letters == "raw":
            return
        for failure in failures[start:]:
            record = failure.record
            if type(record) is MaskedRecord:
                continue
            clear: list[str] = []
            body = None
            if record.value is not None:
                try:
                    body = orjson.loads(record.value)
                except orjson.JSONDecodeError:
                    pass
            if type(body) is dict:
                self.mask(body, clear)  # withheld or not, the message may quote what was refused
            kept = body if type(body) is dict and self.dead_letters == "mask" else None
            failure.record = cast(SourceRecord, MaskedRecord(record, kept, None, "mask" if kept else "withhold"))
            failure.message = scrub(failure.message, clear)


def _clear_text(value: Any, out: list[str]) -> None:
    if type(value) is str:
        out.append(value)
    elif type(value) in (int, float):
        out.append(str(value))
    elif type(value) is list:
        for item in value:
            _clear_text(item, out)
    elif type(value) is dict:
        for item in value.values():
            _clear_text(item, out)


def scrub(message: str, clear: list[str]) -> str:
    """`message` without the clear values; a long one's first 12 characters and what follows them
    up to a space or quote also go, since error messages cut long values short."""
    for text in sorted(set(clear), key=len, reverse=True):
        if len(text) < 2:
            continue
        message = message.replace(text, "<masked>")
        if len(text) > 12:
            message = re.sub(re.escape(text[:12]) + r"[^\s'\"]*", "<masked>", message)
    return message


def _truncate(value: Any, rule: FieldRule) -> Any:
    if type(value) is not str:
        return rule.replacement
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return value[:rule.length] if rule.length else rule.replacement
    if address.version == 4:
        keep = rule.ipv4_prefix
        return str(ipaddress.IPv4Address(int(address) >> (32 - keep) << (32 - keep) if keep else 0))
    keep = rule.ipv6_prefix
    return str(ipaddress.IPv6Address(int(address) >> (128 - keep) << (128 - keep) if keep else 0))


def _generalise(value: Any, rule: FieldRule) -> Any:
    kind = type(value)
    if rule.bucket is not None:
        if kind not in (int, float) or (kind is float and not math.isfinite(value)):
            return rule.replacement
        floored = math.floor(value / rule.bucket) * rule.bucket
        return int(floored) if kind is int and type(rule.bucket) is int else floored
    if kind is int or (kind is float and math.isfinite(value)):  # epoch milliseconds
        unit = _HOUR_MS if rule.to == "hour" else _DAY_MS
        return int(value // unit * unit)
    if kind is not str:
        return rule.replacement
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return rule.replacement
    when = when.replace(minute=0, second=0, microsecond=0)
    if rule.to == "day":
        when = when.replace(hour=0)
    text = when.isoformat()
    if value.endswith(("Z", "z")) and text.endswith("+00:00"):
        text = text[:-6] + "Z"
    return text
