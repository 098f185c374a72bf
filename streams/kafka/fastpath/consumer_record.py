"""aiokafka's ConsumerRecord read as a `processors.core.SourceRecord`, without a copy.

ConsumerRecord already carries every field of SourceRecord but names the timestamp `timestamp`.
One alias lets consumed records flow into the processors as they are, instead of copying every
record (a copy costs as much as parsing its JSON). If aiokafka ever names it so itself, or the
record type changes shape, nothing is patched and the check below says what to look at.
"""
from __future__ import annotations

import dataclasses

from aiokafka.structs import ConsumerRecord

from processors.core import SourceRecord


def install() -> bool:
    """Give ConsumerRecord `timestamp_ms`; True when every SourceRecord field then reads alike."""
    if not hasattr(ConsumerRecord, "timestamp_ms"):
        ConsumerRecord.timestamp_ms = property(lambda record: record.timestamp)
    has = set(dir(ConsumerRecord)) | {f.name for f in dataclasses.fields(ConsumerRecord)}
    missing = [f.name for f in dataclasses.fields(SourceRecord) if f.name not in has]
    if missing:
        raise RuntimeError(f"aiokafka's ConsumerRecord has no {', '.join(missing)}: the worker cannot hand "
                           "consumed records to the processors as they are (streams/kafka/fastpath/consumer_record.py)")
    return True
