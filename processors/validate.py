"""Validate stage: each event body against the schema versions its topic accepts.

A topic maps to one or more schema references ("iot", "iot@v1", "debezium@v1"); an event passes
when any accepted version passes, so producers can migrate version by version. A failure is a
dead-letter record with code `schema_invalid` whose message names the field and the rule for
each accepted version. The compiled validators come from `schemas.validator` (built once).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import schemas
from processors.core import Event, Failure
from processors.decode import TOMBSTONE


class SchemaValidator:
    stage = "validate"
    appends_json = True  # bodies are only read (see core.Event.added)

    def __init__(self, accepted: Mapping[str, Sequence[str] | str], default: Sequence[str] | str | None = None):
        """`accepted`: topic -> schema refs; `default`: refs for topics not listed (None: such events fail)."""
        self._by_topic = {topic: self._compile(topic, refs) for topic, refs in accepted.items()}
        self._default = self._compile("<default>", default) if default else None

    @staticmethod
    def _compile(topic: str, refs: Sequence[str] | str) -> list[tuple[str, schemas.Check, Callable[[Any], bool]]]:
        if isinstance(refs, str):
            refs = [refs]
        if not refs:
            raise ValueError(f"topic {topic!r}: expected at least one schema reference (e.g. 'iot@v1')")
        compiled = []
        for ref in refs:
            name, version = schemas.parse_ref(ref)
            check = schemas.validator(name, version)
            compiled.append((f"{name}@v{version}" if version else name, check, check.is_valid))
        return compiled

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        out: list[Event] = []
        by_topic = self._by_topic
        for event in events:
            body = event.body
            if TOMBSTONE in body:  # tombstones carry no document; the decoder already decided to keep them
                out.append(event)
                continue
            checks = by_topic.get(event.record.topic) or self._default
            if checks is None:
                failures.append(Failure(event.record, self.stage, "no_schema",
                                        f"topic {event.record.topic!r} has no accepted schema configured"))
                continue
            if checks[0][2](body):  # fast path: the first accepted version passes, no error objects built
                out.append(event)
                continue
            errors: list[str] | None = None
            for ref, check, _ in checks:
                error = check(body)
                if error is None:
                    errors = None
                    break
                (errors := errors or []).append(f"{ref}: {error}")
            if errors:
                failures.append(Failure(event.record, self.stage, "schema_invalid", "; ".join(errors)))
            else:
                out.append(event)
        return out
