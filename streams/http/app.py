"""The worker's one HTTP port: /healthz, /readyz, /metrics, the EventBridge API at POST / (and the
APIs other modules mount)."""
from __future__ import annotations

from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.config import Config


class ServedWorker(Protocol):
    """What the HTTP endpoints read of the worker (streams.runtime.worker.Worker, FaustWorker)."""

    @property
    def config(self) -> Config: ...

    @property
    def ready(self) -> tuple[bool, str]: ...


WORKER_KEY = web.AppKey("worker", ServedWorker)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    worker = request.app[WORKER_KEY]
    ready, reason = worker.ready
    return web.json_response({"ready": ready, "reason": reason}, status=200 if ready else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_app(worker: ServedWorker) -> web.Application:
    app = web.Application()
    app[WORKER_KEY] = worker
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    if worker.config.api.enabled:
        from streams.http.eventbridge.api import mount_eventbridge_api

        mount_eventbridge_api(app, worker)  # POST / with X-Amz-Target: AWSEvents.*
    return app


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (for cleanup) and the bound port (useful with port 0)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]  # the real port when 0 was asked for (the runner's one site)
    return runner, bound
