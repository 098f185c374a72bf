"""`eventweir` command line: one module per subcommand, each with `register(subparsers)`.

A subcommand module sets `func=<callable(args) -> int>` on its parser; heavy imports stay inside
the callable so `eventweir --help` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand modules, in the order `--help` lists them
COMMAND_MODULES = [
    "streams.cmd_run",
    "streams.cmd_demo",
    "streams.cmd_publish",
    "streams.cmd_test_pattern",
    "streams.cmd_schemas",
    "streams.cmd_waitingroom",
    "streams.cmd_lake",
    "streams.cmd_dlq",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventweir",
        description="Self-hosted event router and stream processor for Kafka.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
