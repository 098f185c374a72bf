"""A minimal pipelined Redis connection for the waiting room's hot path (EVALSHA only).

redis-py spends ~80 us per command packing and parsing in Python; at thousands of joins a second
that is most of a core. Here the fixed part of each command (EVALSHA, digest, key names) is packed
once per room, replies are parsed by hiredis (C), and every command issued during one event-loop
iteration goes out in one write. Redis answers a connection in order, so a FIFO of futures matches
replies to callers.
"""
from __future__ import annotations

import asyncio
import ssl as ssl_mod
from collections import deque
from typing import Any
from urllib.parse import unquote, urlparse

import hiredis


class RedisReplyError(Exception):
    """Redis answered with an error (e.g. NOSCRIPT, or a script error)."""


def _bulk(arg: Any) -> bytes:
    if isinstance(arg, bytes):
        b = arg
    elif isinstance(arg, str):
        b = arg.encode()
    else:
        b = str(arg).encode()
    return b"$%d\r\n%s\r\n" % (len(b), b)


def pack_command(*args: Any) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(_bulk(a) for a in args)


class EvalShaPrefix:
    """The packed head of `EVALSHA sha numkeys key...`; `pack(args)` appends the varying ARGV."""

    __slots__ = ("head", "nfixed", "_stars")

    def __init__(self, sha: str, keys: tuple[str, ...]):
        self.nfixed = 3 + len(keys)
        self.head = b"".join(_bulk(a) for a in ("EVALSHA", sha, len(keys), *keys))
        self._stars: dict[int, bytes] = {}

    def pack(self, args: tuple[Any, ...], tail: bytes = b"", ntail: int = 0) -> bytes:
        """`tail`: `ntail` more ARGV packed already (pack_args), for arguments that are the same call after call."""
        n = len(args) + ntail
        start = self._stars.get(n)
        if start is None:
            start = self._stars[n] = b"*%d\r\n" % (self.nfixed + n) + self.head
        parts = [start]
        for a in args:  # the hot loop of every join and poll: type() checks, no generator
            t = type(a)
            b = a.encode() if t is str else (b"%d" % a if t is int else (a if t is bytes else str(a).encode()))
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        if tail:
            parts.append(tail)
        return b"".join(parts)


def pack_args(*args: Any) -> bytes:
    """ARGV packed once, for EvalShaPrefix.pack's `tail`."""
    return b"".join(_bulk(a) for a in args)


class _Protocol(asyncio.Protocol):
    def __init__(self, conn: RespConnection):
        self.conn = conn
        self.reader = hiredis.Reader(replyError=RedisReplyError)
        self.current = True  # False once the connection gave up on it (stalled): its end then concerns nobody

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        conn = self.conn
        waiting = conn._waiting
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            conn._replies += 1
            fut = waiting.popleft()
            if not fut.done():
                fut.set_result(reply)  # errors are returned as RedisReplyError values, the caller decides

    def connection_lost(self, exc: Exception | None) -> None:
        if self.current:
            self.conn._lost(exc)


class RespConnection:
    """`timeout_s`: a Redis that takes no request in this long (hung, a network partition that drops packets
    rather than resetting) fails every call in flight with TimeoutError, an OSError like any other outage, and
    the next call connects afresh: replies are matched to calls by order, so a late one cannot be waited for."""

    def __init__(self, url: str, timeout_s: float = 5.0):
        u = urlparse(url)
        if u.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"redis_url: expected redis://, rediss:// or unix://, got {url!r}")
        self.scheme = u.scheme
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 6379
        self.path = u.path if u.scheme == "unix" else None
        self.username = unquote(u.username) if u.username else None
        self.password = unquote(u.password) if u.password else None
        db = u.path.lstrip("/") if u.scheme != "unix" else ""
        self.db = int(db) if db else 0
        self._transport: asyncio.Transport | None = None
        self._waiting: deque[asyncio.Future] = deque()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._connecting: asyncio.Future | None = None
        self.timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._replies = 0  # replies received: the watchdog's measure of progress
        self._watchdog: asyncio.TimerHandle | None = None

    async def _connect(self) -> None:
        try:
            await asyncio.wait_for(self._open(), self.timeout_s)
        except TimeoutError:
            self._waiting.clear()  # the setup commands' (nobody else uses a connection that is not up yet)
            raise TimeoutError(f"Redis did not answer within {self.timeout_s:g} s while connecting") from None

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        if self.path:
            transport, proto = await loop.create_unix_connection(lambda: _Protocol(self), self.path)
        else:
            ctx = ssl_mod.create_default_context() if self.scheme == "rediss" else None
            transport, proto = await loop.create_connection(lambda: _Protocol(self), self.host, self.port, ssl=ctx)
        self._protocol = proto
        try:
            await self._setup(loop, transport)
        except BaseException:  # also cancelled by the timeout: no half-set-up connection is left open
            proto.current = False
            transport.abort()
            raise
        self._transport = transport

    async def _setup(self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport) -> None:
        setup = []
        if self.password:
            setup.append(pack_command("AUTH", *([self.username] if self.username else []), self.password))
        if self.db:
            setup.append(pack_command("SELECT", self.db))
        # written before anyone else can use the connection, so every later command runs authenticated, on db
        futs = [loop.create_future() for _ in setup]
        self._waiting.extend(futs)
        if setup:
            transport.write(b"".join(setup))
        for fut in futs:
            reply = await fut
            if isinstance(reply, RedisReplyError):
                raise reply

    async def ensure_connected(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            return
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        try:
            await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def call(self, packed: bytes) -> Any:
        if self._transport is None or self._transport.is_closing():
            await self.ensure_connected()
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._waiting.append(fut)
        self._out.append(packed)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        if self._transport is None or self._transport.is_closing():
            self._lost(ConnectionError("Redis connection closed"))
            return
        self._transport.write(b"".join(out))
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(self.timeout_s, self._watch, self._replies)

    def _watch(self, replies_then: int) -> None:
        """Every timeout_s while calls are in flight: no reply at all since the last look means Redis stalled
        (a call then waited between timeout_s and twice that)."""
        self._watchdog = None
        if not self._waiting:
            return
        if self._replies != replies_then:
            self._watchdog = asyncio.get_running_loop().call_later(self.timeout_s, self._watch, self._replies)
            return
        transport, proto = self._transport, self._protocol
        if proto is not None:
            proto.current = False
        self._lost(TimeoutError(f"no reply within {self.timeout_s:g} s"))
        if transport is not None:
            transport.abort()

    def _lost(self, exc: Exception | None) -> None:
        self._transport = None
        err: OSError
        if isinstance(exc, TimeoutError):
            err = TimeoutError(f"Redis did not answer: {exc}")
        else:
            err = ConnectionError(f"Redis connection lost: {exc}" if exc else "Redis connection closed")
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_exception(err)
        self._out.clear()

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
