"""Decode: Kafka record bytes to a JSON object, or a dead letter that says why not."""
from __future__ import annotations

import orjson

from processors.core import Event, Failure, SourceRecord

STAGE = "decode"


class Decoder:
    """JSON objects only: the envelope and every source kind are objects."""

    def decode(self, records: list[SourceRecord], failures: list[Failure]) -> list[Event]:
        events = []
        loads = orjson.loads
        for record in records:
            value = record.value
            if value is None:
                failures.append(Failure(record, STAGE, "EmptyRecord", "record has no value (a tombstone?)"))
                continue
            try:
                body = loads(value)
            except orjson.JSONDecodeError as exc:
                code = "InvalidUTF8" if "utf-8" in str(exc).lower() else "InvalidJSON"
                failures.append(Failure(record, STAGE, code, f"value is not valid JSON: {exc}"))
                continue
            if type(body) is not dict:
                failures.append(Failure(
                    record, STAGE, "NotAnObject", f"value is JSON {type(body).__name__}, expected an object"
                ))
                continue
            events.append(Event(record, body))
        return events
