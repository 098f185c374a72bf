"""The `influxdb` target: line protocol over HTTP to Timestream for InfluxDB or any InfluxDB.

Each delivery becomes one point (measurement, tags and fields taken from event paths, event time
in nanoseconds). Points are sent in gzip-compressed batches to the v2 API (`/api/v2/write`, org,
bucket, token) or the v1 API (`/write`, db, retention policy), with bounded concurrency. A 2xx
settles the batch; a partial write settles the lines InfluxDB took and dead-letters each line it
names, with its reason; 5xx, 429 and connection errors are retried with back-off.
"""
from __future__ import annotations

import asyncio
import gzip
import logging
import re
from typing import Literal

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from processors.paths import get_path, split_path
from streams import metrics
from streams.config import ConfigError
from streams.targets.backoff import Backoff, GaveUp
from streams.targets.base import Item, Target
from streams.targets.influxdb.lineprotocol import PointError, encode_point, infer_kind
from streams.targets.s3.layout import parse_time

log = logging.getLogger(__name__)

_UNABLE = re.compile(r"unable to parse '((?:[^'\\]|\\.)*)': ([^;\n]*?)(?=(?:; |\"|$| unable to parse '))")
_CONFLICT = re.compile(r'field type conflict: input field \\?"([^"\\]+)\\?" on measurement \\?"([^"\\]+)\\?" is type (\w+)')
_TIME_UNITS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str
    type: Literal["float", "integer", "string", "boolean", "auto"] = "auto"


class InfluxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="http(s)://host:8086")
    api: Literal["v1", "v2"] = "v2"
    org: str | None = None
    bucket: str | None = None
    token: str | None = None
    token_env: str | None = Field(None, description="Read the token from this environment variable instead.")
    database: str | None = None
    retention_policy: str | None = None
    username: str | None = None
    password: str | None = None
    measurement: str | None = Field(None, description="Fixed measurement name (or measurement_path).")
    measurement_path: str | None = None
    tags: dict[str, str] = Field(default_factory=dict, description="tag name -> event path")
    fields: dict[str, str | FieldSpec] = Field(description="field name -> event path, or {path, type}")
    time_path: str = "time"
    time_unit: Literal["s", "ms", "us", "ns"] = Field("ms", description="Unit of numeric event times.")
    batch_lines: int = Field(5000, ge=1, le=100_000)
    gzip: bool = True
    max_concurrency: int = Field(4, ge=1, le=64)
    timeout_s: float = Field(10.0, gt=0)
    retry_initial_s: float = Field(0.2, gt=0)
    retry_max_s: float = Field(10.0, gt=0)
    give_up_after_s: float = Field(3600.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check(self):
        if self.api == "v2" and not (self.org and self.bucket):
            raise ValueError("api v2 needs `org` and `bucket` (and usually `token`)")
        if self.api == "v1" and not self.database:
            raise ValueError("api v1 needs `database`")
        if bool(self.measurement) == bool(self.measurement_path):
            raise ValueError("give exactly one of `measurement` or `measurement_path`")
        if not self.fields:
            raise ValueError("fields: at least one field is needed")
        for path in [self.time_path, self.measurement_path or "x", *self.tags.values(),
                     *(f if isinstance(f, str) else f.path for f in self.fields.values())]:
            split_path(path)
        return self


class PointMapper:
    """Event dict -> one line of line protocol. Paths are split once, at start-up."""

    def __init__(self, s: InfluxSettings):
        self.measurement: str = s.measurement or ""  # "" when measurement_path gives it per event
        self.measurement_path = split_path(s.measurement_path) if s.measurement_path else None
        self.tags = [(name, split_path(p)) for name, p in s.tags.items()]
        self.fields = [
            (name, split_path(spec if isinstance(spec, str) else spec.path),
             "auto" if isinstance(spec, str) else spec.type)
            for name, spec in s.fields.items()
        ]
        self.time_path = split_path(s.time_path)
        self.time_scale = _TIME_UNITS[s.time_unit]

    def line(self, event: dict) -> str:
        measurement = self.measurement
        if self.measurement_path is not None:
            measurement = get_path(event, self.measurement_path)
            if not isinstance(measurement, str):
                raise PointError(f"measurement path {'.'.join(self.measurement_path)!r} is missing or not a string")
        tags: dict[str, str | None] = {}
        for name, path in self.tags:
            value = get_path(event, path)
            if isinstance(value, (dict, list)):
                raise PointError(f"tag {name!r}: expected a scalar, got {type(value).__name__}")
            tags[name] = value if isinstance(value, str) or value is None else orjson.dumps(value).decode()
        fields = []
        for name, path, kind in self.fields:
            value = get_path(event, path)
            if value is None:
                continue  # an absent field is simply not written for this point
            fields.append((name, value, infer_kind(value) if kind == "auto" else kind))
        return encode_point(measurement, tags, fields, self.time_ns(get_path(event, self.time_path)))

    def time_ns(self, raw) -> int | None:
        if raw is None:
            return None  # InfluxDB stamps the point with its own clock
        if isinstance(raw, bool):
            raise PointError(f"time: expected an ISO 8601 string or a number, got {raw!r}")
        if isinstance(raw, (int, float)):
            return int(raw * self.time_scale)
        try:
            when = parse_time(raw)
        except (ValueError, TypeError) as exc:
            raise PointError(f"time: {exc}") from None
        return int(when.timestamp()) * 10**9 + when.microsecond * 1000


class InfluxTarget(Target):
    kind = "influxdb"

    def __init__(self, target_id: str, settings: InfluxSettings, max_in_flight: int, dead_letters):
        super().__init__(target_id, max_in_flight, dead_letters)
        self.settings = s = settings
        self.mapper = PointMapper(s)
        self.backoff = Backoff(target_id, s.retry_initial_s, s.retry_max_s, s.give_up_after_s)
        self._slots = asyncio.Semaphore(s.max_concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task] = set()
        if s.api == "v2":
            self.endpoint = f"{s.url}/api/v2/write"
            assert s.org is not None and s.bucket is not None, "InfluxSettings checks v2 has both"
            self.params: dict[str, str] = {"org": s.org, "bucket": s.bucket, "precision": "ns"}
            token = s.token
            if s.token_env:
                import os

                token = os.environ.get(s.token_env)
                if not token:
                    raise ConfigError(f"target {target_id}: environment variable {s.token_env} (token_env) is not set")
            self.headers = {"Authorization": f"Token {token}"} if token else {}
        else:
            self.endpoint = f"{s.url}/write"
            assert s.database is not None, "InfluxSettings checks v1 has it"
            self.params = {"db": s.database, "precision": "ns"}
            if s.retention_policy:
                self.params["rp"] = s.retention_policy
            if s.username:
                self.params.update(u=s.username, p=s.password or "")
            self.headers = {}
        self.headers["Content-Type"] = "text/plain; charset=utf-8"
        if s.gzip:
            self.headers["Content-Encoding"] = "gzip"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session:
            await self._session.close()

    def write(self, items: list[Item]) -> None:
        lines, kept = [], []
        for item in items:
            delivery = item[0]
            try:
                event = delivery.event if delivery.event is not None else orjson.loads(delivery.payload)
                if not isinstance(event, dict):
                    raise PointError(f"expected a JSON object, got {type(event).__name__}")
                lines.append(self.mapper.line(event))
                kept.append(item)
            except (PointError, orjson.JSONDecodeError) as exc:
                metrics.SINK_REJECTED.labels(self.id, "InvalidPoint").inc()
                self.fail([item], "InvalidPoint", str(exc))
        step = self.settings.batch_lines
        for i in range(0, len(lines), step):
            task = asyncio.create_task(self._send(lines[i:i + step], kept[i:i + step]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, lines: list[str], items: list[Item]) -> None:
        async with self._slots:
            body = "\n".join(lines).encode()
            if self.settings.gzip:
                body = await asyncio.to_thread(gzip.compress, body, 6, mtime=0)
            try:
                status, text = await self.backoff.run("write", lambda: self._post(body), _retryable)
            except GaveUp as exc:
                self.fail(items, "InfluxWriteFailed", str(exc))
                return
            except _Rejected as exc:
                status, text = exc.status, exc.text
            if 200 <= status < 300:
                self.settle(items)
                return
            self._partial(status, text, lines, items)

    async def _post(self, body: bytes) -> tuple[int, str]:
        session = self._session
        assert session is not None, "start() opens the session"
        async with session.post(self.endpoint, params=self.params, data=body, headers=self.headers) as resp:
            text = await resp.text()
            if resp.status >= 500 or resp.status == 429:
                raise _Retry(f"HTTP {resp.status}: {text[:200]}")
            if resp.status >= 400:
                raise _Rejected(resp.status, text)
            return resp.status, text

    def _partial(self, status: int, text: str, lines: list[str], items: list[Item]) -> None:
        """Map InfluxDB's error back to lines: the named ones are dead-lettered, the rest were written."""
        try:
            message = orjson.loads(text).get("error") or orjson.loads(text).get("message") or text
        except (orjson.JSONDecodeError, AttributeError):
            message = text
        bad: dict[int, str] = {}
        if "unable to parse" in message or "field type conflict" in message:
            index = {line: i for i, line in enumerate(lines)}
            for match in _UNABLE.finditer(message):
                line = match.group(1).replace("\\'", "'")
                i = index.get(line)
                if i is None:  # InfluxDB may quote a truncated or unescaped copy: match by prefix
                    i = next((j for j, cand in enumerate(lines) if cand.startswith(line[:60])), None)
                if i is not None:
                    bad[i] = f"unable to parse: {match.group(2).strip()}"
            for match in _CONFLICT.finditer(message):
                field, measurement, kind = match.groups()
                for i, line in enumerate(lines):
                    if _line_has_field(line, measurement, field, kind):
                        bad[i] = f"field type conflict: {field!r} on {measurement!r} is not {kind}"
        if not bad:
            # the error names no line we can find: every point in the batch carries it
            self.fail(items, f"Influx{status}", message[:500])
            return
        self.fail([items[i] for i in sorted(bad)], "InfluxPartialWrite", "; ".join(sorted(set(bad.values())))[:500])
        metrics.SINK_REJECTED.labels(self.id, "PartialWrite").inc(len(bad))
        good = [item for i, item in enumerate(items) if i not in bad]
        if good:
            self.settle(good)


def _unescaped_space(line: str, start: int = 0) -> int:
    i, quoted = start, False
    while i < len(line):
        ch = line[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == " " and not quoted:
            return i
        i += 1
    return -1


def _line_has_field(line: str, measurement: str, field: str, kind: str) -> bool:
    """Does this line write `field` of type `kind` to `measurement` (the subject of a type conflict)?"""
    head_end = _unescaped_space(line)
    head = line[:head_end]
    escaped = measurement.replace(",", r"\,").replace(" ", r"\ ")
    if head != escaped and not head.startswith(escaped + ","):
        return False
    fields_end = _unescaped_space(line, head_end + 1)
    fields = line[head_end + 1:fields_end if fields_end > 0 else None]
    marker = field.replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ") + "="
    pos = 0 if fields.startswith(marker) else fields.find("," + marker) + 1
    if pos == 0 and not fields.startswith(marker):
        return False
    value = fields[pos + len(marker):]
    actual = ("string" if value.startswith('"') else "boolean" if value.split(",", 1)[0] in ("true", "false")
              else "integer" if value.split(",", 1)[0].endswith("i") else "float")
    return actual == kind


class _Retry(Exception):
    pass


class _Rejected(Exception):
    def __init__(self, status: int, text: str):
        super().__init__(f"HTTP {status}: {text[:200]}")
        self.status = status
        self.text = text


def _retryable(exc: Exception) -> bool:
    return isinstance(exc, (_Retry, aiohttp.ClientConnectionError, asyncio.TimeoutError))


Settings = InfluxSettings


def build(context, name: str, settings: InfluxSettings) -> InfluxTarget:
    return InfluxTarget(name, settings, context.max_in_flight, context.dead_letters)
