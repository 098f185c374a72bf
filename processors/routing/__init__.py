"""EventBridge routing with AWS's semantics: event patterns, rule sets, input transformers.

Pure functions over parsed events (dicts); no I/O. Compile once at start-up, match per event.

    router.py                 Router: rules -> deliveries (processors/route.py re-exports it, deprecated)
    compiler.py kinds.py conditions.py wildcard.py errors.py event_check.py   patterns in, AWS's errors
    values.py flatten.py pattern.py checks.py   the reference matcher (the semantics of record)
    index.py planner.py ruleset.py              the rule set: indexes, anchors, the facade
    engines/                  the generated fast paths (only ruleset.py imports them)
    transform.py jsonpath.py  target input transformers
"""
from .errors import InvalidEventPatternException, ValidationException
from .event_check import validate_event
from .pattern import Pattern, compile_pattern
from .router import Route, Router, RouteTarget
from .ruleset import RuleSet
from .transform import TargetInput, compile_target_input

__all__ = [
    "InvalidEventPatternException",
    "ValidationException",
    "Pattern",
    "compile_pattern",
    "RuleSet",
    "validate_event",
    "TargetInput",
    "compile_target_input",
    "Route",
    "RouteTarget",
    "Router",
]
