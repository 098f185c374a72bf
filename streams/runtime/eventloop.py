"""Start the event loop the way every eventweir command does: on uvloop when it is installed (a
dependency on Linux and macOS), else on asyncio's own loop.

uvloop's transports are C: moving multi-megabyte fetch responses and produce requests through the
loop costs a fraction of what asyncio's Python streams cost, which is most of a pass-through
worker's time outside the pipeline (tests/bench/throughput.py runs floor and worker on it alike).
"""
from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
