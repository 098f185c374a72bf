"""The registry record of a type stays under Kafka's default record size, dropping its oldest versions."""
from __future__ import annotations

import orjson

from streams.kafka.discovered import MAX_RECORD_BYTES, decode, encode


def test_a_record_too_large_for_kafka_drops_its_oldest_versions_and_keeps_the_latest():
    big = {"type": "object", "properties": {f"field_{i:04d}_{'x' * 200}": {"type": "string"} for i in range(1000)}}
    versions = [{"version": n, "schema": big, "created": "2026-12-06T10:00:00Z"} for n in range(1, 11)]
    kept, value = encode(("shop", "Order Placed"), versions)
    assert len(value) <= MAX_RECORD_BYTES and kept[-1]["version"] == 10 and 1 <= len(kept) < 10
    assert decode(value) == (("shop", "Order Placed"), kept)
    small = versions[:1]
    assert encode(("shop", "Order Placed"), small) == (small, orjson.dumps(
        {"source": "shop", "detail-type": "Order Placed", "versions": small}))
