"""`eventweir demo`: see the whole system work on this machine."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="run an embedded broker, a traffic generator and a worker, with a live status line")
    p.add_argument("--rate", type=int, default=2000, help="events per second to generate (default 2000)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--port", type=int, default=8080, help="HTTP port for /metrics and /readyz (0 = any free port)")
    p.add_argument("--lake", default="demo-lake", help="directory the demo's data lake is written to (default ./demo-lake)")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    from streams.devtools.demo import run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from streams.runtime.eventloop import run

    return run(run_demo(args.rate, args.duration, args.port, args.lake))
