"""`eventweir test-pattern`: `aws events test-event-pattern`, offline, with AWS's answers."""
from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "test-pattern",
        help="test an EventBridge event pattern against an event (like aws events test-event-pattern)",
    )
    p.add_argument("--event-pattern", required=True, help="pattern as JSON text, or @file")
    p.add_argument("--event", required=True, help="event as JSON text, or @file")
    p.set_defaults(func=run)


def _read(arg: str) -> str:
    if arg.startswith("@"):
        with open(arg[1:], encoding="utf-8") as f:
            return f.read()
    return arg


def run(args) -> int:
    import orjson

    from processors.routing import InvalidEventPatternException, ValidationException, compile_pattern, validate_event

    try:
        pattern_text, event_text = _read(args.event_pattern), _read(args.event)
    except OSError as e:
        print(f"cannot read {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    try:
        pattern = compile_pattern(pattern_text)
    except InvalidEventPatternException as e:
        print(f"InvalidEventPatternException: {e.message}", file=sys.stderr)
        return 2
    try:
        event = orjson.loads(event_text)
        validate_event(event)
    except (orjson.JSONDecodeError, ValidationException):
        print("ValidationException: Parameter Event is not valid.", file=sys.stderr)
        return 2
    result = pattern.matches(event)
    print(orjson.dumps({"Result": result}).decode().replace(":", ": "))
    return 0
