"""Enrichment stages the config can name: `sources[].enrich: [{type: <name>, ...settings}]`.

STAGES is the one entry a new stage adds: type -> its class, a stage meeting processors/stage.py.
Its settings are checked when the config is parsed (`check_stages`), from the class's `Settings`
or its constructor's signature, so a bad key is reported as `sources[i].enrich[j].key: ...`.
"""
from __future__ import annotations

from pydantic import BaseModel, ValidationError

from processors.enrich import (
    CdcDeduplicator,
    DerivedFields,
    DeviceOrderCheck,
    HttpLookup,
    IpEnricher,
    ReferenceJoin,
    Scd2History,
    Sessioniser,
    ThresholdAlerts,
    UnitNormaliser,
    UserAgentEnricher,
)
from processors.enrich.sequence import SequenceGaps
from processors.enrich.window import TumblingCount
from processors.enrich.windows import WindowAggregate
from processors.stage import settings_model
from streams.config.errors import describe_errors_under

STAGES: dict[str, type] = {
    "join": ReferenceJoin,  # a reference table read from a compacted topic (`tables`)
    "lookup": HttpLookup,  # an HTTP service, through a TTL cache
    "units": UnitNormaliser,  # IoT
    "derived": DerivedFields,
    "order_check": DeviceOrderCheck,
    "alerts": ThresholdAlerts,
    "sessions": Sessioniser,  # clickstream
    "user_agent": UserAgentEnricher,
    "ip": IpEnricher,
    "dedupe": CdcDeduplicator,  # CDC
    "scd2": Scd2History,
    "window": TumblingCount,  # per-key counts over tumbling windows of the record time
    "windows": WindowAggregate,  # tumbling, hopping, session aggregations over event time, results as events
    "sequence": SequenceGaps,  # per-key sequence numbers: gap events, duplicate and out-of-order counts
}


def parse_stage(path: str, stage_type: str, data: dict) -> BaseModel:
    """`data` (an enrich entry without `type`) validated for its stage; ValueError lines naming keys."""
    try:
        return settings_model(STAGES[stage_type]).model_validate(data)
    except ValidationError as exc:
        raise ValueError(describe_errors_under(path, exc)) from None
