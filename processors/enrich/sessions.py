"""Clickstream sessionisation per user, in event time.

A user's events belong to one session until a gap of `gap_ms` (30 minutes by default) without
activity. Each event gets `detail.session = {"id", "sequence"}`; a new session emits a
`Session Started` event before its first event, and a session that ends (a later event after the
gap, or the partition's event time passing last activity + gap) emits `Session Ended`.
Session ids are derived from user and start time, so replaying the same input gives the same ids.
The user is `user_id` when known, else `anonymous_id`.

State per partition: user -> [session_id, sequence, start_ms, last_ms], kept in a
`PartitionedState` so it survives restarts through a changelog topic. The dict is kept in
order of last activity (re-inserted on each event), so expiry only looks at its front.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from processors.core import Event, Failure, ProcessorError
from processors.enrich.state import PartitionedState
from processors.normalise.envelope import format_time, format_time_ms, make_envelope, stable_id, to_epoch_ms

THIRTY_MINUTES_MS = 30 * 60 * 1000


class SessionSettings(BaseModel):
    """`gap_minutes` (or `gap_ms`): the inactivity that ends a session."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gap_minutes: float | None = None
    gap_ms: int | None = None
    emit_boundaries: bool = True
    source: str | None = None


class Sessioniser:
    stage = "enrich"
    Settings = SessionSettings

    @classmethod
    def from_settings(cls, settings: SessionSettings, context) -> Sessioniser:
        gap_ms = int(settings.gap_minutes * 60_000) if settings.gap_minutes is not None else settings.gap_ms
        return cls(gap_ms=THIRTY_MINUTES_MS if gap_ms is None else gap_ms, emit_boundaries=settings.emit_boundaries,
                   source=settings.source)

    def __init__(self, gap_ms: int = THIRTY_MINUTES_MS, emit_boundaries: bool = True,
                 source: str | None = None, state: PartitionedState | None = None):
        if gap_ms <= 0:
            raise ValueError(f"Sessioniser gap_ms={gap_ms}: expected a positive number of milliseconds")
        self.gap_ms, self.emit_boundaries, self.source = gap_ms, emit_boundaries, source
        self.state = state or PartitionedState("sessions")
        self._watermark: dict[int, int] = {}
        self.state._restored = self._recompute_watermark  # type: ignore[method-assign]

    def _recompute_watermark(self, partition: int) -> None:
        table = self.state.table(partition)
        self._watermark[partition] = max((s[3] for s in table.values()), default=0)

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        out: list[Event] = []
        state, gap, emit = self.state, self.gap_ms, self.emit_boundaries
        watermarks = self._watermark
        last_seen: dict[int, Event] = {}
        current_p: int | None = None
        wm = 0
        table: dict[str, Any]  # table, dirty: set at the first event (its partition is not None)
        dirty: dict[str, Any]
        for event in events:
            detail = event.body["detail"]
            user = detail.get("user_id") or detail.get("anonymous_id")
            try:
                ts = to_epoch_ms(detail.get("timestamp"))
            except ProcessorError as exc:
                failures.append(Failure(event.record, self.stage, exc.error, exc.message))
                continue
            if not user:
                failures.append(Failure(event.record, self.stage, "no_user",
                                        "expected detail.user_id or detail.anonymous_id to sessionise on"))
                continue
            p = event.record.partition
            if p != current_p:  # batches are mostly one partition: fetch its dicts once
                if current_p is not None:
                    watermarks[current_p] = wm
                current_p = p
                table, dirty = state.tables(p)
                wm = watermarks.get(p, 0)
            session = table.pop(user, None)
            if session is not None and ts - session[3] > gap:
                if emit:
                    out.append(self._boundary(event, "Session Ended", user, session, session[3]))
                session = None
            if session is None:
                session = [stable_id("session", user, ts), 0, ts, ts]
                if emit:
                    out.append(self._boundary(event, "Session Started", user, session, ts))
            session[1] += 1
            if ts > session[3]:
                session[3] = ts
            elif ts < session[2]:  # a late event from before the first one we saw
                session[2] = ts
            table[user] = dirty[user] = session  # re-inserted at the end: the dict stays in activity order
            detail["session"] = {"id": session[0], "sequence": session[1]}
            out.append(event)
            last_seen[p] = event
            if ts > wm:
                wm = ts
        if current_p is not None:
            watermarks[current_p] = wm
        for p, last in last_seen.items():
            self._expire(p, last, out)
        return out

    def _expire(self, p: int, last: Event, out: list[Event]) -> None:
        """End this partition's sessions idle for more than the gap, in its event time.

        The end event rides on the partition's latest record, so its offset is committed only
        once the end event is delivered."""
        watermark = self._watermark.get(p, 0)
        expired = []
        for user, session in self.state.table(p).items():
            if watermark - session[3] <= self.gap_ms:
                break
            expired.append((user, session))
        for user, session in expired:
            self.state.delete(p, user)
            self._ended(last, user, session, out)

    def _ended(self, event: Event, user: str, session: list, out: list[Event]) -> None:
        if self.emit_boundaries:
            out.append(self._boundary(event, "Session Ended", user, session, session[3]))

    def _boundary(self, cause: Event, kind: str, user: str, session: list, at_ms: int) -> Event:
        body = cause.body
        detail = {"session_id": session[0], "user": user, "start": format_time_ms(session[2]),
                  "events": session[1]}
        if kind == "Session Ended":
            detail["end"] = format_time_ms(session[3])
            detail["duration_ms"] = session[3] - session[2]
        # a session starts and ends once: its id plus the kind is a unique, replay-stable event id
        return Event(cause.record, make_envelope(
            f"{session[0]}.{'start' if kind == 'Session Started' else 'end'}", kind, self.source or body["source"],
            body["account"], format_time(at_ms), body["region"], [], detail))
