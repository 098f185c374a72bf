"""The `s3` target: a data lake of exactly-once objects on S3 (or a local directory, `file://`).

How exactly-once holds (Kafka Connect's S3 sink design, extended for wall-clock flushes):

- Records are buffered per source partition in a *segment*: a run of offsets that is rotated as a
  whole (by record count, payload bytes, or record time) — deterministic, so a replay from the
  same offset cuts the same segments. A segment becomes one object per output prefix, keyed
  `<prefix>/<topic>+<partition>+<first offset>.<ext>`: a replay rewrites the same keys.
- Every put is conditional (If-None-Match: *) and carries the segment's bounds in its metadata.
  The object holding the segment's first record is written first; if it already exists, an earlier
  attempt (before a crash) got there first, and its recorded end becomes this segment's end: a
  shorter earlier segment (cut by a wall-clock flush or a shutdown) splits ours, a longer one
  keeps ours open until its end. So flushes at arbitrary times stay exactly-once.
- After a segment's objects are all complete, a small progress marker per partition records its
  end, and only then are its records settled (so the offset can be committed). A worker that
  takes over a partition reads the marker and skips records already in the lake, which matters
  when another target held the group's committed offset back.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from processors.paths import get_path, split_path
from streams import metrics
from streams.targets.backoff import Backoff, GaveUp
from streams.targets.base import Item, Target
from streams.targets.hops import most_hops
from streams.targets.s3.formats import load_json_schema, make_encoder
from streams.targets.s3.layout import (
    RANDOM_MARK,
    RECORDS_META,
    LayoutError,
    MissingPartitionField,
    compile_template,
    object_key,
    parse_time,
    random_string,
    sanitise,
)
from streams.targets.s3.objectstore import MIN_PART_SIZE, ObjectStore, open_store
from streams.targets.s3.windowing import EventTimeObjects

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "source={source}/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/"


class S3Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str | None = Field(None, description="S3 bucket (or give `url`).")
    url: str | None = Field(None, description="s3://bucket or file:///directory (a local lake, for the demo).")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, moto); default AWS.")
    region: str | None = None
    prefix: str = Field(DEFAULT_PREFIX, description="Path template: {field.path}, !{timestamp:yyyy/MM/dd}.")
    error_prefix: str = Field("errors/{error-type}/!{timestamp:yyyy/MM/dd}/",
                              description="Where records with missing partition fields go; time = arrival.")
    time_field: str = Field("time", description="Event field holding the event time (ISO 8601 or epoch ms).")
    timezone: str = "UTC"
    format: Literal["jsonl", "parquet"] = "jsonl"
    compression: Literal["none", "gzip", "zstd", "snappy"] | None = Field(
        None, description="jsonl: none, gzip (default), zstd; parquet: zstd (default), snappy, gzip, none.")
    schema_: str | dict[str, Any] | None = Field(
        None, alias="schema", description="JSON Schema (file path or inline) of the records: Parquet columns, DDL.")
    row_group_rows: int = Field(65536, ge=1000)
    flush_size: int = Field(10_000, ge=1, description="Rotate a partition's segment after this many records.")
    max_object_bytes: int = Field(64 << 20, ge=1024, description="Rotate after this many payload bytes.")
    rotate_interval_s: float | None = Field(
        None, gt=0, description="Rotate when a record's event time is this far past the segment's first.")
    flush_interval_s: float | None = Field(
        60.0, gt=0, description="Wall-clock flush of quiet partitions (conditional puts keep it exactly-once).")
    part_size: int = Field(8 << 20, ge=MIN_PART_SIZE, description="Multipart upload part size (>= 5 MiB).")
    max_parallel_parts: int = Field(4, ge=1, le=64)
    max_concurrency: int = Field(8, ge=1, le=64, description="Threads for blocking S3 calls and encoding.")
    sse: Literal["AES256", "aws:kms"] = "AES256"
    kms_key_id: str | None = None
    object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] | None = Field(
        None, description="S3 Object Lock: write each object with this retention mode, until object_lock_days after "
        "the write (the bucket must have been created with Object Lock enabled). COMPLIANCE: no one can delete or "
        "overwrite a version before then; GOVERNANCE: only with s3:BypassGovernanceRetention.")
    object_lock_days: int = Field(0, ge=0, description="Object Lock retention in days (with object_lock_mode).")
    state_prefix: str = Field("_eventweir/progress/", description="Per-partition progress markers.")
    retry_initial_s: float = Field(0.2, gt=0)
    retry_max_s: float = Field(10.0, gt=0)
    give_up_after_s: float = Field(3600.0, gt=0, description="Dead-letter a segment after retrying this long.")
    partition_keys: dict[str, str] = Field(
        default_factory=dict, description="Firehose-style dynamic partitioning: {name: query} for "
        "!{partitionKeyFromQuery:name} in `prefix`, queries in the JQ subset .a.b and .a[\"b\"].")
    event_time: EventTimeObjects | None = Field(None, description=(
        "Name objects by key and event-time window instead of offsets (README: event-time lake objects)."))
    table: str | None = Field(None, description="Table (DuckDB: view) name for `eventweir lake ddl`.")
    database: str = "eventweir"

    @model_validator(mode="after")
    def _check(self):
        if bool(self.bucket) == bool(self.url):
            raise ValueError("an s3 target needs exactly one of `bucket` or `url` (s3://bucket or file:///dir)")
        if self.url and not self.url.startswith(("s3://", "file://")):
            raise ValueError(f"url: expected s3://bucket or file:///directory, got {self.url!r}")
        try:
            split_path(self.time_field)
        except ValueError as exc:
            raise ValueError(f"time_field: {exc}") from None
        if self.kms_key_id and self.sse != "aws:kms":
            raise ValueError("kms_key_id needs sse: aws:kms")
        if self.object_lock_mode and (self.object_lock_days < 1 or self.lake_url.startswith("file://")):
            raise ValueError("object_lock_mode needs object_lock_days of 1 or more and an S3 bucket (not file://)")
        comp = self.compression
        if self.format == "jsonl" and comp == "snappy":
            raise ValueError("compression: jsonl supports none, gzip or zstd")
        for name in ("prefix", "error_prefix"):
            try:
                compile_template(getattr(self, name), self.timezone,
                                 ("error-type",) if name == "error_prefix" else None, self.partition_keys)
            except LayoutError as exc:
                raise ValueError(f"{name}: {exc}") from None
        if self.schema_ is not None:
            try:
                from streams.targets.s3.formats import arrow_schema

                arrow_schema(load_json_schema(self.schema_))
            except ValueError as exc:
                raise ValueError(f"schema: {exc}") from None
        return self

    @field_validator("state_prefix")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @property
    def lake_url(self) -> str:
        return self.url or f"s3://{self.bucket}"

    @property
    def codec(self) -> str:
        if self.compression:
            return self.compression
        return "gzip" if self.format == "jsonl" else "zstd"


class _Segment:
    __slots__ = ("start", "end", "entries", "bytes", "base_time", "opened")

    def __init__(self, start: int):
        self.start = start
        self.end = start
        self.entries: list[tuple] = []  # (offset, prefix, payload, item, event_time_ms)
        self.bytes = 0
        self.base_time: float | None = None
        self.opened = time.monotonic()


class _Partition:
    def __init__(self) -> None:
        self.loaded = False
        self.loading: asyncio.Task | None = None
        self.pending: list[Item] = []  # arrived before the progress marker was read
        self.durable_upto = -1  # records at or below this offset are already in the lake
        self.segment: _Segment | None = None
        self.force_end: int | None = None  # an earlier attempt's segment end we must reproduce
        self.lock = asyncio.Lock()  # one segment write at a time, in order


class S3Target(Target):
    kind = "s3"

    def __init__(self, target_id: str, settings: S3Settings, max_in_flight: int, dead_letters,
                 store: ObjectStore | None = None,
                 on_object: Callable[[dict, int], Awaitable[None] | None] | None = None):
        super().__init__(target_id, max_in_flight, dead_letters)
        self.settings = s = settings
        # called with an "Object Created" event per object this sink created, and its hop count
        # (streams/targets/hops.py): one more than the most any record in the object made
        self.on_object = on_object
        self.store = store or open_store(
            s.lake_url, endpoint_url=s.endpoint_url, region=s.region, sse=s.sse, kms_key_id=s.kms_key_id,
            part_size=s.part_size, max_parallel_parts=s.max_parallel_parts,
        )
        self.template = compile_template(s.prefix, s.timezone, partition_keys=s.partition_keys)
        self._random = any(p.kind == "random" for p in self.template.parts)
        self._render = self.template.renderer()
        self.error_template = compile_template(s.error_prefix, s.timezone, ("error-type",))
        self.encoder = make_encoder(s.format, s.codec,
                                    load_json_schema(s.schema_) if s.schema_ is not None else None, s.row_group_rows)
        self.time_path = split_path(s.time_field)
        self.needs_event = any(p.kind != "text" for p in self.template.parts) or s.rotate_interval_s is not None
        self.partitions: dict[tuple[str, int], _Partition] = {}
        self.backoff = Backoff(target_id, s.retry_initial_s, s.retry_max_s, s.give_up_after_s)
        # the objects are written by then: their events are retried until the bus takes them, never
        # dead-lettered with records that are in the lake
        self.publish_backoff = Backoff(target_id, s.retry_initial_s, s.retry_max_s, give_up_after_s=float("inf"))
        self._pool = ThreadPoolExecutor(max_workers=s.max_concurrency, thread_name_prefix=f"s3-{target_id}")
        self._tasks: set[asyncio.Task] = set()
        self._ticker: asyncio.Task | None = None
        self._buffered = 0
        self._buffered_gauge = metrics.SINK_BUFFERED.labels(target_id)
        self._marker_base = f"{s.state_prefix}{sanitise(target_id)}/"

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._run(self.store.check)  # a missing bucket fails the start, not the first flush
        interval = self.settings.flush_interval_s
        if interval:
            self._ticker = asyncio.create_task(self._tick(interval), name=f"target-{self.id}-flush")

    async def close(self) -> None:
        if self._ticker:
            self._ticker.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *( [self._ticker] if self._ticker else []), return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    async def flush(self, timeout: float | None = None) -> bool:
        """Close every open segment and wait until all of them are complete (revoke, shutdown)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.in_flight > 0:
            for tp, state in self.partitions.items():
                if state.segment is not None and state.force_end is None:
                    self._close(tp, state)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            held_open = sum(len(st.segment.entries) for st in self.partitions.values()
                            if st.segment is not None and st.force_end is not None and not st.lock.locked())
            if held_open and held_open >= self.in_flight:
                return False  # only segments waiting for an earlier attempt's end remain: they cannot finish now
            try:  # wake when idle, or soon anyway to close segments opened by late marker loads
                await asyncio.wait_for(self._idle.wait(), 0.05 if remaining is None else min(0.05, remaining))
            except TimeoutError:
                pass
        # forget idle partitions: a later assignment re-reads the progress marker, which another
        # worker may have moved on in the meantime
        for tp in list(self.partitions):
            state = self.partitions[tp]
            if state.loaded and state.segment is None and not state.pending and not state.lock.locked():
                del self.partitions[tp]
        return True

    def revoked(self, partitions: set[tuple[str, int]]) -> None:
        """Records still buffered for a revoked partition were not committed: its new owner re-reads
        them. Release them here so the in-flight count (and the back-pressure it drives) stays true."""
        for tp in partitions:
            state = self.partitions.pop(tp, None)
            if state is None:
                continue
            held = list(state.pending)
            if state.segment is not None:
                held += [e[3] for e in state.segment.entries]
                self._buffered -= len(state.segment.entries)
            if held:
                self.settle(held, "revoked")
        self._buffered_gauge.set(self._buffered)

    # --- intake ---------------------------------------------------------------------------------
    def write(self, items: list[Item]) -> None:
        by_tp: dict[tuple[str, int], list[Item]] = {}
        for item in items:
            record = item[0].record
            by_tp.setdefault((record.topic, record.partition), []).append(item)
        for tp, chunk in by_tp.items():
            state = self.partitions.get(tp)
            if state is None:
                state = self.partitions[tp] = _Partition()
            if not state.loaded:
                state.pending.extend(chunk)
                if state.loading is None:
                    state.loading = self._spawn(self._load(tp, state))
                continue
            self._intake(tp, state, chunk)

    async def _load(self, tp, state: _Partition) -> None:
        key = f"{self._marker_base}{sanitise(tp[0])}+{tp[1]}.json"
        body = await self.backoff.run("get-progress", lambda: self._run(self.store.get, key))
        if body:
            state.durable_upto = int(orjson.loads(body)["end"])
        state.loaded = True
        pending, state.pending = state.pending, []
        self._intake(tp, state, pending)

    def _intake(self, tp, state: _Partition, items: list[Item]) -> None:
        already = []
        entries = []
        for item in items:
            delivery = item[0]
            offset = delivery.record.offset
            if offset <= state.durable_upto:
                already.append(item)  # in the lake already (an earlier owner wrote it)
                continue
            try:
                entries.append(self._entry(delivery, item))
            except ValueError as exc:
                self.fail([item], "InvalidPayload", str(exc))
        if already:
            self.settle(already)
        self._append(tp, state, entries)

    def _entry(self, delivery, item) -> tuple:
        payload = delivery.payload
        if not isinstance(payload, bytes):
            payload = orjson.dumps(payload)
        elif b"\n" in payload:  # one record per line: re-serialise pretty-printed JSON
            try:
                payload = orjson.dumps(orjson.loads(payload))
            except orjson.JSONDecodeError:
                raise ValueError("payload spans several lines and is not JSON") from None
        event = None
        if self.needs_event:
            event = delivery.event
            if event is None:
                try:
                    event = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    event = None
        when = ts = None
        if event.__class__ is dict:
            raw = get_path(event, self.time_path)
            if raw is not None:
                try:
                    when = parse_time(raw)
                    ts = when.timestamp()
                except (ValueError, TypeError, OverflowError):
                    when = None
        else:
            event = None
        try:
            prefix = self._render(event, when, ts)
            if self._random:
                prefix = prefix.replace(RANDOM_MARK, random_string(delivery.record.topic, delivery.record.partition))
        except MissingPartitionField as exc:
            arrival = datetime.fromtimestamp(delivery.record.timestamp_ms / 1000, UTC)
            prefix = self.error_template.render({"error-type": exc.error_type}, arrival)
            metrics.SINK_REJECTED.labels(self.id, exc.error_type).inc()
        return (delivery.record.offset, prefix, payload, item, ts)

    def _append(self, tp, state: _Partition, entries: list[tuple]) -> None:
        s = self.settings
        for entry in entries:
            offset, _, payload, _, event_time = entry
            seg = state.segment
            if seg is not None and state.force_end is not None and offset > state.force_end:
                self._close(tp, state)  # the earlier attempt ended here; so do we
                seg = None
            if seg is not None and s.rotate_interval_s and event_time is not None and seg.base_time is not None \
                    and event_time - seg.base_time >= s.rotate_interval_s and state.force_end is None:
                self._close(tp, state)
                seg = None
            if seg is None:
                seg = state.segment = _Segment(offset)
            if seg.base_time is None:
                seg.base_time = event_time
            seg.entries.append(entry)
            seg.end = offset
            seg.bytes += len(payload)
            self._buffered += 1
            if state.force_end is not None:
                if offset >= state.force_end:
                    self._close(tp, state)
            elif len(seg.entries) >= s.flush_size or seg.bytes >= s.max_object_bytes:
                self._close(tp, state)
        self._buffered_gauge.set(self._buffered)

    def _close(self, tp, state: _Partition) -> None:
        seg, state.segment = state.segment, None
        if seg is None or not seg.entries:
            return
        state.force_end = None
        self._buffered -= len(seg.entries)
        self._buffered_gauge.set(self._buffered)
        self._spawn(self._write_segment(tp, state, seg))

    async def _tick(self, interval: float) -> None:
        while True:
            await asyncio.sleep(min(1.0, interval / 4))
            now = time.monotonic()
            for tp, state in list(self.partitions.items()):
                seg = state.segment
                if seg is not None and state.force_end is None and now - seg.opened >= interval:
                    self._close(tp, state)

    # --- output ---------------------------------------------------------------------------------
    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("target %s: background task failed", self.id, exc_info=task.exception())

    def _run(self, fn, *args):
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _objects(self, tp, seg: _Segment) -> list[tuple[str, list[tuple]]]:
        groups: dict[str, list[tuple]] = {}
        for entry in seg.entries:
            groups.setdefault(entry[1], []).append(entry)
        ext = self.encoder.ext
        return sorted(((object_key(prefix, tp[0], tp[1], group[0][0], ext), group) for prefix, group in groups.items()),
                      key=lambda kv: kv[1][0][0])

    def _encode_put(self, key: str, group: list[tuple], meta: dict, conditional: bool = True):
        encoded = self.encoder.encode([e[2] for e in group])
        # how many records the object holds, for readers that count without reading it (DescribeArchive)
        meta = {**meta, RECORDS_META: str(len(group) - len(encoded.rejected))}
        enc = self.encoder
        lock = None
        if self.settings.object_lock_mode:  # from the write: the object is kept at least that long after it exists
            lock = (self.settings.object_lock_mode, datetime.now(UTC) + timedelta(days=self.settings.object_lock_days))
        result = self.store.put(key, encoded.body, meta, if_none_match=conditional,
                                content_type=enc.content_type, content_encoding=enc.content_encoding, lock=lock)
        return result, encoded.rejected

    async def _write_segment(self, tp, state: _Partition, seg: _Segment) -> None:
        async with state.lock:
            try:
                await self._write_locked(tp, state, seg)
            except GaveUp as exc:
                self.fail([e[3] for e in seg.entries], "S3WriteFailed", str(exc))

    async def _write_locked(self, tp, state: _Partition, seg: _Segment) -> None:
        objects = self._objects(tp, seg)
        meta = {"eventweir-segment-start": str(seg.start), "eventweir-segment-end": str(seg.end),
                "eventweir-topic": tp[0], "eventweir-partition": str(tp[1]), "eventweir-target": self.id}
        first_key, first_group = objects[0]
        result, rejected = await self.backoff.run(
            "put-object", lambda: self._run(self._encode_put, first_key, first_group, meta))
        done = [(first_key, first_group, result, rejected)]
        if not result.created:
            existing = await self.backoff.run("head-object", lambda: self._run(self.store.head, first_key)) or {}
            writer = existing.get("eventweir-target")
            if writer is not None and writer != self.id:
                # not an earlier attempt of ours: another target writes the same keys, and taking its
                # object for ours would commit these records without writing them
                log.error("target %s: %s was written by target %s; give each s3 target its own prefix",
                          self.id, first_key, writer)
                self.fail([e[3] for e in seg.entries], "S3KeyConflict",
                          f"{first_key} exists, written by target {writer!r}: two s3 targets write the same "
                          "keys; give each its own `prefix` (and `state_prefix`)")
                return
            earlier_end = int(existing.get("eventweir-segment-end", seg.end))
            if earlier_end > seg.end:
                # the earlier attempt wrote a longer segment: reopen ours until its end
                state.force_end = earlier_end
                self._reopen(tp, state, seg.entries)
                return
            if earlier_end < seg.end:
                # the earlier attempt stopped sooner (wall-clock flush, shutdown): split at its end
                keep = [e for e in seg.entries if e[0] <= earlier_end]
                rest = [e for e in seg.entries if e[0] > earlier_end]
                self._reopen(tp, state, rest)
                seg.entries, seg.end = keep, earlier_end
                objects = self._objects(tp, seg)
                meta["eventweir-segment-end"] = str(earlier_end)
                kept = objects[0][1]
                encoded = await self._run(self.encoder.encode, [e[2] for e in kept])
                done = [(first_key, kept, result, encoded.rejected)]
        rest = await asyncio.gather(*(
            self.backoff.run("put-object", lambda k=k, g=g: self._run(self._encode_put, k, g, meta))
            for k, g in objects[1:]
        ))
        done += [(k, g, r, rej) for (k, g), (r, rej) in zip(objects[1:], rest)]
        marker = f"{self._marker_base}{sanitise(tp[0])}+{tp[1]}.json"
        body = orjson.dumps({"end": seg.end, "start": seg.start, "written_at": time.time()})
        await self.backoff.run("put-progress", lambda: self._run(self.store.put, marker, body, {}, False))
        state.durable_upto = max(state.durable_upto, seg.end)
        await self._announce_all(tp, done)  # before the records settle: their offsets wait for the events
        self._finish(tp, seg, done)

    def _reopen(self, tp, state: _Partition, entries: list[tuple]) -> None:
        """Put entries back in front of whatever the partition buffered since."""
        current, state.segment = state.segment, None
        if current is not None:
            self._buffered -= len(current.entries)
            entries = entries + current.entries
        self._append(tp, state, entries)

    def _finish(self, tp, seg: _Segment, done: list) -> None:
        settled, failed = [], []
        for _key, group, result, rejected in done:
            for i, entry in enumerate(group):
                if i in rejected:
                    failed.append((entry[3], rejected[i]))
                else:
                    settled.append(entry[3])
            if result.created:
                count = len(group) - len(rejected)
                metrics.LAKE_OBJECTS.labels(self.id, "created").inc()
                metrics.LAKE_BYTES.labels(self.id).inc(result.size)
                metrics.LAKE_RECORDS.labels(self.id).inc(count)
            else:
                metrics.LAKE_OBJECTS.labels(self.id, "existing").inc()
        for item, why in failed:
            self.fail([item], "SchemaMismatch", why)
        if settled:
            self.settle(settled)

    async def _announce_all(self, tp, done: list) -> None:
        """An "Object Created" event per object of the segment, acknowledged before the segment's
        records settle. An object found already written (a replay after a crash between the write
        and the event) is announced again, with the same event id: at-least-once, de-duplicable."""
        if self.on_object is None:
            return
        for key, group, result, rejected in done:
            count = len(group) - len(rejected)
            if count:
                await self.publish_backoff.run("publish-object-event",
                                               lambda k=key, r=result, g=group, c=count: self._announce(k, r, tp, g, c))

    async def _announce(self, key: str, result, tp, group: list[tuple], count: int) -> None:
        assert self.on_object is not None
        bucket = self.settings.bucket or self.store.url.split("://", 1)[1]
        event = {
            "version": "0",
            # the same object always announces the same id, so replays can be de-duplicated
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.store.url}/{key}")),
            "detail-type": "Object Created",
            "source": "eventweir.s3",
            "account": "000000000000",
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.settings.region or "local",
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket},
                "object": {"key": key, "size": result.size, "etag": (result.etag or "").strip('"')},
                "reason": "PutObject",
                "record-count": count,
                "offsets": {"topic": tp[0], "partition": tp[1], "first": group[0][0], "last": group[-1][0]},
                "target": self.id,
            },
        }
        sent = self.on_object(event, 1 + most_hops(entry[3][0].record for entry in group))
        if inspect.isawaitable(sent):
            await sent


Settings = S3Settings


def build(context, name: str, settings: S3Settings) -> S3Target:
    if settings.event_time is not None:
        from streams.targets.s3.eventtime import EventTimeS3Target

        return EventTimeS3Target(name, settings, context.max_in_flight, context.dead_letters)
    return S3Target(name, settings, context.max_in_flight, context.dead_letters)


def check_together(targets: list[tuple[str, S3Settings]]) -> list[str]:
    """Problems between s3 targets: two writing the same object keys would each take the other's
    objects as already written, and commit records that were never written. (Progress markers are
    per target already.)"""
    problems = []
    seen: dict[tuple[str, str], str] = {}
    for path, s in targets:
        other = seen.setdefault((s.lake_url, s.prefix), path)
        if other != path:
            problems.append(f"{path}.prefix: {other} writes to {s.lake_url} under the same prefix {s.prefix!r}; "
                            "give each s3 target its own prefix")
    return problems
