"""The waiting room: rooms, joins, status with ETA, the inlet, access tokens, sessions, admin.

All state lives in the store, so any number of workers can serve the same rooms and a restarted
worker loses nothing. Per process there is only a cache: room settings and the signing keys (reloaded
when the store's version changes) and each room's counters from the last inlet tick, which status
responses reuse instead of reading them per request.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from . import botcheck
from . import events as ev
from .settings import RoomSettings, SettingsError, parse_room_settings, valid_room_id
from .store import ABANDONED, ADMITTED, COMPLETED, EXPIRED, WAITING, AdmitParams, AdmitResult, RoomCounters, RoomStore
from .tokens import ALGORITHMS, ISSUER, QUEUE_TOKEN_TTL_S, KeyRing, SigningKey, TokenError, verify_site_claim

log = logging.getLogger("eventweir.waitingroom")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
RATE_WINDOW_S = 60.0
_REJOINED = {"rejoined": "back", "rejoined_place": "place"}  # the store's outcome -> join's "rejoined"
ENDED_SKEW_MS = 10_000  # ended sessions are re-read this far back: the clocks of workers may differ by up to this
EXEMPT_CLAIM_MAX_S = 3600  # an exemption claim is made for one visitor on the spot; a long-lived one is a leak waiting


class RoomError(Exception):
    """A request the room refuses. `code`: not_found, bad_request, unauthorized, forbidden, closed, sold_out,
    not_admitted, session_closed, conflict."""

    def __init__(self, code: str, message: str, detail: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail or {}


class Observer(Protocol):
    """Metrics hooks (the Prometheus implementation lives in streams/metrics/waitingroom.py)."""

    def on_counters(self, room: str, counters: RoomCounters) -> None: ...
    def on_admitted(self, room: str, waits_s: list[float]) -> None: ...
    def on_challenge(self, room: str, outcome: str) -> None: ...  # issued, accepted or a botcheck.REASONS


def classes_tag(classes: tuple[str, ...]) -> str:
    """A short name of a room's class layout: a join made with another (a worker that has not reloaded since the
    classes changed) is refused by the store and retried with the new one."""
    return hashlib.sha1("\n".join(classes).encode()).hexdigest()[:12]


@dataclass
class _Room:
    settings: RoomSettings
    nclasses: int
    counters: RoomCounters | None = None
    samples: deque = field(default_factory=lambda: deque(maxlen=512))  # (time s, admitted_total)
    shuffled: bool = False
    last_metrics_s: float = 0.0

    @cached_property
    def tag(self) -> str:
        return classes_tag(self.settings.priority_classes)

    @cached_property
    def join_inlet(self) -> AdmitParams:
        """What a join reads of the inlet (to admit at once into an empty room): fixed per settings."""
        return WaitingRoomService._inlet(self.settings, "open")

    def admission_rate(self) -> float | None:
        """Admissions per second over the last minute, measured from the store's counter."""
        if len(self.samples) >= 2:
            t0, a0 = self.samples[0]
            t1, a1 = self.samples[-1]
            if t1 - t0 >= 1.0 and a1 > a0:
                return (a1 - a0) / (t1 - t0)
        inlet = self.settings.inlet
        if inlet.policy == "fixed_rate" and not (self.counters and self.counters.paused):
            return inlet.rate_per_s  # nothing measured yet: the configured rate is the best estimate
        return None


class WaitingRoomService:
    def __init__(self, store: RoomStore, *, admin_token: str, token_alg: str = "EdDSA",
                 key_grace_s: float | None = None, tick_interval_s: float = 0.5,
                 clock: Callable[[], float] = time.time,
                 emit: Callable[[dict[str, Any]], None] | None = None, observer: Observer | None = None,
                 account: str = "000000000000", region: str = "local", issuer: str = ISSUER,
                 jwks_max_age_s: int = 60, key_prepublish_s: float = 300.0,
                 signing_keys: list[SigningKey] | None = None, key_encryption_key: bytes | None = None,
                 challenge_key: bytes | None = None):
        """`signing_keys`: keys from the configuration (the first signs, the others only verify), never stored;
        without them keys are generated and kept in the store, sealed under `key_encryption_key` when given.
        `challenge_key`: the HMAC key of bot-protection challenges; without it, one derived from
        `key_encryption_key`, else one made once and shared through the store."""
        if not isinstance(admin_token, str) or len(admin_token) < 16:
            raise SettingsError("waitingroom.admin_token", "a bearer token of at least 16 characters", "<redacted>")
        if token_alg not in ALGORITHMS:
            raise SettingsError("waitingroom.token_alg", f"one of {list(ALGORITHMS)}", token_alg)
        if not key_prepublish_s > jwks_max_age_s:
            raise SettingsError("waitingroom.key_prepublish_s",
                                f"more seconds than jwks_max_age_s ({jwks_max_age_s}): a verifier must have fetched the "
                                "next key before it signs", key_prepublish_s)
        self.store = store
        self.admin_token = admin_token
        self.token_alg = token_alg
        self.key_grace_s = key_grace_s
        self.issuer = issuer
        self.jwks_max_age_s = jwks_max_age_s
        self.key_prepublish_s = key_prepublish_s
        self.configured_keys = list(signing_keys or [])
        self.kek = key_encryption_key
        self.challenge_key_configured = challenge_key is not None
        if challenge_key is None and key_encryption_key is not None:  # one secret to manage, two keys
            challenge_key = hmac.new(key_encryption_key, b"eventweir waiting room: ALTCHA challenges", "sha256").digest()
        self.challenge_key = challenge_key
        self.tick_interval_s = tick_interval_s
        self.clock = clock
        self.emit = emit
        self.observer = observer
        self.account, self.region = account, region
        self.rooms: dict[str, _Room] = {}
        self.config_rooms: dict[str, Any] = {}  # rooms from the config file, created at start if missing
        self._ring: KeyRing | None = None  # loaded by start() (reload)
        self._version = -1
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._jwks_cache: tuple[float, dict[str, Any]] | None = None
        self._last_ok = 0.0                      # when a store call last worked
        self._down_since: float | None = None    # set when one failed: an outage to record once it is back
        self._recovering: asyncio.Future | None = None
        # sessions ended before their deadline, per room: request id -> ended ms. Their tokens are refused by
        # forward-auth (which never asks the store); followed from the store every tick, so every worker refuses
        # them within tick_interval_s, and the worker that ended one at once
        self._ended: dict[str, dict[str, int]] = {}
        self._ended_since: dict[str, int] = {}
        self._renewed: dict[str, tuple[str, dict[str, Any]]] = {}  # token -> its renewal (one per token, not per request)

    @property
    def ring(self) -> KeyRing:
        """The signing keys, loaded from the store by start()."""
        ring = self._ring
        assert ring is not None, "WaitingRoomService.start() loads the signing keys"
        return ring

    # ---- lifecycle ----------------------------------------------------------------------------
    async def start(self, rooms: dict[str, Any] | None = None, *, run_inlet: bool = True) -> None:
        """Load rooms and keys from the store; create `rooms` from config when the store lacks them."""
        await self.reload()
        if self.challenge_key is None:
            self.challenge_key = await self.store.shared_secret("challenge-key")
        for room_id, raw in (self.config_rooms if rooms is None else rooms).items():
            if room_id not in self.rooms:
                await self.put_room(room_id, raw)
        if run_inlet:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run_inlet())

    async def stop(self) -> None:
        # the flag as well: a loop whose cancellation was swallowed ends at its next turn
        self._stopping = True
        task, self._task = self._task, None
        if task is None:
            return
        # a Redis client deep in a call may swallow one cancellation (redis-py catches it while it reconnects)
        # and the loop then sleeps on: cancel until the task has ended, or shutdown waits forever
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1)
        if not task.cancelled() and task.exception() is not None:
            log.error("the waiting-room inlet ended with an error", exc_info=task.exception())

    async def reload(self) -> None:
        version = await self.store.version()
        raw_rooms = await self.store.load_rooms()
        fresh: dict[str, _Room] = {}
        for room_id, raw in raw_rooms.items():
            try:
                settings = parse_room_settings(room_id, raw)
            except SettingsError as exc:
                log.error("room %s in the store is invalid, skipped: %s", room_id, exc)
                continue
            old = self.rooms.get(room_id)
            room = _Room(settings, len(settings.priority_classes))
            if old:
                room.counters, room.samples, room.shuffled, room.last_metrics_s = (
                    old.counters, old.samples, old.shuffled, old.last_metrics_s)
            fresh[room_id] = room
        self.rooms = fresh
        await self._load_keys()
        self._version = version

    def key_warning(self) -> str | None:
        """What an operator must know about where the keys live (logged at start), or None."""
        if self.kek is not None:
            return None
        kept = [what for what, configured in (("signing keys", self.configured_keys),
                                              ("bot-protection challenge key", self.challenge_key_configured))
                if not configured]
        if not kept:
            return None
        return (f"the waiting room's {' and '.join(kept)} are generated and kept in Redis unencrypted: whoever can read "
                "Redis can mint access tokens or skip the challenges. Set waitingroom.key_encryption_key (or "
                "waitingroom.signing_keys and waitingroom.challenge_key) to avoid it")

    def _key_doc(self, ring: KeyRing, serial: int) -> dict[str, Any]:
        return {"serial": serial, "active": ring.active.kid, "keys": [k.to_record(self.kek) for k in ring.keys.values()]}

    async def _load_keys(self) -> None:
        now = self.clock()
        self._jwks_cache = None
        if self.configured_keys:  # the configuration is the truth: nothing is read from or written to the store
            if self._ring is None:
                self._ring = KeyRing(self.configured_keys, self.configured_keys[0].kid, issuer=self.issuer)
            return
        doc = await self.store.load_keys()
        if doc is None:
            if self._ring is not None:
                # Redis lost its data under a running worker: put the keys back rather than make new ones, which
                # would turn every token issued so far invalid
                log.warning("the signing keys were missing from the store (Redis lost its data?); "
                            "restored them from this worker's memory")
                doc = self._key_doc(self._ring, 0)
            else:
                key = SigningKey.generate(self.token_alg, now)
                doc = {"serial": 0, "active": key.kid, "keys": [key.to_record(self.kek)]}
            if not await self.store.save_keys(doc, only_if_absent=True):
                doc = await self.store.load_keys()  # another worker won the race: use its keys
                assert doc is not None, "the key document was saved by another worker"
        ring = KeyRing([SigningKey.from_record(r, self.kek) for r in doc["keys"]], doc["active"], issuer=self.issuer)
        ring.prune(now)
        ring.select(now)
        self._ring = ring
        serial = int(doc.get("serial", 0))
        newest = max(ring.keys.values(), key=lambda k: k.signs_from_s)
        if newest.alg != self.token_alg:
            # token_alg changed: begin a rotation to a key of the new algorithm (pre-published like any other),
            # once, by whichever worker gets there first
            ring.rotate(self.token_alg, now, self._grace_s(), self.key_prepublish_s)
            if await self.store.save_keys(self._key_doc(ring, serial + 1), replaces=serial):
                log.info("token_alg is now %s: rotating to a new %s key, which signs from %.0f", self.token_alg,
                         self.token_alg, now + self.key_prepublish_s)
            await self._load_keys_again()
        elif self.kek is not None and any("sealed" not in r for r in doc["keys"]):
            if await self.store.save_keys(self._key_doc(ring, serial + 1), replaces=serial):
                log.info("sealed the stored signing keys with the key-encryption key")
            await self._load_keys_again()

    async def _load_keys_again(self) -> None:
        """After a compare-and-set, won or lost: read back what the store now holds."""
        doc = await self.store.load_keys()
        if doc is None:
            return
        ring = KeyRing([SigningKey.from_record(r, self.kek) for r in doc["keys"]], doc["active"], issuer=self.issuer)
        ring.prune(self.clock())
        ring.select(self.clock())
        self._ring = ring

    async def sync(self) -> None:
        """Follow the store: reload when another worker changed rooms or keys, and put the rooms back when the
        store lost its data (its version counter, which every write increments, is gone)."""
        version = await self.store.version()
        if version == self._version:
            return
        if version == 0 and self._version > 0:
            await self._restore_rooms()
        await self.reload()

    async def _restore_rooms(self) -> None:
        """Redis lost its data under a running worker (restarted without persistence, flushed, failed over to an
        empty replica): write back every room this worker knows, and those of the rooms file, so the site's
        forward-auth and the rooms' pages keep working. Who was waiting is gone with the data; their pages join
        again."""
        restored = []
        for room_id, room in list(self.rooms.items()):
            await self.store.save_room(room_id, room.settings.to_dict())
            await self.store.set_paused(room_id, room.settings.paused)
            restored.append(room_id)
        for room_id, raw in self.config_rooms.items():
            if room_id not in self.rooms:
                await self.put_room(room_id, raw)
                restored.append(room_id)
        log.warning("the waiting-room store lost its data (Redis restarted empty or was flushed): rooms %s put back "
                    "from this worker; everyone who was waiting or admitted there lost their place", sorted(restored))

    async def _run_inlet(self) -> None:
        while not self._stopping:
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis blip: keep ticking, the next tick catches up (fixed_rate credit is time-based)
                log.exception("waiting-room settings reload failed")
            for room_id in list(self.rooms):
                try:
                    await self.tick(room_id)
                except asyncio.CancelledError:
                    raise
                except Exception:  # one room's failure must not stop the rooms after it
                    log.exception("waiting-room inlet tick of room %s failed", room_id)
            await asyncio.sleep(self.tick_interval_s)

    # ---- store outages -------------------------------------------------------------------------
    def _went_down(self) -> None:
        """The store did not answer: from the last call that worked, the time is not the waiters' fault."""
        if self._down_since is None:
            self._down_since = self._last_ok or self.clock()

    async def _recover(self) -> None:
        """Before the first call after an outage: tell the store, once for all callers, how long it was away,
        so the polls that come back first are not measured against heartbeats nobody could send."""
        if self._recovering is None or self._recovering.done():
            self._recovering = asyncio.ensure_future(self._record_outage())
        await asyncio.shield(self._recovering)

    async def _record_outage(self) -> None:
        start = self._down_since
        if start is None:
            return
        end = self.clock()
        for room_id, room in list(self.rooms.items()):
            await self.store.record_outage(room_id, room.nclasses, int(start * 1000), int(end * 1000))
        self._down_since = None
        self._last_ok = end
        log.warning("the waiting-room store was unreachable for %.1f s; waiters' heartbeats and admitted visitors' "
                    "claim deadlines were moved on by that much", end - start)

    # ---- helpers ------------------------------------------------------------------------------
    def room_settings(self, room_id: str) -> RoomSettings:
        """The room's settings; RoomError('not_found') for an unknown room."""
        return self._room(room_id).settings

    def _room(self, room_id: str) -> _Room:
        room = self.rooms.get(room_id)
        if room is None:
            raise RoomError("not_found", f"no waiting room {room_id!r}")
        return room

    def _emit(self, detail_type: str, room: str, detail: dict[str, Any]) -> None:
        if self.emit is not None:
            self.emit(ev.room_event(detail_type, room, detail, self.clock(), self.account, self.region))

    @staticmethod
    def _request_id(request_id: Any) -> str:
        if request_id is None:
            return secrets.token_urlsafe(16)
        if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
            raise RoomError("bad_request", "request_id: expected 1-128 characters of letters, digits, '.', '_', ':' or '-'")
        return request_id

    def _grace_s(self) -> float:
        if self.key_grace_s is not None:
            return self.key_grace_s
        longest = max((r.settings.session_duration_s for r in self.rooms.values()), default=600.0)
        return longest + 60.0

    # ---- public API ---------------------------------------------------------------------------
    async def join(self, room_id: str, request_id: str | None = None, claim: str | None = None, *,
                   rejoin: bool = False, retry: bool = True) -> dict[str, Any]:
        """`rejoin`: the caller proved it holds `request_id` (its queue token): if that place has closed (expired,
        completed, abandoned) it gets one again, the old one within the room's rejoin_grace_s of expiring."""
        room = self._room(room_id)
        s = room.settings
        rid = self._request_id(request_id)
        rank, exempt, claim_id, claim_exp_ms = room.nclasses - 1, False, "", 0
        now = self.clock()
        now_ms = int(now * 1000)
        if claim is not None:
            if not s.claim_secret:
                raise RoomError("bad_request", f"room {room_id!r} has no claim_secret, so it accepts no claims")
            try:
                claims = verify_site_claim(claim, s.claim_secret, room_id)
            except TokenError as exc:
                raise RoomError("forbidden", str(exc)) from None
            exempt = claims.get("exempt") is True
            jti = claims.get("jti")
            if jti is not None and (not isinstance(jti, str) or not _REQUEST_ID.fullmatch(jti)):
                raise RoomError("bad_request", "claim jti: expected 1-128 letters, digits, '.', '_', ':' or '-'")
            if exempt and (jti is None or not isinstance(claims["exp"], int) or claims["exp"] > now + EXEMPT_CLAIM_MAX_S):
                # an exemption is one visitor's: used once (its jti is remembered until it expires), and short-lived
                raise RoomError("forbidden", f"an exempt claim needs a jti (it admits one visitor, once) and an exp at "
                                             f"most {EXEMPT_CLAIM_MAX_S} s ahead")
            if jti is not None:  # remembered while PyJWT would accept the claim, whatever the clocks' skew
                claim_id, claim_exp_ms = jti, max(int(claims["exp"]), int(now) + EXEMPT_CLAIM_MAX_S) * 1000
            cls = claims.get("class", s.default_class)
            if cls not in s.priority_classes:
                raise RoomError("bad_request", f"claim class: expected one of {list(s.priority_classes)}, got {cls!r}")
            rank = s.class_rank(cls)
        phase = s.phase(now)
        if self._down_since is not None:
            await self._recover()
        try:
            res = await self.store.join(room_id, room.nclasses, rid, now_ms, method=s.queueing_method, phase=phase,
                                        class_rank=rank, inventory=-1 if s.inventory is None else s.inventory,
                                        exempt=exempt, claim_ms=int(s.claim_timeout * 1000),
                                        claim_id=claim_id, claim_exp_ms=claim_exp_ms, inlet=room.join_inlet,
                                        classes_tag=room.tag,
                                        rejoin_grace_ms=int(s.rejoin_grace_s * 1000) if rejoin else -1)
        except OSError:
            self._went_down()
            raise
        if res.outcome == "stale":
            if retry:  # the room's classes changed on another worker a moment ago: take the new ones, once
                await self.reload()
                return await self.join(room_id, request_id, claim, rejoin=rejoin, retry=False)
            raise RoomError("unavailable", "the room's settings are changing; try again in a moment")
        if res.outcome == "claim_used":
            raise RoomError("forbidden", "this claim has been used already: a claim with a jti admits one visitor")
        if res.outcome == "closed":
            raise RoomError("closed", f"waiting room {room_id!r} is not accepting joins")
        if res.outcome == "sold_out":
            raise RoomError("sold_out", f"waiting room {room_id!r} is sold out")
        rec = res.record
        assert rec is not None, f"a {res.outcome!r} join has a record"
        fresh = res.outcome in ("new", "rejoined", "rejoined_place")
        if fresh and self.emit is not None:
            self._emit(ev.JOINED, room_id, {"request_id": rid, "position": rec.position,
                                            "priority_class": s.priority_classes[rec.class_rank], "state": rec.state})
        if fresh and rec.state == ADMITTED and not exempt and s.queueing_method != "passthrough":
            # admitted by the join itself (an empty room): counted and announced as the inlet's admissions are
            if self.observer is not None:
                self.observer.on_admitted(room_id, [0.0])
            self._emit(ev.ADMITTED, room_id, {"request_id": rid, "position": rec.position, "waited_s": 0.0})
        return {
            "room": room_id, "request_id": rid, "position": rec.position, "state": rec.state,
            "priority_class": s.priority_classes[min(rec.class_rank, room.nclasses - 1)],
            "duplicate": res.outcome == "existing", "refresh_interval_s": s.refresh_interval_s,
            # a returning visitor: "place" (their old one, within rejoin_grace_s) or "back" (a new one); else None
            "rejoined": _REJOINED.get(res.outcome),
            "queue_token": self.ring.select(now).sign_queue({
                "iss": self.issuer, "aud": room_id, "sub": rid, "token_use": "queue", "queue_position": rec.position,
                "priority_class": s.priority_classes[min(rec.class_rank, room.nclasses - 1)],
                "iat": rec.joined_ms // 1000, "exp": rec.joined_ms // 1000 + QUEUE_TOKEN_TTL_S}),
        }

    def challenge(self, room_id: str) -> dict[str, Any]:
        """A bot-protection challenge for a visitor about to join the room (ALTCHA's JSON)."""
        protection = self.room_settings(room_id).bot_protection
        if protection is None:
            raise RoomError("not_found", f"room {room_id!r} has no bot protection: join without a challenge")
        assert self.challenge_key is not None, "set by start()"
        out = botcheck.issue(self.challenge_key, room_id, protection, self.clock())
        if self.observer is not None:
            self.observer.on_challenge(room_id, "issued")
        return out

    async def check_challenge(self, room_id: str, payload: Any, challenge_url: str) -> None:
        """Accept a solved challenge once (RoomError 'challenge_required' with the reason and what to do otherwise).
        The payload is spent before the join is made: a join that then fails needs a new one."""
        assert self.challenge_key is not None, "set by start()"
        try:
            challenge_id, ttl_ms = botcheck.verify(self.challenge_key, room_id, payload, self.clock())
            if not await self.store.use_once(room_id, "altcha:" + challenge_id, ttl_ms):
                raise botcheck.Refused("reused", "altcha: this solution has been used already; solve a new challenge")
        except botcheck.Refused as exc:
            if self.observer is not None:
                self.observer.on_challenge(room_id, exc.reason)
            raise RoomError("challenge_required", f"{exc.message}. GET {challenge_url} for a challenge, solve it (ALTCHA: "
                            "find number in 0..maxNumber with SHA-256(salt + number) == challenge), and send "
                            "{\"altcha\": base64 of the JSON {algorithm, challenge, number, salt, signature}} as the "
                            "join's body", {"reason": exc.reason, "challenge_url": challenge_url}) from None
        if self.observer is not None:
            self.observer.on_challenge(room_id, "accepted")

    def visitor(self, room_id: str, queue_tokens: list[str], request_id: str | None = None) -> str:
        """The request id whose queue token (from join: sent back as a bearer token or the room's HttpOnly cookie)
        the visitor holds. Status, token and hand-off calls from the public API go through this, so knowing
        someone's request id (it is in their access token and the headers the site gets) is not being them."""
        self._room(room_id)
        reason = "missing"
        for token in queue_tokens:  # a bearer token and cookies: the first that is valid
            try:
                claims = self.ring.verify_queue(token, audience=room_id, now_s=self.clock())
            except TokenError as exc:
                reason = exc.reason
                continue
            if request_id is not None and request_id != claims["sub"]:
                raise RoomError("forbidden", "request_id: not the request the queue token was issued for")
            return claims["sub"]
        raise RoomError("unauthorized", f"expected the queue token from join (Authorization: Bearer <queue_token>, "
                                        f"or the room's cookie); {reason}", {"reason": reason})

    async def status(self, room_id: str, request_id: str) -> dict[str, Any]:
        room = self._room(room_id)
        s = room.settings
        if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
            raise RoomError("bad_request", "request_id: expected the id returned by join")
        now = self.clock()
        if self._down_since is not None:
            await self._recover()  # before this poll's heartbeat is checked against the time the store was away
        try:
            res = await self.store.status(room_id, room.nclasses, request_id, int(now * 1000), int(s.heartbeat_s * 1000))
        except OSError:
            self._went_down()
            raise
        self._last_ok = now
        rec = res.record
        if rec is None:
            raise RoomError("not_found", f"request {request_id!r} has not joined room {room_id!r}")
        if res.expired_now:
            self._emit(ev.EXPIRED, room_id, {"request_id": request_id, "position": rec.position})
        c = room.counters
        if c is None:
            c = room.counters = await self.store.counters(room_id, room.nclasses)
        phase = s.phase(now)
        eta = None
        # no ETA where nobody is let in (paused, closed): a number there would be a promise the room cannot keep
        if rec.state == WAITING and phase != "closed" and not c.paused:
            rate = room.admission_rate()
            if rate:
                eta = (res.people_ahead + 1) / rate
                if phase == "pre":  # nobody is admitted before the start: the wait begins then
                    eta += s.schedule_start - now  # type: ignore[operator]  # phase 'pre' means a start is set
                eta = round(eta, 1)
        return {
            "room": room_id, "request_id": request_id, "state": rec.state, "position": rec.position,
            "people_ahead": res.people_ahead, "serving_counter": c.serving_counter, "waiting": c.waiting,
            "eta_s": eta, "refresh_interval_s": s.refresh_interval_s, "paused": c.paused, "phase": phase,
            "event_starts_at": s.schedule_start,
            "sold_out": s.inventory is not None and c.admitted_total >= s.inventory and rec.state == WAITING,
            # the place has closed: a join with the same queue token (the page's cookie) gets one again
            "rejoin": rec.state in (EXPIRED, COMPLETED, ABANDONED),
        }

    async def access_token(self, room_id: str, request_id: str) -> dict[str, Any]:
        room = self._room(room_id)
        s = room.settings
        if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
            raise RoomError("bad_request", "request_id: expected the id returned by join")
        now_ms = int(self.clock() * 1000)
        res = await self.store.issue_token(room_id, room.nclasses, request_id, now_ms, int(s.session_duration_s * 1000))
        if res.outcome == "unknown":
            raise RoomError("not_found", f"request {request_id!r} has not joined room {room_id!r}")
        rec = res.record
        assert rec is not None, f"a known request ({res.outcome!r}) has a record"
        if res.outcome == "waiting":
            raise RoomError("not_admitted", "not admitted yet: keep polling the status", {"position": rec.position})
        if res.outcome == "closed":
            raise RoomError("session_closed", f"the session is {rec.state}; it cannot get a new token",
                            {"state": rec.state})
        iat = rec.changed_ms // 1000
        token = self.ring.select(now_ms / 1000).sign({
            "iss": self.issuer, "aud": room_id, "sub": request_id, "token_use": "access", "queue_position": rec.position,
            "priority_class": s.priority_classes[min(rec.class_rank, room.nclasses - 1)],
            "iat": iat, "nbf": iat, "exp": res.exp_ms // 1000,
        })
        if rec.changed_ms == now_ms:
            self._emit(ev.TOKEN_ISSUED, room_id, {"request_id": request_id, "position": rec.position})
        return {"access_token": token, "token_type": "Bearer", "expires_at": res.exp_ms // 1000,
                "expires_in": max(0, res.exp_ms // 1000 - now_ms // 1000)}

    def openid_configuration(self, jwks_uri: str) -> dict[str, Any]:
        """OpenID Connect discovery (what API Gateway's JWT authorizer and most gateways start from): the issuer,
        where the keys are, and which algorithms they sign with."""
        now = self.clock()
        return {"issuer": self.issuer, "jwks_uri": jwks_uri,
                "id_token_signing_alg_values_supported": sorted({k.alg for k in self.ring.published(now)}),
                "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
                "claims_supported": ["iss", "aud", "sub", "exp", "iat", "nbf", "token_use", "queue_position",
                                     "priority_class"]}

    def jwks(self) -> dict[str, Any]:
        now = self.clock()
        if self._jwks_cache is None or now - self._jwks_cache[0] > 1.0:
            self._jwks_cache = (now, self.ring.jwks(now))
        return self._jwks_cache[1]

    def check_access(self, room_id: str, token: str) -> dict[str, Any]:
        """Forward-auth: the claims of a valid access token for the room (TokenError otherwise). No store
        round trip: the signature, expiry and the room's ended sessions (kept in memory) are the whole check."""
        self._room(room_id)
        claims = self.ring.verify_access(token, audience=room_id, now_s=self.clock())
        ended = self._ended.get(room_id)
        if ended:
            ended_ms = ended.get(claims["sub"])
            # a token taken after the end (the visitor queued again) is a new session's: iat tells them apart
            if ended_ms is not None and claims.get("iat", 0) * 1000 <= ended_ms:
                raise TokenError("ended", "the session was ended")
        return claims

    def renewal_due(self, room_id: str, claims: dict[str, Any]) -> bool:
        """Whether forward-auth should renew this session now: the room renews (max_session_s), the token is past
        half its life, and its session has not reached max_session_s. Checked per request, so no store call."""
        s = self._room(room_id).settings
        if s.max_session_s is None:
            return False
        exp, iat = claims["exp"], claims.get("iat", 0)
        return exp - self.clock() < s.session_duration_s / 2 and exp < iat + s.max_session_s

    async def renew(self, room_id: str, token: str, claims: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """A later-expiring token for an active session (its slot held as long), or None when the session is over
        or cannot be renewed now. Several requests with one token (a page and its assets) share one renewal."""
        done = self._renewed.get(token)
        if done is not None:
            return done
        room = self._room(room_id)
        s = room.settings
        assert s.max_session_s is not None, "renewal_due() is False for rooms that do not renew"
        now_ms = int(self.clock() * 1000)
        exp_ms = await self.store.renew_session(room_id, room.nclasses, claims["sub"], now_ms,
                                                int(s.session_duration_s * 1000), int(s.max_session_s * 1000))
        if exp_ms // 1000 <= claims["exp"]:
            return None
        new_claims = {**claims, "exp": exp_ms // 1000}
        renewed = (self.ring.select(now_ms / 1000).sign(new_claims), new_claims)
        if len(self._renewed) >= 10_000:
            self._renewed.clear()
        self._renewed[token] = renewed
        return renewed

    async def end_session(self, room_id: str, tokens: list[str], status: str = "completed") -> dict[str, Any]:
        """The end-of-session call of the protected site (or the visitor): the holder of an access token ends its
        session, which frees the slot at once (the next waiter is admitted at the next tick). `tokens`: those the
        request carries (an old cookie may come with the current one); the first valid one is ended."""
        reason = "missing"
        for token in tokens:
            try:
                claims = self.check_access(room_id, token)
            except TokenError as exc:
                reason = exc.reason
                continue
            return await self.update_session(room_id, claims["sub"], status)
        raise RoomError("unauthorized", f"expected a valid access token of room {room_id!r} ({reason})")

    async def sync_ended(self, room_id: str) -> None:
        """Learn the sessions other workers ended (see _ended), and forget those whose tokens have all expired."""
        s = self._room(room_id).settings
        now_ms = int(self.clock() * 1000)
        keep_ms = int(s.session_duration_s * 1000) + 60_000  # no token outlives its session's end by more
        # from a little before the newest end seen: workers' clocks differ (ends are stamped with the worker's)
        since = self._ended_since.get(room_id, 0)
        ended = self._ended.setdefault(room_id, {})
        for rid, ended_ms in await self.store.ended_sessions(room_id, max(0, since - ENDED_SKEW_MS), now_ms, keep_ms):
            ended[rid] = max(ended_ms, ended.get(rid, 0))
            since = max(since, ended_ms)
        self._ended_since[room_id] = since
        for rid in [r for r, t in ended.items() if t < now_ms - keep_ms]:
            del ended[rid]

    def verify_queue_token(self, token: str, room_id: str) -> dict[str, Any]:
        return self.ring.verify_queue(token, audience=room_id, now_s=self.clock())

    def verify_access_token(self, token: str, room_id: str) -> dict[str, Any]:
        return self.ring.verify(token, audience=room_id, token_use="access", now_s=self.clock())

    # ---- the inlet ----------------------------------------------------------------------------
    async def tick(self, room_id: str, manual: int = 0) -> AdmitResult:
        """One inlet step: expire silent waiters and ended sessions, then admit per the policy."""
        room = self._room(room_id)
        s = room.settings
        now = self.clock()
        phase = s.phase(now)
        if s.queueing_method == "random" and phase == "open" and not room.shuffled:
            await self.store.shuffle_prequeue(room_id, room.nclasses, secrets.randbits(31))
            room.shuffled = True  # the script shuffles once per room, so a second worker's call is a no-op
        if s.queueing_method == "passthrough" and phase == "open":
            manual = max(manual, 10_000)  # whoever joined the pre-queue of a passthrough room goes straight in
        params = self._inlet(s, phase, manual)
        if self._down_since is not None:
            await self._recover()
        try:
            res = await self.store.admit(room_id, room.nclasses, int(now * 1000), params)
        except OSError:
            self._went_down()
            raise
        self._last_ok = now
        room.counters = res.counters
        room.samples.append((now, res.counters.admitted_total))
        while len(room.samples) > 2 and now - room.samples[0][0] > RATE_WINDOW_S:
            room.samples.popleft()
        if self.observer is not None:
            self.observer.on_counters(room_id, res.counters)
            if res.admitted:
                self.observer.on_admitted(room_id, [max(0.0, now - joined / 1000) for _, _, joined in res.admitted])
        if self.emit is not None:
            for rid, pos, joined in res.admitted:
                self._emit(ev.ADMITTED, room_id, {"request_id": rid, "position": pos,
                                                 "waited_s": round(max(0.0, now - joined / 1000), 3)})
            if res.expired_waiters or res.expired_sessions:
                self._emit(ev.EXPIRED, room_id, {"expired_positions": res.expired_waiters,
                                                "expired_sessions": res.expired_sessions})
            if now - room.last_metrics_s >= 60.0:
                room.last_metrics_s = now
                self._emit(ev.METRICS, room_id, self._counters_dict(room_id, res.counters))
        try:
            await self.sync_ended(room_id)
        except OSError:  # the admissions above are done; forward-auth keeps the ended sessions it knows
            log.warning("room %s: could not read the ended sessions (the store is unavailable)", room_id)
        return res

    @staticmethod
    def _inlet(s: RoomSettings, phase: str, manual: int = 0) -> AdmitParams:
        inlet = s.inlet
        return AdmitParams(
            can_admit=phase == "open" and s.queueing_method in ("fifo", "random"),
            policy=inlet.policy, rate_per_ms=inlet.rate_per_s / 1000.0, burst=max(1, inlet.rate),
            max_active=inlet.max_active, manual=manual, inventory=-1 if s.inventory is None else s.inventory,
            heartbeat_ms=int(s.heartbeat_s * 1000), claim_ms=int(s.claim_timeout * 1000),
            rejoin_grace_ms=int(s.rejoin_grace_s * 1000),
        )

    def _counters_dict(self, room_id: str, c: RoomCounters) -> dict[str, Any]:
        rate = self.rooms[room_id].admission_rate() if room_id in self.rooms else None
        return {"waiting": c.waiting, "active_tokens": c.active, "admitted_total": c.admitted_total,
                "serving_counter": c.serving_counter, "last_position": c.last_position,
                "expired_positions": c.expired_waiters, "expired_tokens": c.expired_sessions,
                "completed": c.completed, "abandoned": c.abandoned, "exempt": c.exempt, "paused": c.paused,
                "admission_rate_per_s": None if rate is None else round(rate, 3)}

    # ---- admin --------------------------------------------------------------------------------
    async def put_room(self, room_id: str, raw: Any) -> dict[str, Any]:
        """Create or change a room. A change of `priority_classes` on a live room keeps every waiter: a class
        that stays (by name) keeps its waiters, a removed one's go to the class `class_mapping` names for it
        (in their order), and a removed class with waiters and no mapping refuses the change."""
        valid_room_id(room_id)
        mapping: Any = None
        if isinstance(raw, dict) and "class_mapping" in raw:
            raw = dict(raw)
            mapping = raw.pop("class_mapping")
        settings = parse_room_settings(room_id, raw, path="room")
        existed = room_id in self.rooms
        await self._change_classes(room_id, settings, mapping)
        await self.store.save_room(room_id, settings.to_dict())
        if not existed or (isinstance(raw, dict) and "paused" in raw):
            await self.store.set_paused(room_id, settings.paused)
        old = self.rooms.get(room_id)
        room = _Room(settings, len(settings.priority_classes))
        if old:
            room.counters, room.samples, room.shuffled = old.counters, old.samples, old.shuffled
        self.rooms[room_id] = room
        return self.room_info(room_id)

    async def _change_classes(self, room_id: str, new: RoomSettings, mapping: Any) -> None:
        stored = (await self.store.load_rooms()).get(room_id)  # the store's, not this worker's possibly older copy
        try:
            old = parse_room_settings(room_id, stored) if stored is not None else None
        except SettingsError:
            old = None
        removed = [c for c in old.priority_classes if c not in new.priority_classes] if old else []
        if mapping is not None:
            if (not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values())
                    or set(mapping) - set(removed) or set(mapping.values()) - set(new.priority_classes)):
                raise RoomError("bad_request", f"class_mapping: expected {{removed class: class of the new "
                                               f"priority_classes}}; removed classes: {removed}, new classes: "
                                               f"{list(new.priority_classes)}")
        if old is None or old.priority_classes == new.priority_classes:
            return
        mapping = mapping or {}
        ranks = [new.class_rank(mapping.get(c, c)) if mapping.get(c, c) in new.priority_classes else -1
                 for c in old.priority_classes]
        refused = await self.store.change_classes(room_id, len(old.priority_classes), len(new.priority_classes), ranks,
                                                  classes_tag(new.priority_classes), new.to_dict())
        if refused:
            names = [old.priority_classes[r] for r in refused]
            example = {n: new.default_class for n in names}
            raise RoomError("conflict", f"priority classes {names} still have people waiting: say which class takes "
                                        f"them, e.g. \"class_mapping\": {json.dumps(example)}, or wait until they "
                                        "are empty", {"classes_with_waiters": names})
        log.info("room %s: priority classes %s -> %s (removed ones mapped %s)", room_id, list(old.priority_classes),
                 list(new.priority_classes), mapping)

    def room_info(self, room_id: str) -> dict[str, Any]:
        d = self._room(room_id).settings.to_dict()
        d["claim_secret"] = "<set>" if d["claim_secret"] else None
        return {"room": room_id, "settings": d}

    async def delete_room(self, room_id: str) -> None:
        room = self._room(room_id)
        await self.store.delete_room(room_id, room.nclasses)
        del self.rooms[room_id]

    async def increment_serving(self, room_id: str, n: int) -> dict[str, Any]:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100_000:
            raise RoomError("bad_request", f"increment: expected an integer 1-100000, got {n!r}")
        res = await self.tick(room_id, manual=n)
        return {"admitted": len(res.admitted), **self._counters_dict(room_id, res.counters)}

    async def set_paused(self, room_id: str, paused: bool) -> dict[str, Any]:
        self._room(room_id)
        await self.store.set_paused(room_id, paused)
        return await self.counters(room_id)

    async def counters(self, room_id: str) -> dict[str, Any]:
        room = self._room(room_id)
        room.counters = await self.store.counters(room_id, room.nclasses)
        return self._counters_dict(room_id, room.counters)

    async def update_session(self, room_id: str, request_id: str, status: str) -> dict[str, Any]:
        room = self._room(room_id)
        if status not in ("completed", "abandoned"):
            raise RoomError("bad_request", f"status: expected 'completed' or 'abandoned', got {status!r}")
        if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
            raise RoomError("bad_request", "request_id: expected the id returned by join")
        now_ms = int(self.clock() * 1000)
        outcome, rec = await self.store.update_session(room_id, room.nclasses, request_id, status, now_ms)
        if outcome == "unknown":
            raise RoomError("not_found", f"request {request_id!r} has not joined room {room_id!r}")
        assert rec is not None, f"a known request ({outcome!r}) has a record"
        if outcome == "conflict":
            raise RoomError("conflict", "a waiting request cannot be completed; abandon it instead")
        if outcome == "closed":
            raise RoomError("session_closed", f"the session is already {rec.state}", {"state": rec.state})
        self._ended.setdefault(room_id, {})[request_id] = now_ms  # this worker's forward-auth refuses it at once
        self._emit(ev.SESSION_UPDATED, room_id, {"request_id": request_id, "status": status, "position": rec.position})
        return {"room": room_id, "request_id": request_id, "state": rec.state, "position": rec.position}

    async def reset(self, room_id: str) -> dict[str, Any]:
        room = self._room(room_id)
        await self.store.reset(room_id, room.nclasses)
        await self.store.set_paused(room_id, room.settings.paused)
        room.samples.clear()
        room.shuffled = False
        return await self.counters(room_id)

    async def rotate_keys(self) -> dict[str, Any]:
        """Publish a new key now; it signs once `key_prepublish_s` has passed (every JWKS cache has it by then)."""
        if self.configured_keys:
            raise RoomError("conflict", "the signing keys come from waitingroom.signing_keys: rotate by changing them "
                                        "(add the next key after the current one, then move it first)")
        await self._load_keys()  # the store's latest, so two rotations do not overwrite each other
        now = self.clock()
        doc = await self.store.load_keys()
        serial = int(doc.get("serial", 0)) if doc else 0
        ring = self.ring
        new = ring.rotate(self.token_alg, now, self._grace_s(), self.key_prepublish_s)
        ring.prune(now)
        if not await self.store.save_keys(self._key_doc(ring, serial + 1), replaces=serial):
            await self._load_keys_again()
            raise RoomError("conflict", "the signing keys changed meanwhile (another rotation): try again")
        self._jwks_cache = None
        return {"active_kid": ring.select(now).kid, "next_kid": new.kid, "next_signs_from": new.signs_from_s,
                "published": [k.kid for k in ring.published(now)]}

