"""Object layout for the lake: path templates over envelope fields and event time, and object keys.

A template mixes literal text, field values and Firehose-style timestamps:

    source={source}/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/
    iot/!{timestamp:yyyy/MM/dd}/{detail.device_id}/

`{a.b}` is the value at that path in the event (envelope keys may hold dashes: `{detail-type}`),
`!{timestamp:FMT}` is the event time in the configured time zone, formatted with the Java
DateTimeFormatter letters Firehose uses (yyyy, MM, dd, HH, mm, ss). Firehose's dynamic
partitioning placeholders work as there: `!{partitionKeyFromQuery:NAME}` is the value of the
target's `partition_keys.NAME` query (the JQ Firehose users write: `.a.b`, `.a["b"]`),
`!{firehose:random-string}` 11 characters that spread objects over prefixes (derived from the
source partition, so a replay writes the same keys), and `!{firehose:error-output-type}` the
error type in the error prefix. What cannot work here is refused when the config is loaded:
`!{partitionKeyFromLambda:...}` (no Lambda runs here) and Kafka Connect's `'year'=YYYY` syntax.
Values are sanitised so a value can never add a path level or an unsafe character. A record whose
field is missing or empty, or whose time cannot be read, renders to the error prefix instead
(`errors/{error-type}/`).
"""
from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from processors.paths import get_path

_TOKEN = re.compile(r"!\{([A-Za-z]+):([^}]*)\}|\{([^{}]+)\}")
_JQ_STEP = re.compile(r'\.([A-Za-z_][A-Za-z0-9_-]*)|\.?\["([^"\\]*)"\]')
_KAFKA_CONNECT = re.compile(r"'[^'/]*'\s*=")
RANDOM_MARK = "\x00random\x00"  # replaced per source partition by the target (see random_string)
_DATE_LETTERS = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
_DATE_TOKEN = re.compile(r"(yyyy|MM|dd|HH|mm|ss|[A-Za-z])")
# S3's "safe characters" plus `=` for Hive-style names; anything else becomes `_`
_UNSAFE = re.compile(r"[^A-Za-z0-9!\-_.*'()=]")
OFFSET_DIGITS = 20  # Kafka offsets are int64: 19 digits, padded like Kafka Connect's S3 sink (20)


class LayoutError(ValueError):
    """A template that cannot be compiled; the message says what is wrong and what was expected."""


class MissingPartitionField(Exception):
    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type


def java_to_strftime(fmt: str) -> str:
    out = []
    for token in _DATE_TOKEN.split(fmt):
        if not token:
            continue
        if token in _DATE_LETTERS:
            out.append(_DATE_LETTERS[token])
        elif token.isalpha():
            raise LayoutError(f"timestamp format {fmt!r}: unsupported letter {token!r} (use yyyy, MM, dd, HH, mm, ss)")
        else:
            out.append(token.replace("%", "%%"))
    return "".join(out)


def jq_path(query: str, where: str) -> tuple[str, ...]:
    """The field path of a Firehose-style JQ query: `.a.b`, `.a["b"]`, `.["a-b"].c`."""
    steps, pos = [], 0
    while pos < len(query):
        match = _JQ_STEP.match(query, pos)
        if match is None:
            break
        steps.append(match.group(1) or match.group(2))
        pos = match.end()
    if not steps or pos != len(query):
        raise LayoutError(f"{where}: {query!r} is not a field path query; eventweir reads the JQ subset "
                          '.a.b and .a["b"] (no pipes or functions)')
    return tuple(steps)


def random_string(topic: str, partition: int) -> str:
    """Firehose's `!{firehose:random-string}`: 11 characters, the same for a source partition every
    time, so that objects spread over prefixes and a replay still writes the same keys."""
    digest = hashlib.sha256(f"{topic}+{partition}".encode()).digest()
    return base64.b32encode(digest).decode()[:11].lower()


def sanitise(value) -> str:
    text = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    return _UNSAFE.sub("_", text)


def parse_time(value) -> datetime:
    """ISO 8601 string (the envelope's `time`) or epoch milliseconds, as an aware datetime."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str) and value:
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"expected an ISO 8601 time or epoch milliseconds, got {value!r}")


@dataclass(frozen=True)
class Part:
    kind: str  # "text", "field", "time" or "random" (filled in per source partition by the target)
    value: str  # literal text, the dotted field path, or the strftime format
    path: tuple[str, ...] = ()
    java: str = ""


@dataclass(frozen=True)
class PathTemplate:
    source: str
    parts: tuple[Part, ...]
    tz: ZoneInfo | timezone

    @property
    def time_granularity(self) -> int:
        """Seconds within which the rendered time cannot change (900: every zone offset is 15-minute aligned)."""
        java = "".join(p.java for p in self.parts if p.kind == "time")
        return 1 if "ss" in java else 60 if "mm" in java else 900

    def renderer(self, cache_size: int = 4096):
        """`render` with a cache keyed by the time bucket and field values: most of a batch shares a prefix."""
        cache: dict = {}
        fields = [p.path for p in self.parts if p.kind == "field"]
        step = self.time_granularity
        render = self.render

        if not fields:  # time-only templates (the common case): the key is the time bucket alone
            def cached_by_time(event: dict | None, when: datetime | None, ts: float | None = None) -> str:
                key = None if when is None else int(when.timestamp() if ts is None else ts) // step
                prefix = cache.get(key)
                if prefix is None:
                    prefix = render(event, when)
                    if len(cache) >= cache_size:
                        cache.clear()
                    cache[key] = prefix
                return prefix

            return cached_by_time

        def cached(event: dict | None, when: datetime | None, ts: float | None = None) -> str:
            values = tuple(get_path(event, path) if event is not None else None for path in fields)
            if any(isinstance(v, (dict, list)) for v in values):
                return render(event, when)  # unhashable: the uncached path raises the right error
            window = None if when is None else int(when.timestamp() if ts is None else ts) // step
            key = (window, tuple((v.__class__, v) for v in values))
            prefix = cache.get(key)
            if prefix is None:
                prefix = render(event, when)
                if len(cache) >= cache_size:
                    cache.clear()
                cache[key] = prefix
            return prefix

        return cached

    def render(self, event: dict | None, when: datetime | None) -> str:
        out = []
        for part in self.parts:
            if part.kind == "text" or part.kind == "random":
                out.append(part.value)
            elif part.kind == "time":
                if when is None:
                    raise MissingPartitionField("MissingTime", "the event has no readable time")
                out.append(when.astimezone(self.tz).strftime(part.value))
            else:
                value = get_path(event, part.path) if event is not None else None
                if value is None or value == "" or isinstance(value, (dict, list)):
                    raise MissingPartitionField(
                        "MissingPartitionField", f"partition field {part.value!r} is missing, empty or not a scalar"
                    )
                out.append(sanitise(value))
        return "".join(out)


def compile_template(template: str, tz_name: str = "UTC", allowed_fields: tuple[str, ...] | None = None,
                     partition_keys: Mapping[str, str] | None = None) -> PathTemplate:
    """Compile once at start-up. `allowed_fields` restricts `{name}` (the error prefix allows
    `error-type`); `partition_keys` are the queries `!{partitionKeyFromQuery:NAME}` names."""
    try:
        tz = UTC if tz_name.upper() == "UTC" else ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise LayoutError(f"unknown time zone {tz_name!r} (expected an IANA name such as UTC or Europe/Paris)") from None
    if template.startswith("/"):
        raise LayoutError(f"template {template!r} must not start with '/' (keys are relative to the bucket)")
    if _KAFKA_CONNECT.search(template):
        raise LayoutError(f"template {template!r} is in Kafka Connect's path.format syntax ('year'=YYYY); write "
                          "year=!{timestamp:yyyy}/month=!{timestamp:MM}/ (Firehose's, which the lake uses)")
    parts: list[Part] = []
    pos = 0
    for match in _TOKEN.finditer(template):
        if match.start() > pos:
            parts.append(Part("text", template[pos:match.start()]))
        if match.group(1) is not None:
            parts.append(_namespaced(template, match.group(1), match.group(2), allowed_fields, partition_keys or {}))
        else:
            name = match.group(3).strip()
            if not name or "{" in name:
                raise LayoutError(f"template {template!r}: empty or nested field reference")
            if allowed_fields is not None and name not in allowed_fields:
                raise LayoutError(f"template {template!r}: unknown placeholder {{{name}}} (allowed: {', '.join(allowed_fields)})")
            parts.append(Part("field", name, tuple(name.split("."))))
        pos = match.end()
    if pos < len(template):
        parts.append(Part("text", template[pos:]))
    leftover = "".join(p.value for p in parts if p.kind == "text")
    if "{" in leftover or "}" in leftover:
        raise LayoutError(f"template {template!r}: unbalanced braces (fields are {{a.b}}, times !{{timestamp:yyyy/MM}})")
    return PathTemplate(template, tuple(parts), tz)


def _namespaced(template: str, namespace: str, value: str, allowed_fields: tuple[str, ...] | None,
                partition_keys: Mapping[str, str]) -> Part:
    """A `!{namespace:value}` placeholder (Firehose's)."""
    if namespace == "timestamp":
        return Part("time", java_to_strftime(value), java=value)
    if namespace == "partitionKeyFromQuery":
        query = partition_keys.get(value)
        if query is None:
            raise LayoutError(f"template {template!r}: !{{partitionKeyFromQuery:{value}}} needs partition_keys.{value}, "
                              "the query it names (e.g. .detail.customer_id)")
        return Part("field", value, jq_path(query, f"partition_keys.{value}"))
    if namespace == "partitionKeyFromLambda":
        raise LayoutError(f"template {template!r}: !{{partitionKeyFromLambda:{value}}} needs a Firehose Lambda, which "
                          "eventweir does not run; name the field as {detail.x}, or with partition_keys and "
                          "!{partitionKeyFromQuery:name}")
    if namespace == "firehose" and value == "random-string":
        return Part("random", RANDOM_MARK)
    if namespace == "firehose" and value == "error-output-type" and allowed_fields and "error-type" in allowed_fields:
        return Part("field", "error-type", ("error-type",))
    raise LayoutError(f"template {template!r}: unsupported placeholder !{{{namespace}:{value}}} (supported: "
                      "!{timestamp:...}, !{partitionKeyFromQuery:...}, !{firehose:random-string}, and "
                      "!{firehose:error-output-type} in error_prefix)")


RECORDS_META = "eventweir-records"  # an object's metadata: how many records it holds (older objects lack it)
OBJECT_NAME = re.compile(r"(?P<topic>[^/+]+)\+(?P<partition>\d+)\+(?P<first>\d+)\.(?P<ext>[a-z.]+)$")


def parse_object_key(key: str) -> tuple[str, int, int, str] | None:
    """(topic, partition, first offset, extension) of a key object_key made, or None for another key."""
    found = OBJECT_NAME.search(key.rsplit("/", 1)[-1])
    if found is None:
        return None
    return found["topic"], int(found["partition"]), int(found["first"]), found["ext"]


def object_key(prefix: str, topic: str, partition: int, first_offset: int, ext: str) -> str:
    """`<prefix>/<topic>+<partition>+<first offset, zero padded>.<ext>` (Kafka Connect's naming)."""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return f"{prefix}{sanitise(topic)}+{partition}+{first_offset:0{OFFSET_DIGITS}d}.{ext}"
