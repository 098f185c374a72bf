"""Sample data from tests/data as Kafka records, shared by unit, integration and bench code."""
from __future__ import annotations

from pathlib import Path

import orjson

from processors.core import SourceRecord

DATA = Path(__file__).resolve().parent / "data"


def jsonl(name: str) -> list[dict]:
    return [orjson.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def debezium() -> dict[str, dict]:
    return orjson.loads((DATA / "debezium.json").read_bytes())


def record(topic: str, value, key=None, offset: int = 0, partition: int = 0, timestamp_ms: int = 1732530000999):
    """`value`/`key`: a dict (serialised), bytes (as is) or None."""
    def enc(v):
        return v if v is None or isinstance(v, bytes) else orjson.dumps(v)
    return SourceRecord(topic, partition, offset, timestamp_ms, enc(key), enc(value))


def debezium_record(name: str, offset: int = 0) -> SourceRecord:
    sample = debezium()[name]
    return record(sample["topic"], sample["value"], sample["key"], offset)
