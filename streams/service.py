"""Run a worker as a process: HTTP port, signal handling, clean exit within the grace period."""
from __future__ import annotations

import asyncio
import logging
import signal

from streams.config import Config
from streams.http import make_app, serve
from streams.worker import Worker

log = logging.getLogger(__name__)


async def run_worker(config: Config, worker: Worker | None = None, on_started=None) -> int:
    worker = worker or Worker(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, worker.request_stop)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    runner, port = await serve(make_app(worker), config.http.host, config.http.port)
    log.info("serving /healthz /readyz /metrics on http://%s:%d", config.http.host, port)
    try:
        if on_started:
            on_started(worker, port)
        await worker.run()
    finally:
        await runner.cleanup()
    return 0
