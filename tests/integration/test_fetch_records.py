"""A consumer reading fetched records a batch at a time (streams/kafka/fastpath/fetch_records.py) gets from
the real broker exactly what aiokafka's own path gets: every record, field for field, in order,
with small getmany() limits that split batches."""
import asyncio

from aiokafka import AIOKafkaConsumer
from aiokafka.consumer import fetcher

from streams.config import parse_config
from streams.kafka.fastpath import fetch_records
from streams.kafka.producer import BatchProducer, make_producer
from tests.integration.kafka_helpers import create_topics, unique


async def read(bootstrap, topic, expect, max_records):
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out = []
    try:
        while len(out) < expect:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=200, max_records=max_records), 20)
            assert all(len(m) <= max_records for m in batch.values())
            for messages in batch.values():
                out.extend(messages)
        positions = {tp.partition: await consumer.position(tp) for tp in consumer.assignment()}
    finally:
        await consumer.stop()
    return out, positions


async def test_batch_reads_get_what_aiokafka_gets_from_the_broker(bootstrap_servers):
    topic = unique("fetch")
    await create_topics(bootstrap_servers, topic, partitions=2)
    producer = make_producer(parse_config({"kafka": {"bootstrap_servers": bootstrap_servers},
                                          "sources": [{"topic": topic, "kind": "json"}]}, environ={}))
    await producer.start()
    try:
        records = [(None if i % 7 == 0 else b"k%d" % (i % 5), None if i % 13 == 0 else b"v%05d" % i * 10,
                    [("trace", b"%d" % i)] if i % 3 == 0 else None) for i in range(2000)]
        batch_producer = BatchProducer(producer)
        for start in range(0, 2000, 400):  # several batches per partition
            sent, _ = await batch_producer.send(topic, records[start:start + 400])
            await asyncio.gather(*(future for future, _ in sent))
    finally:
        await producer.stop()
    assert fetch_records.install()
    assert fetcher.PartitionRecords.__name__ == "BatchPartitionRecords"
    ours, our_positions = await read(bootstrap_servers, topic, 2000, max_records=333)
    with fetch_records.as_shipped():
        theirs, their_positions = await read(bootstrap_servers, topic, 2000, max_records=333)
    assert len(ours) == 2000
    assert sorted(ours, key=lambda r: (r.partition, r.offset)) == sorted(theirs, key=lambda r: (r.partition, r.offset))
    assert our_positions == their_positions
    assert sorted(repr((r.key, r.value, r.headers)) for r in ours) == sorted(
        repr((k, v, tuple(hs or ()))) for k, v, hs in records)
