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
    "streams.cli.run",
    "streams.cli.demo",
    "streams.cli.publish",
    "streams.cli.test_pattern",
    "streams.cli.schemas",
    "streams.cli.waitingroom",
    "streams.cli.lake",
    "streams.cli.dlq",
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
