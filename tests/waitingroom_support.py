"""Shared helpers for the waiting-room tests: a real Redis store under a per-test key prefix, a
controllable clock, and a service factory."""
from __future__ import annotations

import uuid

import pytest_asyncio

from processors.waitingroom.redis_store import RedisRoomStore
from processors.waitingroom.service import WaitingRoomService

REDIS_URL = "redis://127.0.0.1:6379/0"
ADMIN_TOKEN = "admin-token-for-tests-0123456789"


class FakeClock:
    """Time the tests move by hand (Redis only ever sees the times the service passes it)."""

    def __init__(self, start: float = 1_800_000_000.0):
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


async def delete_prefix(client, prefix: str) -> None:
    keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await client.delete(*keys)


@pytest_asyncio.fixture
async def redis_prefix():
    prefix = f"test:wr:{uuid.uuid4().hex[:10]}:"
    yield prefix
    store = RedisRoomStore.from_url(REDIS_URL, prefix)
    await delete_prefix(store.redis, prefix)
    await store.close()


@pytest_asyncio.fixture
async def store(redis_prefix):
    s = RedisRoomStore.from_url(REDIS_URL, redis_prefix)
    yield s
    await s.close()


async def make_service(store, rooms=None, clock=None, **kw) -> WaitingRoomService:
    svc = WaitingRoomService(store, admin_token=ADMIN_TOKEN, clock=clock or FakeClock(), **kw)
    await svc.start(rooms or {}, run_inlet=False)
    return svc


class ApiClient:
    """An HTTP client of one running waiting-room server; `close()` also stops the server (the worker goes)."""

    def __init__(self, session, server, base: str):
        self.session, self.server, self.base = session, server, base

    def make_url(self, path: str) -> str:
        return self.base + path

    def request(self, method: str, path: str, **kw):
        return self.session.request(method, self.base + path, **kw)

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw):
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw):
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw):
        return self.request("DELETE", path, **kw)

    async def close(self) -> None:
        await self.session.close()
        await self.server.stop()


async def start_api(prefix: str, rooms=None, *, port: int = 0, **config):
    """The real server (lean path for join/status in front of the aiohttp app) on a free port: (client, service).
    Rooms that do not say otherwise have no bot protection: these tests are about the queue (the challenge has
    its own, tests/integration/test_waitingroom_bots.py)."""
    import aiohttp
    from aiohttp import web

    from streams.http.waitingroom.api import add_waitingroom_routes, build_waitingroom_service, waitingroom_lifecycle
    from streams.http.waitingroom.server import serve_with_lean_path

    service = build_waitingroom_service({"redis_url": REDIS_URL, "key_prefix": prefix, "admin_token": ADMIN_TOKEN,
                                         "rooms": unprotected(rooms or {}), **config})
    app = web.Application()
    add_waitingroom_routes(app, service)
    app.cleanup_ctx.append(waitingroom_lifecycle(service))
    server = serve_with_lean_path(app, service)
    port = await server.start("127.0.0.1", port)
    return ApiClient(aiohttp.ClientSession(), server, f"http://127.0.0.1:{port}"), service


def unprotected(rooms: dict) -> dict:
    """The rooms, with bot_protection off where they do not set it."""
    return {room: {"bot_protection": False, **settings} for room, settings in rooms.items()}


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def visitor(joined: dict) -> dict:
    """The headers of the visitor who got `joined` (join's answer): their queue token, the proof of their place."""
    return {"Authorization": f"Bearer {joined['queue_token']}"}


class RedisOutage:
    """A TCP relay to the test Redis that can be cut and restored: a store pointed at `url` meets a real outage
    (connections reset, then refused) and a real recovery, while Redis itself and other tests carry on."""

    def __init__(self) -> None:
        import asyncio

        self.port = 0
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.stalled = False  # stall(): connections stay open and take commands, Redis never sees them

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def up(self) -> None:
        import asyncio

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    if self.stalled:
                        continue  # swallowed: no answer ever comes
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def relay(client_r, client_w):
            if self.stalled:  # accepts, reads, never answers
                self.writers.add(client_w)
                while await client_r.read(65536):
                    pass
                return
            redis_r, redis_w = await asyncio.open_connection("127.0.0.1", 6379)
            self.writers.update((client_w, redis_w))
            await asyncio.gather(pipe(client_r, redis_w), pipe(redis_r, client_w))

        self.server = await asyncio.start_server(relay, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    def stall(self, stalled: bool = True) -> None:
        """A hung Redis (or a partition that drops packets): connections stay up, commands get no answer."""
        self.stalled = stalled

    async def down(self) -> None:
        """Close the listener (new connections are refused) and every open connection."""
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        self.writers.clear()
        await self.server.wait_closed()
        self.server = None
