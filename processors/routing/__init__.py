"""EventBridge routing with AWS's semantics: event patterns, rule sets, input transformers.

Pure functions over parsed events (dicts); no I/O. Compile once at start-up, match per event.
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
