"""A real aiohttp server standing in for an API destination, which a test can tell to fail,
slow down or throttle."""
from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from streams.http import serve


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

    async def __aenter__(self) -> "Endpoint":
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner, port = await serve(app, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{port}/"
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()
