"""Archives and replays (CreateArchive, StartReplay): what they are on Kafka and how they route.

An archive is a Kafka topic (<archives.topic_prefix><name>, retention = RetentionDays, 0 = kept
forever) and a rule on its source bus, `Events-Archive-<name>` as on AWS, whose one target
produces the events it matches to that topic: archiving is routing, with the worker's usual
delivery guarantees. With archives.storage s3 the target is an s3 target instead, writing the
events as objects under a prefix of the archives' lake (with Object Lock retention of
RetentionDays when configured), which outlive Kafka's retention.

A replay (streams/runtime/replay.py) republishes a time range of an archive to the archive's bus
with a top-level `replay-name` field, as AWS delivers it. Routing then keeps AWS's promises with patterns alone:

- an archive rule's pattern has `"replay-name": [{"exists": false}]`: a replayed event is never
  archived again (AWS's own archive rules carry the same condition);
- on a bus with an archive or a replay, every other rule's pattern gets
  `"replay-name": [{"exists": false}, <the replays that name it>]`: it sees live events, and
  replayed ones only from the replays whose Destination.FilterArns list it (or list no rule).

Both are stored on the control topic (streams/runtime/reload.py) under `archive/<name>` and
`replay/<name>`; a cancellation under `replay-cancel/<name>`, apart from the replay's own record,
which the worker running it rewrites with its progress (a cancel written there could be lost
under a progress write made before the runner saw it). Rule names have no `/`, so none collide.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.config import Config, RuleSettings, TargetSettings
from streams.targets.s3.formats import decode_jsonl
from streams.targets.s3.layout import RECORDS_META, parse_object_key
from streams.targets.s3.objectstore import S3Store

log = logging.getLogger(__name__)
ARCHIVE_KEY, REPLAY_KEY, CANCEL_KEY = "archive/", "replay/", "replay-cancel/"
ARCHIVE_RULE_PREFIX = "Events-Archive-"
REPLAY_FIELD = "replay-name"
ACTIVE = ("STARTING", "RUNNING", "CANCELLING")
STATES = ("STARTING", "RUNNING", "CANCELLING", "COMPLETED", "CANCELLED", "FAILED")


@dataclass(frozen=True)
class StoredArchive:
    name: str
    bus: str  # the source bus's name
    topic: str
    event_pattern: dict[str, Any] | None
    retention_days: int
    description: str
    created: float
    prefix: str = ""  # set for an archive in the S3 lake (archives.storage: s3): its objects' prefix; topic is ""

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, value: bytes) -> StoredArchive:
        return cls(**orjson.loads(value))


@dataclass(frozen=True)
class StoredReplay:
    name: str
    archive: str
    bus: str  # the destination: the archive's bus (AWS permits no other)
    rules: tuple[str, ...]  # FilterArns as rule names; empty = every rule of the bus
    filter_arns: tuple[str, ...]
    start: float  # EventStartTime, EventEndTime: epoch seconds
    end: float
    description: str
    state: str
    started: float  # ReplayStartTime
    ended: float | None = None  # ReplayEndTime
    last_replayed: float | None = None  # EventLastReplayedTime: the archived time of the last event sent
    reason: str = ""  # StateReason
    # set by the worker running it: where it is (archive partition -> next offset), the partitions
    # it has finished, and its claim: owner id, held until lease_until
    positions: dict[int, int] = field(default_factory=dict)
    done: tuple[int, ...] = ()
    owner: str | None = None
    lease_until: float = 0.0

    def to_json(self) -> bytes:
        doc = dataclasses.asdict(self)
        doc["positions"] = {str(p): o for p, o in self.positions.items()}
        return orjson.dumps(doc)

    @classmethod
    def from_json(cls, value: bytes) -> StoredReplay:
        doc = orjson.loads(value)
        doc["rules"], doc["filter_arns"] = tuple(doc["rules"]), tuple(doc["filter_arns"])
        doc["positions"] = {int(p): int(o) for p, o in doc["positions"].items()}
        doc["done"] = tuple(doc["done"])
        return cls(**doc)

    def routing(self) -> tuple:
        """What routing depends on: a change to anything else (progress) needs no rule reload."""
        return self.bus, self.rules


def shown_state(replay: StoredReplay, cancelled: set[str]) -> str:
    """The state as DescribeReplay shows it: CANCELLING from a cancel until the runner confirms it."""
    return "CANCELLING" if replay.state in ("STARTING", "RUNNING") and replay.name in cancelled else replay.state


def with_archives(config: Config, rules: list[RuleSettings], archives: dict[str, StoredArchive],
                  replays: dict[str, StoredReplay]) -> list[RuleSettings]:
    """`rules` with each archive's rule added and the replay conditions above applied."""
    guarded = {a.bus for a in archives.values()} | {r.bus for r in replays.values()}
    archive_rules = {ARCHIVE_RULE_PREFIX + a.name: a for a in archives.values()}
    out = []
    for rule in rules:
        if rule.name in archive_rules:
            continue  # the name is the archive's (AWS reserves it too)
        bus = config.bus_of(rule)
        if bus in guarded and REPLAY_FIELD not in (rule.event_pattern or {}):  # a rule about replays decides itself
            names = sorted(r.name for r in replays.values() if r.bus == bus and (not r.rules or rule.name in r.rules))
            pattern = {**(rule.event_pattern or {}), REPLAY_FIELD: [{"exists": False}, *names]}
            rule = rule.model_copy(update={"event_pattern": pattern})
        out.append(rule)
    for name, archive in sorted(archive_rules.items()):
        target = archive_target(config, archive)
        if target is None:
            log.error("archive %s is in the S3 lake, and archives.s3 is no longer configured: it archives nothing "
                      "until it is", archive.name)
            continue
        out.append(RuleSettings(
            name=name, description=f"Archive {archive.name}",
            event_pattern={**(archive.event_pattern or {}), REPLAY_FIELD: [{"exists": False}]},
            targets=[TargetSettings.model_validate(target)],
            event_bus_name=None if archive.bus == config.bus.name else archive.bus))
    return out


def archive_target(config: Config, archive: StoredArchive) -> dict[str, Any] | None:
    """The archive rule's target: a kafka target to its topic, or an s3 target to its prefix in the
    archives' lake, written with Object Lock for RetentionDays when archives.s3.object_lock_mode is set."""
    lake = config.archives.s3
    if not archive.prefix:
        return {"id": "archive", "type": "kafka", "topic": archive.topic}
    if lake is None:  # made while storage was s3; the lake's settings have gone from the config since
        return None
    locked = lake.object_lock_mode is not None and archive.retention_days > 0
    return {"id": "archive", "type": "s3", "bucket": lake.bucket, "endpoint_url": lake.endpoint_url,
            "region": lake.region, "prefix": archive.prefix, "state_prefix": archive.prefix.rstrip("/") + ".progress/",
            "format": "jsonl", "compression": "gzip", "flush_size": lake.flush_size,
            "flush_interval_s": lake.flush_interval_s, "object_lock_mode": lake.object_lock_mode if locked else None,
            "object_lock_days": archive.retention_days if locked else 0}


def retention_ms(days: int) -> str:
    return "-1" if days == 0 else str(days * 86_400_000)


def stamp(value: bytes, replay: str) -> bytes:
    """The archived event as a replay delivers it: `replay-name` after `region`, where AWS puts it.

    Spliced into the bytes when `region` is a top-level key with only scalars before it (as in
    every envelope eventweir writes: nothing before it opens an object or array, and `"region":`
    cannot occur inside a JSON string, whose quotes are escaped); otherwise the event is parsed
    and written again."""
    at = value.find(b'"region":"')
    if at > 0 and value.find(b"{", 1, at) < 0 and value.find(b"[", 1, at) < 0 and b'"replay-name"' not in value:
        end = value.find(b'"', at + 10)
        if end > 0 and value[end - 1] != 0x5C:  # not an escaped quote
            return b"".join((value[:end + 1], b',"replay-name":', orjson.dumps(replay), value[end + 1:]))
    event = orjson.loads(value)
    out: dict[str, Any] = {}
    for key, item in event.items():
        if key != REPLAY_FIELD:
            out[key] = item
        if key == "region":
            out[REPLAY_FIELD] = replay
    out.setdefault(REPLAY_FIELD, replay)
    return orjson.dumps(out)


async def event_counts(config: Config, topics: list[str]) -> dict[str, int]:
    """Events held by each archive topic now: end minus beginning offsets (what retention left)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.kafka.read import partitions_of

    consumer = AIOKafkaConsumer(**config.kafka.client_options(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = []
        for topic in topics:
            try:
                tps += [TopicPartition(topic, p) for p in await partitions_of(consumer, topic, 5)]
            except TimeoutError:  # the topic was deleted by hand: it holds nothing
                continue
        if not tps:
            return {}
        first, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        counts: dict[str, int] = {}
        for tp in tps:
            counts[tp.topic] = counts.get(tp.topic, 0) + end[tp] - first[tp]
        return counts
    finally:
        await consumer.stop()


def lake_counts(config: Config, archives: list[StoredArchive]) -> dict[str, tuple[int, int]]:
    """Events and bytes held by each archive in the S3 lake now (archive name -> (events, bytes)):
    the sizes its objects' listing gives, and the record count each object's metadata holds (an
    object written before the target recorded it is read and its lines counted). Blocking: run it
    in a thread."""
    lake = config.archives.s3
    if lake is None or not archives:
        return {}
    store = S3Store(lake.bucket, endpoint_url=lake.endpoint_url, region=lake.region)
    try:
        counts: dict[str, tuple[int, int]] = {}
        for archive in archives:
            events = size = 0
            for key, bytes_ in store.sizes(archive.prefix).items():
                parsed = parse_object_key(key)
                if parsed is None:
                    continue  # not an object the archive's target wrote
                size += bytes_
                recorded = (store.head(key) or {}).get(RECORDS_META)
                events += int(recorded) if recorded is not None else len(read_lines(store, key, parsed[3]))
            counts[archive.name] = events, size
        return counts
    finally:
        store.close()


def read_lines(store: S3Store, key: str, ext: str) -> list[bytes]:
    """The archived events (JSON lines) of one object in the lake."""
    body = store.get(key)
    return decode_jsonl(body, ext) if body else []
