"""The `timestream` target: Amazon Timestream for LiveAnalytics (WriteRecords).

Note: AWS closed Timestream for LiveAnalytics to new customers on 2025-06-20 and recommends
Timestream for InfluxDB (the `influxdb` target) for new deployments.

Each delivery maps to one MULTI record (every measure in one record, the default) or to one
record per measure (`measure_mode: single`), with dimensions and measures read from event paths
and an optional version path for upserts. Records go in requests of at most 100, with
CommonAttributes shrinking each request, and a bounded number of requests in flight. The
documented limits are checked before sending (moto does not check them), and RejectedRecords
are mapped back to their deliveries and dead-lettered with Reason and ExistingVersion.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from processors.paths import get_path, split_path
from streams import metrics
from streams.targets.backoff import Backoff, GaveUp
from streams.targets.base import Item, Target
from streams.targets.s3.layout import parse_time

log = logging.getLogger(__name__)

MAX_RECORDS_PER_REQUEST = 100
MAX_RECORD_BYTES = 2048
MAX_DIMENSIONS = 128
MAX_DIMENSION_NAME = 60
MAX_MEASURE_NAME = 256
MAX_MEASURES_PER_RECORD = 256
MAX_VALUE_BYTES = 2048
MAX_FUTURE_S = 15 * 60
_RESERVED = ("time", "measure_name", "measure_value")
_UNIT_PER_S = {"SECONDS": 1, "MILLISECONDS": 10**3, "MICROSECONDS": 10**6, "NANOSECONDS": 10**9}
_RETRYABLE = {"ThrottlingException", "InternalServerException", "ServiceUnavailableException", "RequestTimeout"}


class MeasureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=MAX_MEASURE_NAME)
    path: str
    type: Literal["DOUBLE", "BIGINT", "VARCHAR", "BOOLEAN", "TIMESTAMP"] = "DOUBLE"


class TimestreamSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database: str
    table: str
    region: str | None = None
    endpoint_url: str | None = None
    dimensions: dict[str, str] = Field(description="dimension name -> event path", min_length=1)
    measures: list[MeasureSpec] = Field(min_length=1, max_length=MAX_MEASURES_PER_RECORD)
    measure_mode: Literal["multi", "single"] = "multi"
    measure_name: str | None = Field(None, description="MeasureName of MULTI records (default: the table name).")
    time_path: str = "time"
    time_unit: Literal["SECONDS", "MILLISECONDS", "MICROSECONDS", "NANOSECONDS"] = Field(
        "MILLISECONDS", description="Unit of numeric event times, and of the Time sent.")
    version_path: str | None = Field(None, description="Event path of a version number for upserts.")
    max_age_s: float | None = Field(None, gt=0, description="Reject records older than this (the memory store retention).")
    max_concurrency: int = Field(4, ge=1, le=64)
    retry_initial_s: float = Field(0.2, gt=0)
    retry_max_s: float = Field(10.0, gt=0)
    give_up_after_s: float = Field(3600.0, gt=0)

    @model_validator(mode="after")
    def _check(self):
        if len(self.dimensions) > MAX_DIMENSIONS:
            raise ValueError(f"dimensions: at most {MAX_DIMENSIONS} per record")
        names = list(self.dimensions) + [m.name for m in self.measures]
        for name in names:
            lower = name.lower()
            if lower in _RESERVED or lower.startswith(("ts_", "measure_value")):
                raise ValueError(f"{name!r} is a reserved Timestream name")
        for name in self.dimensions:
            if not 1 <= len(name.encode()) <= MAX_DIMENSION_NAME:
                raise ValueError(f"dimension name {name!r}: 1 to {MAX_DIMENSION_NAME} bytes")
        if len(set(names)) != len(names):
            raise ValueError("dimension and measure names must all differ")
        for path in [self.time_path, self.version_path or "x", *self.dimensions.values(), *(m.path for m in self.measures)]:
            split_path(path)
        return self


class RecordError(ValueError):
    """One event breaks a documented Timestream limit; the message names the limit."""


class RecordMapper:
    def __init__(self, s: TimestreamSettings):
        self.dimensions = [(name, split_path(p)) for name, p in s.dimensions.items()]
        self.measures = [(m.name, split_path(m.path), m.type) for m in s.measures]
        self.time_path = split_path(s.time_path)
        self.version_path = split_path(s.version_path) if s.version_path else None
        self.unit = s.time_unit
        self.per_s = _UNIT_PER_S[s.time_unit]
        self.multi = s.measure_mode == "multi"
        self.measure_name = s.measure_name or s.table
        self.max_age_s = s.max_age_s

    def records(self, event: dict, now: float) -> list[dict]:
        dims = []
        for name, path in self.dimensions:
            value = get_path(event, path)
            if value is None or value == "":
                continue  # Timestream has no empty dimension values; an absent one is simply absent
            if isinstance(value, (dict, list)):
                raise RecordError(f"dimension {name!r}: expected a scalar, got {type(value).__name__}")
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            if len(text.encode()) > MAX_VALUE_BYTES:
                raise RecordError(f"dimension {name!r}: value longer than {MAX_VALUE_BYTES} bytes")
            dims.append({"Name": name, "Value": text, "DimensionValueType": "VARCHAR"})
        stamp = self._time(get_path(event, self.time_path), now)
        measures = []
        for name, path, kind in self.measures:
            value = get_path(event, path)
            if value is None:
                continue
            measures.append({"Name": name, "Value": self._value(name, value, kind), "Type": kind})
        if not measures:
            raise RecordError("no measure value present in the event (every measure path is missing)")
        base: dict[str, Any] = {"Dimensions": dims, "Time": str(stamp)}
        if self.version_path is not None:
            version = get_path(event, self.version_path)
            if isinstance(version, bool) or not isinstance(version, int) or version < 0:
                raise RecordError(f"version: expected a non-negative integer, got {version!r}")
            base["Version"] = version
        if self.multi:
            records = [dict(base, MeasureName=self.measure_name, MeasureValueType="MULTI", MeasureValues=measures)]
        else:
            records = [dict(base, MeasureName=m["Name"], MeasureValue=m["Value"], MeasureValueType=m["Type"])
                       for m in measures]
        for record in records:
            size = record_size(record)
            if size > MAX_RECORD_BYTES:
                raise RecordError(f"record is {size} bytes, over Timestream's {MAX_RECORD_BYTES}-byte limit")
        return records

    def _time(self, raw, now: float) -> int:
        if raw is None:
            raise RecordError(f"time: path {'.'.join(self.time_path)!r} is missing")
        if isinstance(raw, bool):
            raise RecordError(f"time: expected an ISO 8601 string or a number, got {raw!r}")
        if isinstance(raw, (int, float)):
            stamp = int(raw)
            seconds = stamp / self.per_s
        else:
            try:
                when = parse_time(raw)
            except (ValueError, TypeError) as exc:
                raise RecordError(f"time: {exc}") from None
            seconds = when.timestamp()
            whole = int(when.timestamp())
            stamp = whole * self.per_s + when.microsecond * self.per_s // 10**6
        if seconds > now + MAX_FUTURE_S:
            raise RecordError(f"time {raw!r} is more than 15 minutes in the future (Timestream rejects it)")
        if self.max_age_s is not None and seconds < now - self.max_age_s:
            raise RecordError(f"time {raw!r} is older than the memory store retention ({self.max_age_s:.0f}s)")
        return stamp

    @staticmethod
    def _value(name: str, value, kind: str) -> str:
        if kind == "DOUBLE":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RecordError(f"measure {name!r}: expected a number, got {value!r}")
            if not math.isfinite(value):
                raise RecordError(f"measure {name!r}: NaN and Infinity are not allowed")
            return repr(float(value))
        if kind in ("BIGINT", "TIMESTAMP"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise RecordError(f"measure {name!r}: expected an integer, got {value!r}")
            if not -(2**63) <= value < 2**63:
                raise RecordError(f"measure {name!r}: {value} does not fit BIGINT")
            return str(value)
        if kind == "BOOLEAN":
            if not isinstance(value, bool):
                raise RecordError(f"measure {name!r}: expected a boolean, got {value!r}")
            return "true" if value else "false"
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        if len(text.encode()) > MAX_VALUE_BYTES:
            raise RecordError(f"measure {name!r}: VARCHAR longer than {MAX_VALUE_BYTES} bytes")
        return text


def record_size(record: dict) -> int:
    """Bytes Timestream bills and limits: names and values of dimensions and measures, plus the time."""
    size = 8 + len(record["MeasureName"].encode())
    for d in record["Dimensions"]:
        size += len(d["Name"].encode()) + len(d["Value"].encode())
    for m in record.get("MeasureValues", ()):
        size += len(m["Name"].encode()) + len(m["Value"].encode())
    if "MeasureValue" in record:
        size += len(record["MeasureValue"].encode())
    return size


def common_attributes(records: list[dict], unit: str) -> tuple[dict, list[dict]]:
    """Hoist what every record shares (time unit, dimensions, measure name and type) into CommonAttributes."""
    common: dict = {"TimeUnit": unit}
    first = records[0]
    shared = [k for k in ("Dimensions", "MeasureName", "MeasureValueType")
              if k in first and all(r.get(k) == first[k] for r in records)]
    for key in shared:
        common[key] = first[key]
    if not shared:
        return common, records
    return common, [{k: v for k, v in r.items() if k not in shared} for r in records]


class TimestreamTarget(Target):
    kind = "timestream"

    def __init__(self, target_id: str, settings: TimestreamSettings, max_in_flight: int, dead_letters, client=None):
        super().__init__(target_id, max_in_flight, dead_letters)
        self.settings = s = settings
        self.mapper = RecordMapper(s)
        self.backoff = Backoff(target_id, s.retry_initial_s, s.retry_max_s, s.give_up_after_s)
        self._pool = ThreadPoolExecutor(max_workers=s.max_concurrency, thread_name_prefix=f"ts-{target_id}")
        self._slots = asyncio.Semaphore(s.max_concurrency)
        self._client = client
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        if self._client is None:
            import boto3
            from botocore.config import Config as BotoConfig

            s = self.settings
            self._client = boto3.client(
                "timestream-write", region_name=s.region, endpoint_url=s.endpoint_url,
                config=BotoConfig(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=20,
                                  max_pool_connections=s.max_concurrency * 2),
            )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def write(self, items: list[Item]) -> None:
        now = time.time()
        chunk: list[dict] = []
        owners: list[int] = []  # owners[i]: index in chunk_items of the item record i came from
        chunk_items: list[Item] = []
        for item in items:
            delivery = item[0]
            try:
                event = delivery.event if delivery.event is not None else orjson.loads(delivery.payload)
                if not isinstance(event, dict):
                    raise RecordError(f"expected a JSON object, got {type(event).__name__}")
                mapped = self.mapper.records(event, now)
                if len(mapped) > MAX_RECORDS_PER_REQUEST:
                    raise RecordError(f"{len(mapped)} single-measure records; use measure_mode: multi")
            except (RecordError, orjson.JSONDecodeError) as exc:
                metrics.SINK_REJECTED.labels(self.id, "LimitViolation").inc()
                self.fail([item], "TimestreamLimit", str(exc))
                continue
            # requests of at most 100 records; an item's records never straddle two requests
            if len(chunk) + len(mapped) > MAX_RECORDS_PER_REQUEST:
                self._spawn(chunk, owners, chunk_items)
                chunk, owners, chunk_items = [], [], []
            chunk.extend(mapped)
            owners.extend([len(chunk_items)] * len(mapped))
            chunk_items.append(item)
        if chunk:
            self._spawn(chunk, owners, chunk_items)

    def _spawn(self, records: list[dict], owners: list[int], items: list[Item]) -> None:
        task = asyncio.create_task(self._send(records, owners, items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, records: list[dict], owners: list[int], items: list[Item]) -> None:
        common, trimmed = common_attributes(records, self.settings.time_unit)
        s = self.settings
        call = lambda: asyncio.get_running_loop().run_in_executor(  # noqa: E731
            self._pool, lambda: self._client.write_records(
                DatabaseName=s.database, TableName=s.table, CommonAttributes=common, Records=trimmed))
        async with self._slots:
            try:
                await self.backoff.run("write-records", call, _retryable)
            except GaveUp as exc:
                self.fail(items, "TimestreamWriteFailed", str(exc))
                return
            except Exception as exc:
                rejected = _rejected(exc)
                if rejected is None:
                    self.fail(items, _code(exc) or type(exc).__name__, str(exc)[:500])
                    return
                self._rejected(rejected, owners, items)
                return
        self.settle(items)

    def _rejected(self, rejected: list[dict], owners: list[int], items: list[Item]) -> None:
        """Timestream wrote every record it did not reject: settle those, dead-letter the rest."""
        reasons: dict[int, str] = {}
        for r in rejected:
            owner = owners[r["RecordIndex"]]
            reason = r.get("Reason", "rejected")
            if r.get("ExistingVersion") is not None:
                reason += f" (ExistingVersion {r['ExistingVersion']})"
            reasons[owner] = reason
            metrics.SINK_REJECTED.labels(self.id, "RejectedRecord").inc()
        for owner, reason in reasons.items():
            self.fail([items[owner]], "TimestreamRejected", reason)
        good = [item for i, item in enumerate(items) if i not in reasons]
        if good:
            self.settle(good)


def _code(exc) -> str | None:
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def _rejected(exc) -> list[dict] | None:
    if _code(exc) == "RejectedRecordsException":
        return exc.response.get("RejectedRecords", [])
    return None


def _retryable(exc) -> bool:
    from botocore.exceptions import BotoCoreError

    return _code(exc) in _RETRYABLE or isinstance(exc, BotoCoreError)


Settings = TimestreamSettings


def build(context, name: str, settings: TimestreamSettings) -> TimestreamTarget:
    return TimestreamTarget(name, settings, context.max_in_flight, context.dead_letters)
