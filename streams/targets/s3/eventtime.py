"""The s3 target's `event_time` mode: an object per key per event-time window, written once final.

Records are grouped per source partition by (rendered prefix, key, window start). The
partition's watermark is the largest event time it has seen; a window's object is written once
the watermark reaches the window's end + `allowed_lateness` (the windows stage's rule, in
processors/enrich/windows.py), with a conditional put: if the object exists, an earlier attempt
(before a crash or a rebalance) wrote it; the records it holds count as written (its metadata has
a digest of its records; when ours differ, its lines are read), the others are written late, so a
replay that holds only part of a window loses nothing and writes nothing twice. A record whose window
was already written is late: it goes to its own object under `late_prefix`, named by its offset,
never dropped. Records without a key or a time go under `error_prefix`, one object each.

Exactly-once holds as in the offset mode, by deterministic names: a window's records settle (and
their offsets may be committed) only once its object is complete, so a replay re-reads every
record of every unwritten window and writes the same object. Identical records (same bytes) in
one window are written once: a record delivered twice upstream lands in the object once.
Open windows hold their records' offsets back, by up to window + allowed lateness of event time;
when they hold more than 3/4 of `runtime.max_in_flight` records (which would pause the partitions
feeding them and stop the watermark) the windows closing first are written early, and records
that come for them later are late.
"""
from __future__ import annotations

import asyncio
import gzip
import hashlib
import heapq
import logging
import time
from datetime import UTC, datetime

import orjson

from processors.paths import get_path, split_path
from streams import metrics
from streams.targets.backoff import GaveUp
from streams.targets.base import Item
from streams.targets.s3.formats import JsonLinesEncoder
from streams.targets.s3.layout import RANDOM_MARK, MissingPartitionField, object_key, parse_time, random_string
from streams.targets.s3.target import S3Settings, S3Target
from streams.targets.s3.windowing import EventTimeObjects, late_key, text_of, window_key

log = logging.getLogger(__name__)

Group = tuple[str, str, int]  # (rendered prefix, key, window start ms)


def digest(payloads: set[bytes]) -> str:
    """Which records an object holds, whatever their order: the sum of their hashes."""
    total = sum(int.from_bytes(hashlib.blake2b(p, digest_size=8).digest(), "big") for p in payloads)
    return f"{len(payloads)}-{total % (1 << 64):016x}"


class _Windows:
    """One source partition's open windows."""

    def __init__(self) -> None:
        self.watermark: int | None = None
        self.groups: dict[Group, list[tuple]] = {}  # entries: (offset, prefix, payload, item, time ms, raw)
        self.closing: list[tuple[int, Group]] = []  # heap of (close at, group)
        self.early: dict[Group, int] = {}  # written before the watermark closed them -> their close at


class EventTimeS3Target(S3Target):
    kind = "s3"

    def __init__(self, target_id: str, settings: S3Settings, max_in_flight: int, dead_letters, **kw):
        super().__init__(target_id, settings, max_in_flight, dead_letters, **kw)
        assert settings.event_time is not None
        self.mode: EventTimeObjects = settings.event_time
        self.key_path = None if self.mode.key == "kafka" else split_path(self.mode.key)
        self.open: dict[tuple[str, int], _Windows] = {}

    def close_at(self, start: int) -> int:
        return start + self.mode.window + self.mode.allowed_lateness

    # --- intake ---------------------------------------------------------------------------------
    def write(self, items: list[Item]) -> None:
        for item in items:
            record = item[0].record
            tp = (record.topic, record.partition)
            windows = self.open.get(tp)
            if windows is None:
                windows = self.open[tp] = _Windows()
            try:
                self._take(tp, windows, item)
            except (ValueError, OverflowError, OSError) as exc:  # a time out of range, a payload that is no record
                self.fail([item], "InvalidPayload", str(exc))
        for tp, windows in self.open.items():
            self._close_passed(tp, windows)
        self._relieve()
        self._buffered_gauge.set(self._buffered)

    def _take(self, tp: tuple[str, int], windows: _Windows, item: Item) -> None:
        delivery = item[0]
        record = delivery.record
        raw = delivery.payload if isinstance(delivery.payload, bytes) else orjson.dumps(delivery.payload)
        event = delivery.event
        if event is None:
            try:
                event = orjson.loads(raw)
            except orjson.JSONDecodeError:
                event = None
        payload = self._payload(raw, event, record)
        t = self._time(event, record)
        key = self._key(event, record)
        try:
            if t is None or key is None:
                raise MissingPartitionField("MissingTime" if t is None else "MissingKey", "no event time or key")
            when = datetime.fromtimestamp(t / 1000, UTC)
            prefix = self._render(event if type(event) is dict else None, when, t / 1000)
            if self._random:
                prefix = prefix.replace(RANDOM_MARK, random_string(tp[0], tp[1]))
        except MissingPartitionField as exc:
            arrival = datetime.fromtimestamp(record.timestamp_ms / 1000, UTC)
            error_prefix = self.error_template.render({"error-type": exc.error_type}, arrival)
            metrics.SINK_REJECTED.labels(self.id, exc.error_type).inc()
            self._write_one(tp, object_key(error_prefix, tp[0], tp[1], record.offset, self.encoder.ext), item, payload)
            return
        start = t - t % self.mode.window
        group = (prefix, key, start)
        close_at = self.close_at(start)
        if (windows.watermark is not None and close_at <= windows.watermark) or group in windows.early:
            late = late_key(self.mode.late_prefix, prefix, key, start, tp[0], tp[1], record.offset, self.encoder.ext)
            metrics.SINK_REJECTED.labels(self.id, "Late").inc()
            self._write_one(tp, late, item, payload)
            return
        entries = windows.groups.get(group)
        if entries is None:
            entries = windows.groups[group] = []
            heapq.heappush(windows.closing, (close_at, group))
        entries.append((record.offset, prefix, payload, item, t, raw))
        self._buffered += 1
        windows.watermark = t if windows.watermark is None else max(windows.watermark, t)

    def _time(self, event, record) -> int | None:
        mode = self.mode.timestamp
        if mode == "kafka":
            return record.timestamp_ms
        if mode == "arrival":
            return int(time.time() * 1000)
        value = get_path(event, self.time_path) if type(event) is dict else None
        if value is None:
            return None
        try:
            return int(parse_time(value).timestamp() * 1000)
        except (ValueError, TypeError, OverflowError):
            return None

    def _key(self, event, record) -> str | None:
        if self.key_path is None:
            if not record.key:
                return None
            text = text_of(record.key)
            return text if isinstance(text, str) else text["base64"]
        value = get_path(event, self.key_path) if type(event) is dict else None
        if value is None or value == "" or isinstance(value, (dict, list)):
            return None
        return value if type(value) is str else orjson.dumps(value).decode()

    def _payload(self, raw: bytes, event, record) -> bytes:
        """The record as written: one line of JSON, with the Kafka metadata asked for."""
        fields = self.mode.kafka_fields
        if not fields:
            if b"\n" in raw:  # one record per line: re-serialise pretty-printed JSON
                if event is None:
                    raise ValueError("payload spans several lines and is not JSON")
                return orjson.dumps(event)
            return raw
        if type(event) is not dict:
            raise ValueError(f"kafka_fields need each record to be a JSON object, to add {self.mode.kafka_field!r} to")
        meta: dict = {}
        for name in fields:
            if name == "key":
                meta["key"] = None if record.key is None else text_of(record.key)
            elif name == "headers":
                meta["headers"] = {k: None if v is None else text_of(v) for k, v in (record.headers or ())}
            elif name == "timestamp":
                meta["timestamp"] = record.timestamp_ms
            else:
                meta[name] = getattr(record, name)
        return orjson.dumps({**event, self.mode.kafka_field: meta})

    # --- closing windows ------------------------------------------------------------------------
    def _close_passed(self, tp: tuple[str, int], windows: _Windows) -> None:
        watermark = windows.watermark
        if watermark is None:
            return
        while windows.closing and windows.closing[0][0] <= watermark:
            _, group = heapq.heappop(windows.closing)
            self._close_group(tp, windows, group)
        if windows.early:
            windows.early = {g: c for g, c in windows.early.items() if c > watermark}

    def _close_group(self, tp: tuple[str, int], windows: _Windows, group: Group) -> None:
        entries = windows.groups.pop(group, None)
        if not entries:
            return
        self._buffered -= len(entries)
        self._spawn(self._write_group(tp, group, entries))

    def _relieve(self) -> None:
        """Write the windows closing first while open windows hold most of what may be in flight:
        the worker would pause their partitions, and their watermarks could never close them."""
        limit, early = self.max_in_flight * 3 // 4, 0
        while self._buffered > limit:
            tp, windows = min(((tp, w) for tp, w in self.open.items() if w.closing), key=lambda x: x[1].closing[0][0],
                              default=(None, None))
            if windows is None or tp is None:
                break
            close_at, group = heapq.heappop(windows.closing)
            if group in windows.groups:
                windows.early[group] = close_at
                early += 1
                self._close_group(tp, windows, group)
        if early:
            log.warning("target %s: open windows held more than 3/4 of runtime.max_in_flight; wrote %d windows early "
                        "(records that come for them later go under late_prefix)", self.id, early)

    async def start(self) -> None:
        await self._run(self.store.check)
        if self.mode.timestamp == "arrival":  # time passes without records: the clock closes windows
            self._ticker = asyncio.create_task(self._tick(1.0), name=f"target-{self.id}-windows")

    async def _tick(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            now = int(time.time() * 1000)
            for tp, windows in list(self.open.items()):
                windows.watermark = now
                self._close_passed(tp, windows)
            self._buffered_gauge.set(self._buffered)

    # --- output ---------------------------------------------------------------------------------
    async def _write_group(self, tp: tuple[str, int], group: Group, entries: list[tuple]) -> None:
        prefix, key, start = group
        name = window_key(prefix, key, start, tp[0], tp[1], self.encoder.ext)
        seen: set[bytes] = set()
        unique, duplicates = [], []
        for entry in entries:
            if entry[5] in seen:  # a record delivered twice upstream is written once
                duplicates.append(entry[3])
            else:
                seen.add(entry[5])
                unique.append(entry)
        meta = {"eventweir-target": self.id, "eventweir-topic": tp[0], "eventweir-partition": str(tp[1]),
                "eventweir-window-start": str(start), "eventweir-digest": digest(seen)}
        put = await self._put(tp, name, unique, meta)
        if put is None:
            return
        done, existing = put
        if existing is not None and existing.get("eventweir-digest") != meta["eventweir-digest"]:
            # An earlier attempt wrote this window with other records. After a restart the replay
            # starts at the committed offset, so it usually holds only some of the window's records;
            # and the watermark starts lower, so a record that was late then may be in its window
            # now. The object stays as written; our records it lacks go under late_prefix.
            written = await self._lines(name)
            missing = [e for e in unique if e[2] not in written]
            for offset, _, payload, item, _, _ in missing:
                self._write_one(tp, late_key(self.mode.late_prefix, prefix, key, start, tp[0], tp[1], offset,
                                             self.encoder.ext), item, payload)
            if missing:
                log.warning("target %s: %s exists without %d of the records a replay put in it; writing those "
                            "under %s", self.id, name, len(missing), self.mode.late_prefix)
            self.settle([e[3] for e in unique if e[2] in written] + duplicates)
            return
        await self._announce_all(tp, done)
        self._finish_all(done, duplicates)

    def _write_one(self, tp: tuple[str, int], name: str, item: Item, payload: bytes) -> None:
        entry = (item[0].record.offset, "", payload, item, None, payload)

        async def write() -> None:
            meta = {"eventweir-target": self.id, "eventweir-topic": tp[0], "eventweir-partition": str(tp[1])}
            put = await self._put(tp, name, [entry], meta)
            if put is not None:
                await self._announce_all(tp, put[0])
                self._finish_all(put[0], [])

        self._spawn(write())

    async def _put(self, tp: tuple[str, int], name: str, entries: list[tuple],
                   meta: dict) -> tuple[list, dict | None] | None:
        """Put the object if it does not exist: ([(name, entries, result, rejected)], the metadata of
        the object found existing, or None when this put created it); None when its records were
        dead-lettered."""
        items = [e[3] for e in entries]
        existing = None
        try:
            result, rejected = await self.backoff.run("put-object", lambda: self._run(self._encode_put, name, entries, meta))
            if not result.created:
                existing = await self.backoff.run("head-object", lambda: self._run(self.store.head, name)) or {}
                writer = existing.get("eventweir-target")
                if writer is not None and writer != self.id:
                    self.fail(items, "S3KeyConflict", f"{name} exists, written by target {writer!r}: two s3 targets "
                                                      "write the same keys; give each its own `prefix`")
                    return None
        except GaveUp as exc:
            self.fail(items, "S3WriteFailed", str(exc))
            return None
        return [(name, entries, result, rejected)], existing

    async def _lines(self, name: str) -> set[bytes]:
        """The records (JSON lines) of an object; none for Parquet, whose rows are not our bytes."""
        encoder = self.encoder
        if not isinstance(encoder, JsonLinesEncoder):
            return set()
        body = await self.backoff.run("get-object", lambda: self._run(self.store.get, name)) or b""
        try:
            if encoder.compression == "gzip":
                body = gzip.decompress(body)
            elif encoder.compression == "zstd":
                import zstandard

                body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        except Exception as exc:  # not an object we could have written: treat it as holding none of ours
            log.warning("target %s: cannot read %s (%s)", self.id, name, exc)
            return set()
        return set(body.split(b"\n"))

    def _finish_all(self, done: list, duplicates: list[Item]) -> None:
        self._finish(None, None, done)  # type: ignore[arg-type]  # _finish reads only `done`
        if duplicates:
            self.settle(duplicates)

    # --- lifecycle ------------------------------------------------------------------------------
    async def flush(self, timeout: float | None = None) -> bool:
        """Wait for the objects being written. Open windows are not written early: their records
        stay unsettled, so their offsets are not committed and their next owner reads them again."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.in_flight > self._buffered:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def revoked(self, partitions: set[tuple[str, int]]) -> None:
        for tp in partitions:
            windows = self.open.pop(tp, None)
            if windows is None:
                continue
            held = [e[3] for entries in windows.groups.values() for e in entries]
            self._buffered -= len(held)
            if held:
                self.settle(held, "revoked")
        self._buffered_gauge.set(self._buffered)
