"""The API's archive and replay operations: CreateArchive, DescribeArchive, ListArchives,
UpdateArchive, DeleteArchive, StartReplay, DescribeReplay, ListReplays and CancelReplay, with
AWS's shapes, states and error texts (LocalStack's AWS-validated recordings).

What they store and how workers act on it: streams/runtime/archives.py (an archive is a topic and
a rule) and streams/runtime/replay.py (one worker runs a replay, under a lease). EventBridgeApi
inherits these operations (api.py); this module reaches the API's errors through `_error` at
call time, as api.py imports this module while it is being defined.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from streams.kafka.admin import ensure_topics, set_topic_config
from streams.runtime.archives import (
    ACTIVE,
    StoredArchive,
    StoredReplay,
    event_counts,
    lake_counts,
    retention_ms,
    shown_state,
)

if TYPE_CHECKING:
    from streams.config import ArchiveLakeSettings, Config, RuleSettings
    from streams.runtime.buses import Bus

log = logging.getLogger(__name__)

NAME = re.compile(r"[\.\-_A-Za-z0-9]+")
MAX_ACTIVE_REPLAYS = 10  # AWS's quota of replays STARTING or RUNNING at once
MAX_RETENTION_DAYS = (2**63 - 1) // 86_400_000


def _error(type_: str, message: str) -> Exception:
    from streams.http.eventbridge.api import ApiError

    return ApiError(type_, message)


def _name(value: Any, member: str, limit: int) -> str:
    if not isinstance(value, str) or not value:
        raise _error("ValidationException", f"Parameter {member[0].upper()}{member[1:]} is required.")
    if len(value) > limit:
        raise _error("ValidationException", f"1 validation error detected: Value '{value}' at '{member}' failed to "
                                            f"satisfy constraint: Member must have length less than or equal to {limit}")
    if not NAME.fullmatch(value):
        raise _error("ValidationException", f"1 validation error detected: Value '{value}' at '{member}' failed to "
                                            "satisfy constraint: Member must satisfy regular expression pattern: "
                                            "[\\.\\-_A-Za-z0-9]+")
    return value


def _time(value: Any, member: str) -> float:
    """A timestamp member: boto3 sends epoch seconds; ISO 8601 text is taken too."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise _error("ValidationException", f"Parameter {member} is not valid.")


def _retention(days: int) -> int:
    if days > MAX_RETENTION_DAYS:
        raise _error("ValidationException", f"1 validation error detected: Value '{days}' at 'retentionDays' failed to "
                                            f"satisfy constraint: eventweir keeps archives up to {MAX_RETENTION_DAYS} "
                                            "days (Kafka's retention.ms is a long); 0 keeps them forever")
    return days


async def _check_lake(lake: ArchiveLakeSettings) -> None:
    """The archives' bucket is reachable, with Object Lock enabled when retention is to be set: said
    now, rather than by an archive rule whose target cannot start."""
    from streams.targets.s3.objectstore import S3Store

    def check() -> str | None:
        store = S3Store(lake.bucket, endpoint_url=lake.endpoint_url, region=lake.region)
        try:
            store.check()
            if lake.object_lock_mode and not store.lock_enabled():
                return (f"bucket {lake.bucket!r} does not have S3 Object Lock enabled, which archives.s3."
                        "object_lock_mode needs: create the bucket with Object Lock, or unset object_lock_mode")
            return None
        except Exception as exc:  # noqa: BLE001 - the operator's to fix: said in the answer and the log
            return str(exc)
        finally:
            store.close()

    problem = await asyncio.to_thread(check)
    if problem:
        log.error("CreateArchive: the archives' S3 lake is not usable: %s", problem)
        raise _error("ValidationException", f"The archives' S3 lake (archives.s3) is not usable: {problem}")


def _page(items: list, params: dict) -> tuple[list, str | None]:
    token = params.get("NextToken") or "0"
    if not token.isdigit():
        raise _error("ValidationException", "The NextToken is not valid.")
    start, limit = int(token), params.get("Limit") or 100
    return items[start:start + limit], str(start + limit) if start + limit < len(items) else None


class ArchiveOperations:
    """Mixed into EventBridgeApi, which provides what is declared here."""

    if TYPE_CHECKING:
        config: Config

        def _bus(self, value: Any) -> str: ...
        def _buses(self) -> dict[str, Bus]: ...
        def _store(self) -> Any: ...
        def _rules(self) -> dict[str, RuleSettings]: ...
        def _pattern_text(self, params: dict) -> str: ...

    # -- helpers --
    def _arn(self, kind: str, name: str) -> str:
        return f"arn:aws:events:{self.config.bus.region}:{self.config.bus.account}:{kind}/{name}"

    def _archive(self, name: Any) -> StoredArchive:
        archive = self._store().archives.get(name) if isinstance(name, str) else None
        if archive is None:
            raise _error("ResourceNotFoundException", f"Archive {name} does not exist.")
        return archive

    def _replay(self, name: Any) -> StoredReplay:
        replay = self._store().replays.get(name) if isinstance(name, str) else None
        if replay is None:
            raise _error("ResourceNotFoundException", f"Replay {name} does not exist.")
        return replay

    def _archive_pattern(self, params: dict) -> dict | None:
        if not params.get("EventPattern"):
            return None
        from processors.routing import InvalidEventPatternException, compile_pattern

        text = self._pattern_text(params)
        try:
            compile_pattern(text)
        except InvalidEventPatternException as exc:
            raise _error("InvalidEventPatternException", exc.message) from None
        return orjson.loads(text)

    async def _counts(self, archives: list[StoredArchive]) -> dict[str, tuple[int, int]]:
        """Archive name -> (EventCount, SizeBytes): a topic's events by its offsets (its bytes are not
        counted: 0), a lake archive's events and bytes by its objects."""
        topics = [a.topic for a in archives if a.topic]
        by_topic = await event_counts(self.config, topics) if topics else {}
        lake = [a for a in archives if not a.topic]
        counts = {}
        if lake:
            try:
                counts = await asyncio.to_thread(lake_counts, self.config, lake)
            except Exception as exc:  # noqa: BLE001 - counts are informative: the archive itself is fine
                log.warning("archives in the S3 lake not counted (EventCount, SizeBytes show 0): %s", exc)
        return {**{a.name: (by_topic.get(a.topic, 0), 0) for a in archives if a.topic}, **counts}

    def _archive_out(self, archive: StoredArchive, counts: dict[str, tuple[int, int]], full: bool) -> dict:
        events, size = counts.get(archive.name, (0, 0))
        out: dict[str, Any] = {"ArchiveName": archive.name, "EventSourceArn": self.config.bus.bus_arn(archive.bus),
                               "State": "ENABLED", "RetentionDays": archive.retention_days, "SizeBytes": size,
                               "EventCount": events, "CreationTime": archive.created}
        if full:
            out["ArchiveArn"] = self._arn("archive", archive.name)
            if archive.description:
                out["Description"] = archive.description
            if archive.event_pattern is not None:
                out["EventPattern"] = orjson.dumps(archive.event_pattern).decode()
        return out

    def _replay_out(self, replay: StoredReplay, full: bool) -> dict:
        out: dict[str, Any] = {"ReplayName": replay.name, "EventSourceArn": self._arn("archive", replay.archive),
                               "State": shown_state(replay, self._store().cancelled),
                               "EventStartTime": replay.start, "EventEndTime": replay.end,
                               "ReplayStartTime": replay.started}
        for key, value in (("EventLastReplayedTime", replay.last_replayed), ("ReplayEndTime", replay.ended),
                           ("StateReason", replay.reason or None)):
            if value is not None:
                out[key] = value
        if full:
            out["ReplayArn"] = self._arn("replay", replay.name)
            out["Destination"] = {"Arn": self.config.bus.bus_arn(replay.bus)}
            if replay.filter_arns:
                out["Destination"]["FilterArns"] = list(replay.filter_arns)
            if replay.description:
                out["Description"] = replay.description
        return out

    # -- archives --
    async def op_CreateArchive(self, params: dict) -> dict:
        name = _name(params.get("ArchiveName"), "archiveName", 48)
        if params.get("KmsKeyIdentifier") is not None:
            raise _error("ValidationException", "KmsKeyIdentifier is not supported by eventweir's archives.")
        store = self._store()
        if name in store.archives:
            raise _error("ResourceAlreadyExistsException", f"Archive {name} already exists.")
        bus = self._bus(params.get("EventSourceArn") or "")
        pattern = self._archive_pattern(params)
        days = _retention(params.get("RetentionDays") or 0)
        now = time.time()
        # a topic (or prefix) of its own per archive made: one made again under the same name starts empty
        where = f"{name}.{int(now * 1000)}"
        lake = self.config.archives.s3
        if self.config.archives.storage == "s3" and lake is not None:
            await _check_lake(lake)
            topic, prefix = "", f"{lake.prefix}{where}/"
        else:
            topic, prefix = f"{self.config.archives.topic_prefix}{where}", ""
            await ensure_topics(self.config.kafka.bootstrap_servers, {topic: self.config.bus.topic_partitions},
                                configs={topic: {"retention.ms": retention_ms(days)}})
        archive = StoredArchive(name, bus, topic, pattern, days, params.get("Description") or "", now, prefix)
        await store.put_archive(archive)
        return {"ArchiveArn": self._arn("archive", name), "State": "ENABLED", "CreationTime": now}

    async def op_DescribeArchive(self, params: dict) -> dict:
        archive = self._archive(params.get("ArchiveName"))
        return self._archive_out(archive, await self._counts([archive]), full=True)

    async def op_ListArchives(self, params: dict) -> dict:
        archives = sorted(self._store().archives.values(), key=lambda a: a.name)
        if params.get("EventSourceArn"):
            bus = self._bus(params["EventSourceArn"])
            archives = [a for a in archives if a.bus == bus]
        prefix = params.get("NamePrefix") or ""
        archives = [a for a in archives if a.name.startswith(prefix)]
        if params.get("State") not in (None, "ENABLED"):
            archives = []  # eventweir's archives are always ENABLED
        page, token = _page(archives, params)
        counts = await self._counts(page)
        out: dict[str, Any] = {"Archives": [self._archive_out(a, counts, full=False) for a in page]}
        if token:
            out["NextToken"] = token
        return out

    async def op_UpdateArchive(self, params: dict) -> dict:
        if all(params.get(k) is None for k in ("EventPattern", "RetentionDays", "Description")):
            raise _error("ValidationException", "At least one of EventPattern, RetentionDays or Description must be "
                                                "provided.")
        archive = self._archive(params.get("ArchiveName"))
        changes: dict[str, Any] = {}
        if params.get("Description") is not None:
            changes["description"] = params["Description"]
        if params.get("EventPattern") is not None:
            changes["event_pattern"] = self._archive_pattern(params)
        days = None if params.get("RetentionDays") is None else _retention(params["RetentionDays"])
        if days is not None and days != archive.retention_days and not archive.topic:
            changes["retention_days"] = days  # an S3 archive: objects written from now on are locked for as long
        elif days is not None and days != archive.retention_days:
            try:
                await set_topic_config(self.config.kafka.bootstrap_servers, archive.topic,
                                       {"retention.ms": retention_ms(days)})
            except Exception as exc:  # noqa: BLE001 - e.g. Tansu has no AlterConfigs: say so, keep the rest
                log.warning("UpdateArchive %s: the broker did not take retention.ms for %s (%s); RetentionDays is "
                            "recorded, set the topic's retention with your Kafka tooling", archive.name,
                            archive.topic, exc)
            changes["retention_days"] = days
        await self._store().put_archive(dataclasses.replace(archive, **changes))
        return {"ArchiveArn": self._arn("archive", archive.name), "State": "ENABLED", "CreationTime": archive.created}

    async def op_DeleteArchive(self, params: dict) -> dict:
        archive = self._archive(params.get("ArchiveName"))
        # its topic is left to its retention: workers still archiving the last events would fail
        # their produce if it went away under them (README, "Archives and replay")
        await self._store().delete_archive(archive.name)
        return {}

    # -- replays --
    async def op_StartReplay(self, params: dict) -> dict:
        name = _name(params.get("ReplayName"), "replayName", 64)
        store = self._store()
        if name in store.replays:
            raise _error("ResourceAlreadyExistsException", f"Replay {name} already exists.")
        start, end = _time(params.get("EventStartTime"), "EventStartTime"), _time(params.get("EventEndTime"), "EventEndTime")
        if end <= start:
            raise _error("ValidationException",
                         "Parameter EventEndTime is not valid. Reason: EventStartTime must be before EventEndTime.")
        source = params.get("EventSourceArn") or ""
        archive = store.archives.get(source.rsplit("archive/", 1)[-1]) if isinstance(source, str) else None
        if archive is None or source not in (archive.name, self._arn("archive", archive.name)):
            shown = source.rsplit("/", 1)[-1] if isinstance(source, str) else source
            raise _error("ValidationException",
                         f"Parameter EventSourceArn is not valid. Reason: Archive {shown} does not exist.")
        destination = params.get("Destination") or {}
        bus = self._bus(destination.get("Arn") or "")  # an unknown bus: ResourceNotFoundException
        if bus != archive.bus:
            raise _error("ValidationException",
                         "Parameter Destination.Arn is not valid. Reason: Cross event bus replay is not permitted.")
        prefix = self.config.bus.rule_arn_prefix_of(bus)
        arns = tuple(destination.get("FilterArns") or ())
        rules = []
        for arn in arns:
            rule = arn.removeprefix(prefix) if arn.startswith(prefix) else ""
            if not rule or "/" in rule:
                raise _error("ValidationException", f"Parameter Destination.FilterArns is not valid. Reason: {arn} is "
                                                    f"not the ARN of a rule on event bus {bus}.")
            rules.append(rule)
        if sum(shown_state(r, store.cancelled) in ACTIVE for r in store.replays.values()) >= MAX_ACTIVE_REPLAYS:
            raise _error("LimitExceededException", "The requested resource exceeds the maximum number allowed.")
        now = time.time()
        await store.put_replay(StoredReplay(name, archive.name, bus, tuple(rules), arns, start, end,
                                            params.get("Description") or "", "STARTING", now))
        return {"ReplayArn": self._arn("replay", name), "State": "STARTING", "ReplayStartTime": now}

    async def op_DescribeReplay(self, params: dict) -> dict:
        return self._replay_out(self._replay(params.get("ReplayName")), full=True)

    async def op_ListReplays(self, params: dict) -> dict:
        store = self._store()
        replays = sorted(store.replays.values(), key=lambda r: r.name)
        prefix, state, source = params.get("NamePrefix") or "", params.get("State"), params.get("EventSourceArn")
        replays = [r for r in replays if r.name.startswith(prefix)
                   and (state is None or shown_state(r, store.cancelled) == state)
                   and (source is None or source in (r.archive, self._arn("archive", r.archive)))]
        page, token = _page(replays, params)
        out: dict[str, Any] = {"Replays": [self._replay_out(r, full=False) for r in page]}
        if token:
            out["NextToken"] = token
        return out

    async def op_CancelReplay(self, params: dict) -> dict:
        replay = self._replay(params.get("ReplayName"))
        store = self._store()
        if shown_state(replay, store.cancelled) not in ("STARTING", "RUNNING"):
            raise _error("IllegalStatusException",
                         "An error occurred because a replay can be canceled only when the state is Running or Starting.")
        await store.cancel_replay(replay.name)
        return {"ReplayArn": self._arn("replay", replay.name), "State": "CANCELLING"}
