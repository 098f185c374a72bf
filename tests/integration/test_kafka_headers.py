"""Routed Kafka outputs carry their source record's headers (issue 21 item 19): a trace id set by
the producer survives the worker, for plain and transformed deliveries; a target can opt out."""
from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.config import parse_config
from tests.integration.kafka_helpers import create_topics, read_all, unique
from tests.integration.test_worker_e2e import start_worker, stop_worker

pytestmark = pytest.mark.broker


async def test_source_headers_reach_every_output_unless_a_target_opts_out(bootstrap_servers):
    src, plain, shaped, bare, dlq = (unique(n) for n in ("src", "plain", "shaped", "bare", "dlq"))
    await create_topics(bootstrap_servers, src, plain, shaped, bare, dlq, partitions=1)
    config = parse_config({
        "kafka": {"bootstrap_servers": bootstrap_servers, "group_id": unique("g")},
        "consumer": {"commit_interval_ms": 100, "fetch_timeout_ms": 50}, "http": {"host": "127.0.0.1", "port": 0},
        "dead_letter": {"topic": dlq}, "sources": [{"topic": src}],
        "rules": [{"name": "all", "targets": [
            {"id": "plain", "type": "kafka", "topic": plain},
            {"id": "shaped", "type": "kafka", "topic": shaped, "InputPath": "$.n", "key": "$.id"},
            {"id": "bare", "type": "kafka", "topic": bare, "forward_headers": False}]}],
    }, environ={})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
    await producer.start()
    try:
        sends = [await producer.send(src, orjson.dumps({"n": i, "id": f"k{i}"}),
                                     headers=[("trace-id", f"t-{i}".encode()), ("tenant", b"acme")]) for i in range(3)]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    worker, task, _ = await start_worker(config)
    try:
        outputs = {topic: await read_all(bootstrap_servers, topic, expect=3) for topic in (plain, shaped, bare)}
    finally:
        await stop_worker(worker, task)
    for topic in (plain, shaped):
        assert [dict(r.headers) for r in outputs[topic]] == [
            {"trace-id": f"t-{i}".encode(), "tenant": b"acme"} for i in range(3)], topic
    assert [r.headers for r in outputs[bare]] == [(), (), ()]
