"""`eventweir waitingroom serve`: the waiting-room API standalone on one port (no Kafka needed)."""
from __future__ import annotations

import argparse
import os
from typing import Any


def register(sub) -> None:
    p = sub.add_parser("waitingroom", help="virtual waiting room")
    wsub = p.add_subparsers(dest="waitingroom_command", metavar="ACTION")
    s = wsub.add_parser("serve", help="serve the waiting-room HTTP API (public, admin, waiting page) on a port")
    s.add_argument("--host", default="0.0.0.0")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--redis-url", default=os.environ.get("EVENTWEIR_REDIS_URL", "redis://127.0.0.1:6379/0"))
    s.add_argument("--key-prefix", default="eventweir:wr:")
    s.add_argument("--admin-token", default=os.environ.get("EVENTWEIR_WAITINGROOM_ADMIN_TOKEN"),
                   help="bearer token of the admin API (default: $EVENTWEIR_WAITINGROOM_ADMIN_TOKEN)")
    s.add_argument("--token-alg", default="EdDSA", choices=["EdDSA", "ES256", "RS256"],
                   help="algorithm of generated signing keys; a change begins a rotation at start")
    s.add_argument("--issuer", default="eventweir-waitingroom",
                   help="the tokens' iss, e.g. https://shop.example.com/waitingroom (for gateways' discovery)")
    s.add_argument("--signing-key", action="append", default=[], metavar="PEM_FILE",
                   help="a signing key from a file (a mounted Secret); repeat: the first signs, the others verify")
    s.add_argument("--key-prepublish", type=float, default=300.0,
                   help="seconds a rotated-in key is published before it signs")
    s.add_argument("--rooms", help="YAML or JSON file: {room id: settings}, created when not in Redis yet")
    s.add_argument("--tick-interval", type=float, default=0.5, help="seconds between inlet ticks")
    s.set_defaults(func=run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run(args: argparse.Namespace) -> int:
    import asyncio
    import gc
    import signal

    import yaml
    from aiohttp import web

    from processors.waitingroom.settings import SettingsError
    from streams.http.waitingroom.api import add_waitingroom_routes, build_waitingroom_service, waitingroom_lifecycle
    from streams.http.waitingroom.server import serve_with_lean_path

    rooms: dict[str, Any] = {}
    if args.rooms:
        with open(args.rooms, encoding="utf-8") as f:
            rooms = yaml.safe_load(f) or {}
    try:
        service = build_waitingroom_service({
            "redis_url": args.redis_url, "key_prefix": args.key_prefix, "admin_token": args.admin_token,
            "token_alg": args.token_alg, "tick_interval_s": args.tick_interval, "rooms": rooms,
            "issuer": args.issuer, "signing_keys": args.signing_key, "key_prepublish_s": args.key_prepublish,
            # from the environment only: a secret on the command line is visible to every user of the machine
            **{key: os.environ[var] for key, var in (("key_encryption_key", "EVENTWEIR_WAITINGROOM_KEY_ENCRYPTION_KEY"),
                                                     ("challenge_key", "EVENTWEIR_WAITINGROOM_CHALLENGE_KEY"))
               if os.environ.get(var)},
        })
    except SettingsError as exc:
        print(f"eventweir waitingroom: {exc}")
        return 2

    async def metrics(request):
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def quiet_gc(app):
        # everything loaded at start-up (modules, keys, rooms: ~60k objects) lives for the whole run: keep
        # it out of every GC pass. Unfrozen, each full collection walked all of it, ~25 ms under load,
        # about once a second: that pause was the p99 of joins.
        gc.collect()
        gc.freeze()

    app = web.Application()
    add_waitingroom_routes(app, service)
    app.router.add_get("/metrics", metrics)
    app.cleanup_ctx.append(waitingroom_lifecycle(service))
    app.on_startup.append(quiet_gc)  # after the lifecycle's start: the rooms and keys are loaded

    async def main() -> None:
        # join and status polls take the lean path; every other request is aiohttp's (streams/http/waitingroom/server.py)
        server = serve_with_lean_path(app, service)
        await server.start(args.host, args.port)
        print(f"waiting room on http://{args.host}:{server.port}/waitingroom/rooms/<room>/", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await server.stop()

    from streams.runtime.eventloop import run as run_loop

    run_loop(main())
    return 0
