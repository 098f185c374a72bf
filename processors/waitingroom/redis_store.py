"""`RoomStore` on Redis: one EVALSHA per operation, pipelined.

Hot operations (join, status, admit, token, session) go through `RespConnection`: every call made
during one event-loop iteration is sent in one write, so under load a thousand concurrent joins cost
one round trip, not a thousand. Rare operations (rooms, keys, reset) use redis.asyncio. This is the
one I/O module processors/ owns (see ARCHITECTURE.md).
"""
from __future__ import annotations

import asyncio
import hashlib
import secrets
from typing import Any

import orjson
import redis.asyncio as aioredis

from .lua import SCRIPTS
from .resp import EvalShaPrefix, RedisReplyError, RespConnection, pack_args
from .store import AdmitParams, AdmitResult, IssueResult, JoinResult, RoomCounters, RoomStore, SessionRecord, StatusResult

# compare-and-set of the key document: rotations by two workers at once must not overwrite each other
_SAVE_KEYS = """
local cur = redis.call('GET', KEYS[1])
if ARGV[2] == 'absent' then
  if cur then return 0 end
elseif ARGV[2] ~= '' then
  if not cur or (cjson.decode(cur)['serial'] or 0) ~= tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[2])
return 1
"""
_SHA = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in SCRIPTS.items()}


def _counters(raw: list[Any]) -> RoomCounters:
    (served, serving, seq, waiting, active, expired, expired_s, completed, abandoned, exempt, paused) = (int(x) for x in raw)
    return RoomCounters(admitted_total=served, serving_counter=serving, last_position=seq, waiting=waiting,
                        active=active, expired_waiters=expired, expired_sessions=expired_s, completed=completed,
                        abandoned=abandoned, exempt=exempt, paused=bool(paused))


class RedisRoomStore(RoomStore):
    def __init__(self, client: aioredis.Redis, fast: RespConnection, prefix: str = "eventweir:wr:"):
        self.redis = client  # redis-py: admin and rare operations
        self.fast = fast     # the hot path: one pipelined connection, EVALSHA only
        self.prefix = prefix
        self._keys: dict[tuple[str, int], tuple[str, ...]] = {}
        self._prefixes: dict[tuple[str, tuple[str, ...]], EvalShaPrefix] = {}
        self._loading: asyncio.Task | None = None
        self._join_tails: dict[tuple[Any, ...], bytes] = {}

    @classmethod
    def from_url(cls, url: str = "redis://127.0.0.1:6379/0", prefix: str = "eventweir:wr:",
                 max_connections: int = 32, timeout_s: float = 5.0) -> RedisRoomStore:
        """`timeout_s`: a call Redis does not answer in this long fails (an outage: 503 and retry), rather than
        hanging the polls and admin calls that wait on it."""
        # a blocking pool: a burst of admin calls waits for a free connection instead of failing
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=10,
                                                        socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        return cls(aioredis.Redis(connection_pool=pool), RespConnection(url, timeout_s), prefix)

    # ---- keys ---------------------------------------------------------------------------------
    def room_keys(self, room: str, nclasses: int) -> tuple[str, ...]:
        keys = self._keys.get((room, nclasses))
        if keys is None:
            base = f"{self.prefix}{{{room}}}:"
            keys = ((base + "meta", base + "reqs", base + "hb", base + "active") + tuple(f"{base}q{c}" for c in range(nclasses))
                    + (base + "claims", base + "gone"))
            self._keys[(room, nclasses)] = keys
        return keys

    def _ended_key(self, room: str) -> str:
        return f"{self.prefix}{{{room}}}:ended"

    def _cfg_key(self, room: str) -> str:
        return f"{self.prefix}{{{room}}}:cfg"

    # ---- pipelined EVALSHA -------------------------------------------------------------------
    async def load_scripts(self) -> None:
        for name, src in SCRIPTS.items():
            sha = await self.redis.script_load(src)
            assert sha == _SHA[name], "Redis computed a different script digest"

    async def _reload_scripts(self) -> None:
        """One load for every call that met NOSCRIPT at once (a burst of joins after a Redis restart)."""
        if self._loading is None or self._loading.done():
            self._loading = asyncio.ensure_future(self.load_scripts())
        await asyncio.shield(self._loading)

    async def _call(self, script: str, keys: tuple[str, ...], args: tuple[Any, ...], tail: bytes = b"",
                    ntail: int = 0) -> Any:
        prefix = self._prefixes.get((script, keys))
        if prefix is None:
            prefix = self._prefixes[(script, keys)] = EvalShaPrefix(_SHA[script], keys)
        packed = prefix.pack(args, tail, ntail)
        reply = await self.fast.call(packed)
        if isinstance(reply, RedisReplyError):
            if not str(reply).startswith("NOSCRIPT"):
                raise reply
            await self._reload_scripts()  # Redis restarted or SCRIPT FLUSH: load again and retry once
            reply = await self.fast.call(packed)
            if isinstance(reply, RedisReplyError):
                raise reply
        return reply

    # ---- operations ---------------------------------------------------------------------------
    async def join(self, room, nclasses, request_id, now_ms, *, method, phase, class_rank, inventory, exempt, claim_ms,
                   claim_id="", claim_exp_ms=0, inlet=None, classes_tag="", rejoin_grace_ms=-1):
        # the room's part of the arguments is the same join after join: packed once (joins are the hot path)
        key = (inlet, nclasses, classes_tag)
        tail = self._join_tails.get(key)
        if tail is None:
            p = inlet or AdmitParams(can_admit=False, policy="manual")
            if len(self._join_tails) > 1024:
                self._join_tails.clear()
            tail = self._join_tails[key] = pack_args(p.policy, repr(p.rate_per_ms), p.burst, p.max_active, nclasses,
                                                     classes_tag)
        outcome, rec = await self._call("join", self.room_keys(room, nclasses), (
            request_id, now_ms, method, phase, class_rank, inventory, 1 if exempt else 0, claim_ms, claim_id, claim_exp_ms,
            rejoin_grace_ms), tail, 6)
        return JoinResult(outcome.decode(), SessionRecord.parse(rec) if rec else None)

    async def status(self, room, nclasses, request_id, now_ms, heartbeat_ms):
        rec, ahead, expired = await self._call("status", self.room_keys(room, nclasses), (request_id, now_ms, heartbeat_ms))
        return StatusResult(SessionRecord.parse(rec) if rec else None, ahead, bool(expired))

    async def admit(self, room, nclasses, now_ms, p: AdmitParams):
        counters, expired_w, expired_s, out = await self._call("admit", self.room_keys(room, nclasses), (
            now_ms, 1 if p.can_admit else 0, p.policy, repr(p.rate_per_ms), p.burst, p.max_active, p.manual,
            p.inventory, p.heartbeat_ms, p.claim_ms, nclasses, p.limit, p.rejoin_grace_ms))
        admitted = [(out[i].decode(), int(out[i + 1]), int(out[i + 2])) for i in range(0, len(out), 3)]
        return AdmitResult(_counters(counters), admitted, expired_w, expired_s)

    async def issue_token(self, room, nclasses, request_id, now_ms, session_ms):
        outcome, rec, exp = await self._call("issue", self.room_keys(room, nclasses), (request_id, now_ms, session_ms))
        return IssueResult(outcome.decode(), SessionRecord.parse(rec) if rec else None, int(exp))

    async def update_session(self, room, nclasses, request_id, status, now_ms):
        outcome, rec = await self._call("update_session", self.room_keys(room, nclasses) + (self._ended_key(room),),
                                        (request_id, status, now_ms))
        return outcome.decode(), (SessionRecord.parse(rec) if rec else None)

    async def renew_session(self, room, nclasses, request_id, now_ms, session_ms, max_session_ms):
        outcome, exp = await self._call("renew", self.room_keys(room, nclasses),
                                        (request_id, now_ms, session_ms, max_session_ms))
        return int(exp) if outcome == b"renewed" else 0

    async def ended_sessions(self, room, since_ms, now_ms, keep_ms):
        flat = await self._call("ended", (self._ended_key(room),), (since_ms, now_ms, keep_ms))
        return [(flat[i].decode(), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def change_classes(self, room, old_n, new_n, mapping, tag, settings):
        keys = self.room_keys(room, max(old_n, new_n)) + (self._cfg_key(room),)
        outcome, detail = await self.redis.eval(SCRIPTS["classes"], len(keys), *keys, old_n, new_n, tag,
                                                   orjson.dumps(settings), *mapping)
        return [int(r) for r in detail] if outcome == b"refused" else []

    async def record_outage(self, room, nclasses, start_ms, end_ms):
        return int(await self._call("outage", self.room_keys(room, nclasses), (start_ms, end_ms)))

    async def shuffle_prequeue(self, room, nclasses, seed):
        return int(await self._call("shuffle", self.room_keys(room, nclasses), (seed, nclasses)))

    async def counters(self, room, nclasses):
        return _counters(await self._call("counters", self.room_keys(room, nclasses), (nclasses,)))

    async def set_paused(self, room, paused):
        await self.redis.hset(self.room_keys(room, 1)[0], "paused", 1 if paused else 0)

    async def reset(self, room, nclasses):
        await self.redis.delete(*self.room_keys(room, max(nclasses, 16)), self._ended_key(room))

    # ---- rooms and keys -----------------------------------------------------------------------
    async def save_room(self, room, settings):
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._cfg_key(room), orjson.dumps(settings))
            pipe.sadd(self.prefix + "rooms", room)
            pipe.incr(self.prefix + "version")
            await pipe.execute()

    async def delete_room(self, room, nclasses):
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._cfg_key(room), *self.room_keys(room, max(nclasses, 16)), self._ended_key(room))
            pipe.srem(self.prefix + "rooms", room)
            pipe.incr(self.prefix + "version")
            await pipe.execute()

    async def load_rooms(self):
        names = sorted(n.decode() for n in await self.redis.smembers(self.prefix + "rooms"))
        if not names:
            return {}
        raws = await self.redis.mget([self._cfg_key(n) for n in names])
        return {n: orjson.loads(r) for n, r in zip(names, raws) if r is not None}

    async def save_keys(self, doc, *, only_if_absent=False, replaces=None):
        mode = "absent" if only_if_absent else ("" if replaces is None else str(int(replaces)))
        ok = await self.redis.eval(_SAVE_KEYS, 2, self.prefix + "keys", self.prefix + "version", orjson.dumps(doc), mode)
        return bool(ok)

    async def load_keys(self):
        raw = await self.redis.get(self.prefix + "keys")
        return orjson.loads(raw) if raw else None

    async def use_once(self, room, key, ttl_ms):
        return bool(await self.redis.set(f"{self.prefix}{{{room}}}:used:{key}", b"1", nx=True, px=max(1, ttl_ms)))

    async def shared_secret(self, name):
        key = f"{self.prefix}secret:{name}"
        await self.redis.set(key, secrets.token_bytes(32), nx=True)  # the first worker's; the others read it
        value = await self.redis.get(key)
        assert value is not None and len(value) == 32, "set just now unless another worker had"
        return value

    async def version(self):
        return int(await self.redis.get(self.prefix + "version") or 0)

    async def close(self):
        await self.fast.close()
        await self.redis.aclose()
