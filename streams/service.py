"""Run a worker as a process: HTTP port, signal handling, clean exit within the grace period."""
from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from streams.config import Config
from streams.http.app import make_app, serve
from streams.http.waitingroom.api import add_waitingroom_routes, waitingroom_lifecycle
from streams.http.waitingroom.server import serve_with_lean_path
from streams.runtime.worker import Worker

if TYPE_CHECKING:
    from streams.runtime.faust import FaustWorker

log = logging.getLogger(__name__)


def build_waitingroom(config: Config):
    """The waiting-room service the config asks for, or None; a bad setting raises ConfigError."""
    if not config.waitingroom:
        return None
    from processors.waitingroom.settings import SettingsError
    from streams.config import ConfigError
    from streams.http.waitingroom.api import build_waitingroom_service

    try:
        return build_waitingroom_service(config.waitingroom.service_settings(config.bus.account, config.bus.region))
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None


def worker_app(worker: Worker | FaustWorker, public_routes: bool = True):
    """The worker's HTTP app: health and metrics, plus the waiting room's routes when it has one
    (its public ones only when they share this port: `public_routes`)."""
    app = make_app(worker)
    if worker.waitingroom is not None:
        add_waitingroom_routes(app, worker.waitingroom, public_routes=public_routes)
        app.cleanup_ctx.append(waitingroom_lifecycle(worker.waitingroom))
    return app


def public_app(worker: Worker | FaustWorker):
    """The public listener's app: the waiting room's public routes and nothing else."""
    app = web.Application()
    add_waitingroom_routes(app, worker.waitingroom, admin_routes=False)
    return app


async def run_worker(config: Config, worker: Worker | FaustWorker | None = None, on_started=None,
                     on_public=None) -> int:
    """Serve and run the worker until it stops. `on_started(worker, port)`: once the private
    listener is up; `on_public(port)`: once the public one is (http.public)."""
    waitingroom = worker.waitingroom if worker else build_waitingroom(config)
    worker = worker or Worker(config, waitingroom=waitingroom)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, worker.request_stop)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    public = config.http.public if worker.waitingroom is not None else None
    app = worker_app(worker, public_routes=public is None)
    cleanups: list[Callable[..., Awaitable[Any]]] = []
    if worker.waitingroom is not None and public is None:
        # waiting-room joins and status polls take the lean path; the rest of the port is aiohttp's
        log.warning("the waiting room's public routes share the private port with /metrics and the APIs; set "
                    "http.public to give them a listener of their own, the only one to expose")
        server = serve_with_lean_path(app, worker.waitingroom)
        port = await server.start(config.http.host, config.http.port)
        cleanups.append(server.stop)
    else:
        runner, port = await serve(app, config.http.host, config.http.port)
        cleanups.append(runner.cleanup)
    if public is not None:
        public_server = serve_with_lean_path(public_app(worker), worker.waitingroom)
        public_port = await public_server.start(public.host, public.port)
        cleanups.insert(0, public_server.stop)
        log.info("serving the waiting room's public routes on http://%s:%d", public.host, public_port)
        if on_public:
            on_public(public_port)
    log.info("serving /healthz /readyz /metrics on http://%s:%d", config.http.host, port)
    try:
        if on_started:
            on_started(worker, port)
        await worker.run()
    finally:
        for cleanup in cleanups:
            await cleanup()
    return 0
