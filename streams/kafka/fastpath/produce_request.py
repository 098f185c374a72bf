"""Produce requests encoded with one copy of the record batches instead of six.

aiokafka encodes a ProduceRequest field by field, and every level of its schema (the record
batch as Bytes, the partition, the partition array, the topic, the topic array, the request)
joins its children into new bytes: each produced byte is copied six times before the connection
adds the header and the size (two more). Here the request body is one `b"".join` of small headers
and the batches as they are (figures: tests/bench/results/NOTES.md).

`install(producer)` makes one AIOKafkaProducer send its produce requests this way. It checks
first that this aiokafka's produce requests encode to the same bytes as ours, and leaves the
producer as it is otherwise (a newer aiokafka with another request layout loses the speed, not
correctness).
"""
from __future__ import annotations

import logging
import struct
from functools import cache
from types import MethodType

from streams.kafka import fastpath

log = logging.getLogger(__name__)

_I32 = struct.Struct(">i").pack
_I32_I32 = struct.Struct(">ii").pack
_I16_I32 = struct.Struct(">hi").pack
_I16 = struct.Struct(">h").pack


def _string(value: str | None) -> bytes:
    if value is None:
        return _I16(-1)
    data = value.encode()
    return _I16(len(data)) + data


def _encode(self) -> bytes:
    """The request body, as aiokafka's schema would encode it, in one join."""
    parts = []
    if self.API_VERSION >= 3:
        parts.append(_string(self.transactional_id))
    parts.append(_I16_I32(self.required_acks, self.timeout))
    parts.append(_I32(len(self.topics)))
    for topic, partitions in self.topics:
        parts.append(_string(topic))
        parts.append(_I32(len(partitions)))
        for partition, records in partitions:
            parts.append(_I32_I32(partition, len(records)))
            parts.append(records)
    return b"".join(parts)


def _request_classes():
    """aiokafka's ProduceRequest, its handler and per-version struct classes, subclassed so that
    structs encode with `_encode`; None when this aiokafka does not have them."""
    try:
        from aiokafka.producer.sender import SendProduceReqHandler
        from aiokafka.protocol.produce import ProduceRequest
        versions = ProduceRequest._CLASSES
    except (ImportError, AttributeError):
        return None
    one_copy = {cls: type(cls.__name__, (cls,), {"encode": _encode}) for cls in versions}

    class OneCopyProduceRequest(ProduceRequest):
        def build(self, request_struct_class):
            built = super().build(request_struct_class)
            built.__class__ = one_copy[request_struct_class]  # same fields, same layout
            return built

    class OneCopyHandler(SendProduceReqHandler):
        def create_request(self):
            request = super().create_request()
            request.__class__ = OneCopyProduceRequest
            return request

    return ProduceRequest, OneCopyProduceRequest, OneCopyHandler


_CLASSES = _request_classes()


@cache
def encodes_alike() -> bool:
    """Whether every produce request version encodes to aiokafka's own bytes (checked once)."""
    if _CLASSES is None:
        return False
    original, one_copy, _ = _CLASSES
    topics = [("orders", [(0, b"\x00batch-0"), (3, b"batch-3" * 3)]), ("\u00e9v\u00e9nements", [(1, b"")])]
    try:
        for transactional_id in (None, "txn-1"):
            for cls in original._CLASSES:
                if cls.API_VERSION < 3 and transactional_id:
                    continue
                args = (transactional_id, -1, 30000, topics)
                if one_copy(*args).build(cls).encode() != original(*args).build(cls).encode():
                    raise ValueError(f"{cls.__name__} encodes differently")
    except Exception as exc:  # noqa: BLE001 - any surprise means: keep aiokafka's encoder
        log.warning("aiokafka's produce requests are not laid out as streams.kafka.fastpath.produce_request expects (%s): "
                    "using aiokafka's own encoder", exc)
        return False
    return True


async def _send_produce_req(self, node_id, batches):
    # aiokafka's Sender._send_produce_req, with the one-copy handler
    handler = _CLASSES[2](self, batches)
    await handler.do(node_id)
    self._in_flight.remove(node_id)
    for tp in batches:
        self._muted_partitions.remove(tp)


def install(producer) -> bool:
    """Send `producer`'s produce requests with one copy; False (and nothing changed) when this
    aiokafka does not encode them the way this module expects."""
    sender = getattr(producer, "_sender", None)
    if not fastpath.enabled() or sender is None or not hasattr(sender, "_send_produce_req") or not encodes_alike():
        return False
    sender._send_produce_req = MethodType(_send_produce_req, sender)
    return True
