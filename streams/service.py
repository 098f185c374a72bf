"""Run a worker as a process: HTTP port, signal handling, clean exit within the grace period."""
from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from streams.config import Config
from streams.http.app import make_app, serve
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


def worker_app(worker: Worker | FaustWorker):
    """The worker's HTTP app: health and metrics, plus the waiting-room API when it has one."""
    app = make_app(worker)
    if worker.waitingroom is not None:
        from streams.http.waitingroom.api import add_waitingroom_routes, waitingroom_lifecycle

        add_waitingroom_routes(app, worker.waitingroom)
        app.cleanup_ctx.append(waitingroom_lifecycle(worker.waitingroom))
    return app


async def run_worker(config: Config, worker: Worker | FaustWorker | None = None, on_started=None) -> int:
    waitingroom = worker.waitingroom if worker else build_waitingroom(config)
    worker = worker or Worker(config, waitingroom=waitingroom)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, worker.request_stop)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    app = worker_app(worker)
    if worker.waitingroom is not None:
        # waiting-room joins and status polls take the lean path; the rest of the port is aiohttp's
        from streams.http.waitingroom.server import serve_with_lean_path

        cleanup: Callable[..., Awaitable[Any]]
        server = serve_with_lean_path(app, worker.waitingroom)
        port = await server.start(config.http.host, config.http.port)
        cleanup = server.stop
    else:
        runner, port = await serve(app, config.http.host, config.http.port)
        cleanup = runner.cleanup
    log.info("serving /healthz /readyz /metrics on http://%s:%d", config.http.host, port)
    try:
        if on_started:
            on_started(worker, port)
        await worker.run()
    finally:
        await cleanup()
    return 0
