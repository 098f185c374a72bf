"""BatchProducer fills aiokafka's record batch builders directly: the batches it ships must read
back as the records it was given, in order, with consecutive offsets, partitioned by key; a
record bigger than a batch goes in a batch of its own (the broker's max message size decides)."""
import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.record.default_records import DefaultRecordBatch

from streams.kafka.producer import BatchProducer


async def send(batches, topic, records, columns):
    if columns:
        return await batches.send_columns(topic, [k for k, _, _ in records], [v for _, v, _ in records])
    return await batches.send(topic, iter(records))


def scenario(records, columns):
    async def run():
        producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", max_batch_size=4096)  # never started
        shipped = []

        async def send_batch(batch, topic, *, partition):  # the broker's side of _ship, recorded
            shipped.append((partition, batch))
            future = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future

        producer.send_batch = send_batch
        batches = BatchProducer(producer)
        batches._partitions["t"] = [0, 1, 2]
        batches._round_robin["t"] = iter(lambda: 1, None)  # keyless calls go to partition 1
        sent, too_large = await send(batches, "t", records, columns)
        return shipped, sent, too_large
    return asyncio.run(run())


@pytest.mark.parametrize("columns", [False, True], ids=["send", "send_columns"])
def test_shipped_batches_read_back_as_the_records_given(columns):
    records = [(b"k%d" % (i % 7) if i % 3 else None, b"v%03d" % i * 20, None) for i in range(300)]
    records[150] = (b"k1", b"x" * 5000, None)  # bigger than a 4 KB batch
    shipped, sent, too_large = scenario(records, columns)
    assert not too_large
    assert [len(indexes) for _, indexes in sent if 150 in indexes] == [1]
    assert len(sent) == len(shipped) > 3  # 4 KB batches: several per partition
    seen = []
    for (part, batch), (_, indexes) in zip(shipped, sent):
        read = list(DefaultRecordBatch(batch._build()))
        assert [r.offset for r in read] == list(range(len(indexes)))
        assert [(r.key, r.value) for r in read] == [records[i][:2] for i in indexes]
        assert batch.record_count() == len(indexes)  # what the idempotent producer's sequence uses
        for i in indexes:
            key = records[i][0]
            assert part == (1 if key is None else (murmur2(key) & 0x7FFFFFFF) % 3)
        seen += indexes
    assert sorted(seen) == list(range(300))
    for part in (0, 1, 2):  # each partition's records in the order given
        in_part = [i for (p, _), (_, indexes) in zip(shipped, sent) if p == part for i in indexes]
        assert in_part == sorted(in_part)


def test_columns_of_one_partition_and_of_none():
    records = [(b"same", b"v%d" % i, None) for i in range(50)]
    shipped, sent, too_large = scenario(records, True)
    assert not too_large and [p for p, _ in shipped] == [(murmur2(b"same") & 0x7FFFFFFF) % 3]
    assert sent[0][1] == list(range(50))
    assert scenario([], True)[1:] == ([], [])
