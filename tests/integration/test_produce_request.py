"""A producer sending one-copy produce requests (streams/kafka/fastpath/produce_request.py) delivers every
record to the real broker, partitioned by key and in order per key."""
import asyncio

from streams.config import parse_config
from streams.kafka.producer import BatchProducer, make_producer
from tests.integration.kafka_helpers import create_topics, read_all, unique


async def test_a_producer_with_one_copy_requests_delivers_every_record(bootstrap_servers):
    topic = unique("one-copy")
    await create_topics(bootstrap_servers, topic, partitions=3)
    producer = make_producer(parse_config({"kafka": {"bootstrap_servers": bootstrap_servers},
                                          "sources": [{"topic": topic, "kind": "json"}]}, environ={}))
    assert "_send_produce_req" in vars(producer._sender)
    await producer.start()
    try:
        records = [(b"k%d" % (i % 11), b"v%05d" % i * 30, None) for i in range(3000)]
        sent, too_large = await BatchProducer(producer).send(topic, records)
        assert not too_large
        await asyncio.gather(*(future for future, _ in sent))
    finally:
        await producer.stop()
    read = await read_all(bootstrap_servers, topic, expect=3000)
    assert sorted((r.key, r.value) for r in read) == sorted((k, v) for k, v, _ in records)
    by_key = {}
    for r in read:  # per key, in the order sent
        by_key.setdefault(r.key, []).append(r.value)
    for key, values in by_key.items():
        assert values == [v for k, v, _ in records if k == key]

