"""The waiting room's port: a lean HTTP/1.1 keep-alive server for the hot public endpoints, and
aiohttp for everything else, on the same socket.

Every waiter polls `GET .../status` every few seconds and every arrival posts `.../join`, so those two
requests are nearly all of the room's own traffic; the proxy in front of the site asks `GET .../auth`
(forward-auth) on every request to it. Through aiohttp about half of each one's CPU time was the
framework (request and response objects, router, writer); here the request line and a few headers
are split by hand and the answer goes out as one bytes object. On tests/bench/waitingroom.py (one
process, 256 connections) that took joins from ~16k/s to ~30k/s and polls from ~21k/s to ~36k/s.
Forward-auth needs no store, so it is answered as soon as it is parsed, without a task. A status poll's
Cookie and Authorization headers are kept too: they carry the visitor's queue token, checked on every poll.

A connection starts on the lean path. The first request that is not a plain HTTP/1.1 join, status or
GET forward-auth (another route or method, chunked body, `Expect`, `Upgrade`, HTTP/1.0, a
percent-encoded path, an oversized head...) hands the connection, with every byte not yet answered,
to aiohttp's own protocol, which then serves it to the end: the waiting page, the admin API, JWKS,
/metrics and every error aiohttp produces stay exactly aiohttp's.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

from streams.http.waitingroom.api import PublicAPI, count_request, error_reply

log = logging.getLogger("eventweir.waitingroom")

MAX_HEAD = 16 * 1024          # a longer request head goes to aiohttp (which answers 431/400)
MAX_BODY = 64 * 1024          # a join body is ~100 bytes; anything bigger goes to aiohttp (1 MiB limit, 413)
MAX_BUFFERED = 256 * 1024     # pipelined bytes held while a request is in flight before reading pauses
KEEPALIVE_S = 75.0            # idle keep-alive connections are closed after this (aiohttp's default)
_ROOM_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_REASONS = {200: b"OK", 302: b"Found", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
            409: b"Conflict", 410: b"Gone", 500: b"Internal Server Error", 503: b"Service Unavailable"}
# what forward-auth reads of a request (api.PublicAPI.forward_auth), by lower-case name
_AUTH_HEADERS = {b"authorization": "Authorization", b"x-original-url": "X-Original-URL", b"host": "Host",
                 b"x-forwarded-proto": "X-Forwarded-Proto", b"x-forwarded-host": "X-Forwarded-Host",
                 b"x-forwarded-uri": "X-Forwarded-Uri"}
_REDIRECT = b"auth/redirect"


class _Date:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self.second = 0
        self.value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.value = formatdate(now, usegmt=True).encode()
        return self.value


class HotPaths:
    """Which requests the lean path answers, and their answers (through the same PublicAPI as aiohttp)."""

    def __init__(self, api: PublicAPI, prefix: str = "/waitingroom"):
        self.api = api
        self.rooms_prefix = (prefix.rstrip("/") + "/rooms/").encode()
        self.date = _Date()
        self.conns: set[_LeanProtocol] = set()

    def match(self, method: bytes, target: bytes) -> tuple[str, str, bytes] | None:
        """(kind, room, rest) for a request the lean path serves, else None: "join" or "status" and the query,
        "auth" (forward-auth) and b"", or "auth_redirect" and what follows .../auth/redirect (query included)."""
        if not target.startswith(self.rooms_prefix):
            return None
        path, _, query = target.partition(b"?")
        room, sep, tail = path[len(self.rooms_prefix):].partition(b"/")
        if not sep or not room or not _ROOM_CHARS.issuperset(room):
            return None  # percent-encoded or odd room names: aiohttp decodes and routes them
        if tail == b"join" and method == b"POST":
            return "join", room.decode(), query
        if tail == b"status" and method == b"GET":
            return "status", room.decode(), query
        if method == b"GET" and tail == b"auth":
            return "auth", room.decode(), b""
        if method == b"GET" and tail.startswith(_REDIRECT) and tail[len(_REDIRECT):len(_REDIRECT) + 1] in (b"", b"/"):
            return "auth_redirect", room.decode(), tail[len(_REDIRECT):] + target[len(path):]  # + "?query" if any
        return None

    async def answer(self, kind: str, room: str, query: bytes, body: bytes,
                     fields: dict[str, str] | None) -> tuple[int, bytes, dict[str, str]]:
        """A join or status request (they wait for the store); `fields`: a status request's credentials."""
        reply: tuple[int, bytes, dict[str, str]]
        try:
            f = fields or {}
            if kind == "join":
                reply = (200, *await self.api.join(room, body, f.get("Cookie", ""), f.get("Authorization", "")))
            else:
                reply = (200, await self.api.status(room, _query_get(query, b"request_id"), f.get("Cookie", ""),
                                                    f.get("Authorization", "")), {})
        except Exception as exc:  # noqa: BLE001 - mapped like aiohttp's handler; anything else is a 500 there too
            reply = _failed(kind, exc)
        count_request(kind, reply[0])
        return reply

    def answer_auth(self, kind: str, room: str, tail: bytes, headers: dict[str, str]
                    ) -> tuple[int, bytes, dict[str, str]] | Awaitable[tuple[int, bytes, dict[str, str]]]:
        """A forward-auth request: no store, so it is answered at once, without a task; only a session's renewal
        (once per half session) waits for the store, and is then returned to await."""
        reply: tuple[int, bytes, dict[str, str]]
        try:
            answer = self.api.forward_auth(
                room, cookies=headers.pop("Cookie", ""), authorization=headers.get("Authorization", ""), headers=headers,
                tail=tail.decode("utf-8", "surrogateescape"), redirect=kind == "auth_redirect")
            if not isinstance(answer, tuple):
                return self._renewal(answer)
            reply = (answer[0], b"", answer[1])
        except Exception as exc:  # noqa: BLE001 - as above
            reply = _failed("auth", exc)
        count_request("auth", reply[0])  # one label for both forms, as aiohttp's routes count them
        return reply

    async def _renewal(self, answer: Awaitable[tuple[int, dict[str, str]]]) -> tuple[int, bytes, dict[str, str]]:
        reply: tuple[int, bytes, dict[str, str]]
        try:
            status, extra = await answer
            reply = (status, b"", extra)
        except Exception as exc:  # noqa: BLE001 - as above
            reply = _failed("auth", exc)
        count_request("auth", reply[0])
        return reply


def _failed(endpoint: str, exc: Exception) -> tuple[int, bytes, dict[str, str]]:
    reply = error_reply(exc)
    if reply is None:
        log.exception("waiting-room %s request failed", endpoint)
        return 500, b'{"error": "internal", "message": "internal server error"}', {}
    return reply


def _query_get(query: bytes, name: bytes) -> str | None:
    """The first value of `name` in a query string, decoded as aiohttp's request.query does."""
    want = name.decode()
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        if key == name or ((b"%" in key or b"+" in key) and unquote_plus(key.decode("utf-8", "replace")) == want):
            text = value.decode("utf-8", "replace")
            return unquote_plus(text) if "%" in text or "+" in text else text
    return None


class _LeanProtocol(asyncio.Protocol):
    """One client connection: serves join/status requests in order until one needs aiohttp."""

    def __init__(self, hot: HotPaths, fallback: Callable[[], asyncio.Protocol]):
        self.hot = hot
        self.fallback = fallback
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.busy = False            # a request is being answered (responses go out in request order)
        self.write_paused = False
        self.read_paused = False
        self.idle_since = time.monotonic()

    # ---- asyncio callbacks -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.hot.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.hot.conns.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        if self.busy or self.write_paused:
            if len(self.buf) > MAX_BUFFERED and not self.read_paused:
                self.read_paused = True
                transport = self.transport
                assert transport is not None, "data arrives only while connected"
                transport.pause_reading()
            return
        self._process()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.busy:
            self._process()

    # ---- requests --------------------------------------------------------------------------------
    def _process(self) -> None:
        """Start the next complete request in the buffer (one at a time), or hand the connection over."""
        while self.buf and not self.busy and not self.write_paused and self.transport is not None:
            buf = self.buf
            end = buf.find(b"\r\n\r\n")
            head_end = end if end >= 0 else len(buf)
            if buf.count(b"\n", 0, head_end) != buf.count(b"\r\n", 0, head_end):
                # a bare LF: the request would never complete here (or hide a header); aiohttp answers 400
                self._hand_over()
                return
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self._hand_over()
                return
            if end > MAX_HEAD:
                self._hand_over()
                return
            line_end = buf.find(b"\r\n")
            parts = buf[:line_end].split(b" ")
            if len(parts) != 3 or parts[2] != b"HTTP/1.1":
                self._hand_over()
                return
            route = self.hot.match(parts[0], parts[1])
            if route is None:
                self._hand_over()
                return
            length, close = -1, False
            # what forward-auth reads, and the credentials of a status poll or a returning visitor's join
            fields: dict[str, str] = {}
            if line_end < end:
                for line in buf[line_end + 2:end].split(b"\r\n"):
                    name, sep, value = line.partition(b":")
                    if not sep or name != name.strip():
                        self._hand_over()  # malformed: aiohttp answers 400
                        return
                    name = name.lower()
                    if name == b"content-length":
                        value = value.strip()
                        if length >= 0 or not value.isdigit():
                            self._hand_over()  # repeated or odd lengths: aiohttp decides
                            return
                        length = int(value)
                    elif name in (b"transfer-encoding", b"expect", b"upgrade"):
                        self._hand_over()
                        return
                    elif name == b"connection":
                        value = value.lower()
                        if b"upgrade" in value:
                            self._hand_over()
                            return
                        close = b"close" in value
                    elif name == b"cookie" or name in _AUTH_HEADERS:
                        text = value.strip().decode("utf-8", "surrogateescape")
                        if name == b"cookie":  # several Cookie headers are one list, as aiohttp's handler joins them
                            fields["Cookie"] = fields["Cookie"] + "; " + text if "Cookie" in fields else text
                        elif name in _AUTH_HEADERS:
                            if _AUTH_HEADERS[name] in fields:
                                self._hand_over()  # a repeated Host (400) or other header: aiohttp decides
                                return
                            fields[_AUTH_HEADERS[name]] = text
            length = max(length, 0)
            if length > MAX_BODY:
                self._hand_over()
                return
            total = end + 4 + length
            if len(buf) < total:
                return  # the body is still coming
            body = buf[end + 4:total]
            self.buf = buf[total:]
            kind, room, query = route
            if kind.startswith("auth"):  # forward-auth waits for nothing: answered here, in order, no task
                transport = self.transport
                auth = self.hot.answer_auth(kind, room, query, fields)
                if not isinstance(auth, tuple):  # a renewal: the store is asked, in order like a join
                    self.busy = True
                    asyncio.get_running_loop().create_task(self._serve(auth, close))
                    return
                self._write(transport, *auth, close)
                if close:
                    return
                if self.read_paused and len(self.buf) <= MAX_BUFFERED:
                    self.read_paused = False
                    transport.resume_reading()
                continue
            self.busy = True
            asyncio.get_running_loop().create_task(self._serve(self.hot.answer(kind, room, query, body, fields), close))

    def _write(self, transport: asyncio.Transport, status: int, out: bytes, headers: dict[str, str], close: bool) -> None:
        extra = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in headers.items()) if headers else b""
        ctype = b"Content-Type: application/json\r\n" if out else b""  # forward-auth answers have no body
        transport.write(b"HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\nDate: %s\r\n%s%s\r\n%s" % (
            status, _REASONS.get(status, b"Error"), ctype, len(out), self.hot.date.get(), extra,
            b"Connection: close\r\n" if close else b"", out))
        if close:
            transport.close()
        self.idle_since = time.monotonic()

    async def _serve(self, answer: Awaitable[tuple[int, bytes, dict[str, str]]], close: bool) -> None:
        status, out, headers = await answer
        transport = self.transport
        if transport is None:
            return  # the client left
        self._write(transport, status, out, headers, close)
        if close:
            return
        self.busy = False
        if self.read_paused and len(self.buf) <= MAX_BUFFERED:
            self.read_paused = False
            transport.resume_reading()
        if self.buf:
            self._process()

    def _hand_over(self) -> None:
        """From now on aiohttp serves this connection, starting with the bytes not answered yet."""
        transport, buf = self.transport, self.buf
        self.hot.conns.discard(self)
        self.transport, self.buf = None, b""
        assert transport is not None, "a connection is handed over while connected"
        proto = self.fallback()
        transport.set_protocol(proto)
        proto.connection_made(transport)
        if self.read_paused:
            transport.resume_reading()
        if self.write_paused:
            proto.pause_writing()
        if buf:
            proto.data_received(buf)

    def close_if_idle(self, now: float, idle_s: float) -> None:
        if not self.busy and now - self.idle_since > idle_s and self.transport is not None:
            self.transport.close()


class WaitingRoomServer:
    """An aiohttp app served on one port with the lean path in front of it."""

    def __init__(self, app: web.Application, api: PublicAPI, prefix: str = "/waitingroom"):
        self.app = app
        self.hot = HotPaths(api, prefix)
        self.runner = web.AppRunner(app, access_log=None)
        self.server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task | None = None
        self.port = 0

    async def start(self, host: str, port: int, *, backlog: int = 1024) -> int:
        """Run the app's start-up, then listen; returns the bound port (useful with port 0)."""
        await self.runner.setup()
        fallback = self.runner.server
        assert fallback is not None, "runner.setup() made the aiohttp server"
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _LeanProtocol(self.hot, fallback), host, port,
                                               backlog=backlog, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]
        self._sweeper = loop.create_task(self._sweep())
        return self.port

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S / 5)
            now = time.monotonic()
            for conn in list(self.hot.conns):
                conn.close_if_idle(now, KEEPALIVE_S)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop listening, let answers in flight go out, close the lean connections, then aiohttp's cleanup."""
        if self.server is not None:
            self.server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        deadline = time.monotonic() + grace_s
        while any(c.busy for c in self.hot.conns) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.hot.conns):
            if conn.transport is not None:
                conn.transport.close()
        await self.runner.cleanup()


def serve_with_lean_path(app: web.Application, service: Any, prefix: str = "/waitingroom") -> WaitingRoomServer:
    """The server for an app that has the waiting-room routes (add_waitingroom_routes) mounted under `prefix`."""
    return WaitingRoomServer(app, PublicAPI(service, prefix), prefix)
