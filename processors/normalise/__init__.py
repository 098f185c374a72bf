"""Normalisers: turn a source's payload into the EventBridge envelope (see envelope.py)."""
from processors.normalise.cdc import CdcNormaliser
from processors.normalise.clickstream import ClickstreamNormaliser
from processors.normalise.envelope import EnvelopeDefaults, derived_id, format_time, make_envelope, to_epoch_ms
from processors.normalise.iot import IotNormaliser

__all__ = ["CdcNormaliser", "ClickstreamNormaliser", "IotNormaliser", "EnvelopeDefaults", "derived_id",
           "format_time", "make_envelope", "to_epoch_ms"]
