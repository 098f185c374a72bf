"""A real aiohttp server standing in for an API destination, which a test can tell to fail,
slow down or throttle."""
from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from streams.http.app import serve


class Endpoint:
    """POST /: records each JSON body it accepts. `status` is what it answers (200 = accept);
    `throttle_first` answers 429 to that many requests first; `delay` slows every answer."""

    def __init__(self, status: int = 200, delay: float = 0.0, throttle_first: int = 0):
        self.status, self.delay, self.throttle_first = status, delay, throttle_first
        self.received: list[dict] = []
        self.requests = 0
        self.headers: list[dict] = []
        self.url = ""
        self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        self.headers.append(dict(request.headers))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.throttle_first > 0:
            self.throttle_first -= 1
            return web.Response(status=429, text="slow down")
        if self.status >= 300:
            return web.Response(status=self.status, text=f"told to answer {self.status}")
        self.received.append(orjson.loads(body))
        return web.Response(status=200)

    async def __aenter__(self) -> Endpoint:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner, port = await serve(app, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{port}/"
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()


class LookupService:
    """GET /items/{key}: a real aiohttp server standing in for a lookup's HTTP service.

    Answers `rows[key]` as JSON (200), 404 for a key it does not hold, or what `status[key]`
    says (e.g. 503), after `delay[key]` (else `delay_s`) seconds; `body[key]` answers raw bytes.
    Counts requests per key and the most requests it ever had in flight at once."""

    def __init__(self, rows: dict[str, dict] | None = None, delay_s: float = 0.0):
        self.rows = dict(rows or {})
        self.status: dict[str, int] = {}
        self.body: dict[str, bytes] = {}
        self.delay: dict[str, float] = {}
        self.delay_s = delay_s
        self.requests: dict[str, int] = {}
        self.in_flight = self.max_in_flight = 0
        self.url = ""  # with {key}: http://127.0.0.1:<port>/items/{key}
        self._runner = None

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    async def _handle(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        self.requests[key] = self.requests.get(key, 0) + 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay = self.delay.get(key, self.delay_s)
            if delay:
                await asyncio.sleep(delay)
            if key in self.status:
                return web.Response(status=self.status[key], text=f"told to answer {self.status[key]}")
            if key in self.body:
                return web.Response(body=self.body[key], content_type="application/json")
            if key not in self.rows:
                return web.Response(status=404, text="no such item")
            return web.Response(body=orjson.dumps(self.rows[key]), content_type="application/json")
        finally:
            self.in_flight -= 1

    async def __aenter__(self) -> LookupService:
        app = web.Application()
        app.router.add_get("/items/{key}", self._handle)
        self._runner, port = await serve(app, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{port}/items/{{key}}"
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()
