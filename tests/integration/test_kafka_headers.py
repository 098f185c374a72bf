"""Routed Kafka outputs carry their source record's headers (issue 21 item 19): a trace id set by
the producer survives the worker, for plain and transformed deliveries; a target can opt out. A
record without a W3C traceparent gets one, the same on every output of that record."""
from __future__ import annotations

import asyncio
import re

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.config import parse_config
from tests.integration.kafka_helpers import create_topics, read_all, unique
from tests.integration.test_worker_e2e import start_worker, stop_worker

pytestmark = pytest.mark.broker
GIVEN = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_source_headers_reach_every_output_unless_a_target_opts_out(bootstrap_servers):
    src, plain, shaped, bare, untraced, dlq = (unique(n) for n in ("src", "plain", "shaped", "bare", "untraced", "dlq"))
    await create_topics(bootstrap_servers, src, plain, shaped, bare, untraced, dlq, partitions=1)
    config = parse_config({
        "kafka": {"bootstrap_servers": bootstrap_servers, "group_id": unique("g")},
        "consumer": {"commit_interval_ms": 100, "fetch_timeout_ms": 50}, "http": {"host": "127.0.0.1", "port": 0},
        "dead_letter": {"topic": dlq}, "sources": [{"topic": src}],
        "rules": [{"name": "all", "targets": [
            {"id": "plain", "type": "kafka", "topic": plain},
            {"id": "shaped", "type": "kafka", "topic": shaped, "InputPath": "$.n", "key": "$.id"},
            {"id": "bare", "type": "kafka", "topic": bare, "forward_headers": False},
            {"id": "untraced", "type": "kafka", "topic": untraced, "traceparent": False}]}],
    }, environ={})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
    await producer.start()
    try:
        sends = [await producer.send(src, orjson.dumps({"n": i, "id": f"k{i}"}),
                                     headers=[("trace-id", f"t-{i}".encode()), ("tenant", b"acme")]
                                     + ([("traceparent", GIVEN)] if i == 0 else [])) for i in range(3)]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    worker, task, _ = await start_worker(config)
    try:
        outputs = {topic: await read_all(bootstrap_servers, topic, expect=3) for topic in (plain, shaped, bare, untraced)}
    finally:
        await stop_worker(worker, task)
    sent = [{"trace-id": f"t-{i}".encode(), "tenant": b"acme"} for i in range(3)]
    sent[0]["traceparent"] = GIVEN
    added = [dict(r.headers).get("traceparent") for r in outputs[plain]]
    assert added[0] == GIVEN  # the producer's own trace goes on untouched
    assert all(re.fullmatch(rb"00-[0-9a-f]{32}-[0-9a-f]{16}-01", t) for t in added[1:]) and added[1] != added[2]
    for topic in (plain, shaped):
        assert [dict(r.headers) for r in outputs[topic]] == [
            {**sent[i], "traceparent": added[i]} for i in range(3)], topic
    assert [r.headers for r in outputs[bare]] == [(("traceparent", t),) for t in added]
    assert [dict(r.headers) for r in outputs[untraced]] == sent


def test_an_added_traceparent_is_a_function_of_the_source_records_position():
    from aiokafka.structs import ConsumerRecord

    from streams.targets.kafka import trace_context

    def record(topic, partition, offset):
        return ConsumerRecord(topic, partition, offset, 0, 0, None, b"{}", None, 2, 0, ())

    assert trace_context(record("t", 0, 5)) == trace_context(record("t", 0, 5))  # a retry, a replay
    assert len({trace_context(record(*p))[1] for p in (("t", 0, 5), ("t", 1, 5), ("t", 0, 6), ("u", 0, 5))}) == 4



def test_traceparents_made_once_for_a_batch_are_each_records_own_whichever_chunk_asks_first():
    """Made once per record for every chunk of its batch (an archive and the rules take the same
    records): the same header as the record's alone, across partitions, in each chunk's order."""
    from aiokafka.structs import ConsumerRecord

    from streams.targets import kafka

    def record(topic, partition, offset):
        return ConsumerRecord(topic, partition, offset, 0, 0, None, b"{}", None, 2, 0, ())

    def alone(r) -> tuple[str, bytes]:  # W3C: 00-<trace id>-<parent id>-01, ids as trace_context's docstring says
        high = kafka.crc32(r.topic.encode()) << 32 | r.partition
        low = ((r.offset ^ high) * kafka._GOLDEN) & kafka._MASK64
        return "traceparent", b"00-%016x%016x-%016x-01" % (high, low, low ^ kafka._GOLDEN | 1)

    batch = [record("t", p, o) for p in (0, 1) for o in range(5)] + [record("u", 0, 3)]
    made: dict = {}
    for chunk in (batch[2:7], batch, batch[::-1], batch[8:]):  # partly made, all made, ...
        headers = kafka.trace_headers(chunk, made)
        assert headers == [[alone(r)] for r in chunk]
        assert all(h is made[id(r)] for h, r in zip(headers, chunk))  # one list per record, shared by its outputs
    assert kafka.trace_context(batch[4]) == alone(batch[4])
    big = [record("t", 2, o) for o in (0, 1, 2**40, 2**63 - 1)]  # the ids' whole 64 bits, any offset
    assert kafka.trace_headers(big, {}) == [[alone(r)] for r in big]
    assert kafka.trace_headers([], {}) == []
