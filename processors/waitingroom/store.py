"""The waiting-room store interface: every state change is one atomic operation.

The room logic (service.py) only talks to this interface; `RedisRoomStore` implements it with one
Lua script per operation. A request's record is (state, position, class rank, joined ms, t2 ms)
where t2 is when it last changed state (admitted / token issued / closed).

States: waiting -> admitted -> active (access token issued) -> completed | abandoned | expired;
waiting -> expired (stopped polling) | abandoned.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

WAITING, ADMITTED, ACTIVE = "waiting", "admitted", "active"
COMPLETED, ABANDONED, EXPIRED = "completed", "abandoned", "expired"


@dataclass(slots=True, frozen=True)
class SessionRecord:
    state: str
    position: int
    class_rank: int
    joined_ms: int
    changed_ms: int

    @classmethod
    def parse(cls, raw: bytes | str) -> SessionRecord:
        if isinstance(raw, bytes):
            raw = raw.decode()
        state, pos, rank, joined, changed = raw.split("|")
        return cls(state, int(pos), int(rank), int(joined), int(changed))


@dataclass(slots=True, frozen=True)
class JoinResult:
    # new | existing | closed | sold_out | claim_used | stale (the room's classes changed: reload)
    # | rejoined (a closed place joined again, at the back) | rejoined_place (at the old place)
    outcome: str
    record: SessionRecord | None


@dataclass(slots=True, frozen=True)
class StatusResult:
    record: SessionRecord | None  # None: unknown request id
    people_ahead: int
    expired_now: bool


@dataclass(slots=True, frozen=True)
class AdmitParams:
    """What one inlet tick may do; the service derives it from the room settings and schedule."""

    can_admit: bool          # inside the schedule window and not paused
    policy: str              # fixed_rate | max_active | manual
    rate_per_ms: float = 0.0
    burst: int = 0
    max_active: int = 0
    manual: int = 0          # admin increment of the serving counter (applies even when paused)
    inventory: int = -1
    heartbeat_ms: int = 300_000
    claim_ms: int = 600_000  # an admitted request's deadline to take its token (claim_timeout_s)
    rejoin_grace_ms: int = 0  # how long an expired waiter's old place is kept for their return
    limit: int = 10_000      # at most this many expiries/admissions per call, to bound script time


@dataclass(slots=True, frozen=True)
class RoomCounters:
    admitted_total: int      # positions admitted (the inlet's output), excluding exempt users
    serving_counter: int     # highest queue position admitted so far
    last_position: int       # positions handed out
    waiting: int
    active: int
    expired_waiters: int
    expired_sessions: int
    completed: int = 0
    abandoned: int = 0
    exempt: int = 0
    paused: bool = False


@dataclass(slots=True, frozen=True)
class AdmitResult:
    counters: RoomCounters
    admitted: list[tuple[str, int, int]]  # (request id, position, joined ms)
    expired_waiters: int                  # expired by this call
    expired_sessions: int


@dataclass(slots=True, frozen=True)
class IssueResult:
    outcome: str  # issued | waiting | closed | unknown
    record: SessionRecord | None
    exp_ms: int = 0


class RoomStore(ABC):
    @abstractmethod
    async def join(self, room: str, nclasses: int, request_id: str, now_ms: int, *, method: str, phase: str,
                   class_rank: int, inventory: int, exempt: bool, claim_ms: int,
                   claim_id: str = "", claim_exp_ms: int = 0, inlet: AdmitParams | None = None,
                   classes_tag: str = "", rejoin_grace_ms: int = -1) -> JoinResult:
        """`claim_id`: the jti of the site claim joined with; another request id with it is refused (claim_used)
        until `claim_exp_ms`. `inlet`: the room's inlet, which admits a join into an empty room at once when it
        has room (its policy, rate, burst and max_active are read); None: never at once. `rejoin_grace_ms` >= 0: the
        caller proved it holds `request_id` (its queue token), so a closed place (expired, completed, abandoned)
        is joined again: the old place if it expired as a waiter within that many ms, else at the back."""

    @abstractmethod
    async def status(self, room: str, nclasses: int, request_id: str, now_ms: int, heartbeat_ms: int) -> StatusResult: ...

    @abstractmethod
    async def admit(self, room: str, nclasses: int, now_ms: int, params: AdmitParams) -> AdmitResult: ...

    @abstractmethod
    async def issue_token(self, room: str, nclasses: int, request_id: str, now_ms: int, session_ms: int) -> IssueResult: ...

    @abstractmethod
    async def update_session(self, room: str, nclasses: int, request_id: str, status: str,
                             now_ms: int) -> tuple[str, SessionRecord | None]:
        """-> ("updated" | "closed" | "conflict" | "unknown", record)"""

    @abstractmethod
    async def renew_session(self, room: str, nclasses: int, request_id: str, now_ms: int, session_ms: int,
                            max_session_ms: int) -> int:
        """Extend an active session's deadline to `now_ms + session_ms`, at most `max_session_ms` after its token was
        first taken; -> the deadline ms (0: the session is not active any more)."""

    @abstractmethod
    async def ended_sessions(self, room: str, since_ms: int, now_ms: int, keep_ms: int) -> list[tuple[str, int]]:
        """(request id, ended ms) of the sessions completed or abandoned before their deadline from `since_ms` on;
        those older than `keep_ms` (the longest a token of theirs lives) are forgotten."""

    @abstractmethod
    async def change_classes(self, room: str, old_n: int, new_n: int, mapping: list[int], tag: str,
                             settings: dict[str, Any]) -> list[int]:
        """Move the waiters of each old class rank to `mapping[rank]` (keeping their positions), tag the room's
        class layout and store `settings`, at once; nothing is done and the old ranks are returned when a class
        mapped to -1 has waiters. The caller then saves the room as usual (so every worker reloads)."""

    @abstractmethod
    async def record_outage(self, room: str, nclasses: int, start_ms: int, end_ms: int) -> int:
        """The store was unreachable from start to end: that time does not count against waiters' heartbeats
        nor admitted visitors' claim deadlines. Returns how many waiters' heartbeats moved."""

    @abstractmethod
    async def shuffle_prequeue(self, room: str, nclasses: int, seed: int) -> int: ...

    @abstractmethod
    async def counters(self, room: str, nclasses: int) -> RoomCounters: ...

    @abstractmethod
    async def set_paused(self, room: str, paused: bool) -> None: ...

    @abstractmethod
    async def reset(self, room: str, nclasses: int) -> None: ...

    # room settings and signing keys, shared by every worker; `version` changes on every write
    @abstractmethod
    async def save_room(self, room: str, settings: dict[str, Any]) -> None: ...

    @abstractmethod
    async def delete_room(self, room: str, nclasses: int) -> None: ...

    @abstractmethod
    async def load_rooms(self) -> dict[str, dict[str, Any]]: ...

    @abstractmethod
    async def save_keys(self, doc: dict[str, Any], *, only_if_absent: bool = False, replaces: int | None = None) -> bool:
        """Write the key document; False (and nothing written) when `only_if_absent` and one exists, or when
        `replaces` is given and the stored document's `serial` is not that (another worker changed it first)."""

    @abstractmethod
    async def load_keys(self) -> dict[str, Any] | None: ...

    @abstractmethod
    async def use_once(self, room: str, key: str, ttl_ms: int) -> bool:
        """Mark `key` used for `ttl_ms`: True the first time, False while it is remembered (a replay)."""

    @abstractmethod
    async def shared_secret(self, name: str) -> bytes:
        """32 random bytes every worker shares, made by the first that asks (for keys not configured)."""

    @abstractmethod
    async def version(self) -> int: ...

    @abstractmethod
    async def close(self) -> None: ...
