"""BatchProducer fills aiokafka's record batch builders directly: the batches it ships must read
back as the records it was given, in order, with consecutive offsets, partitioned by key."""
import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.record.default_records import DefaultRecordBatch

from streams.producer import BatchProducer


def test_shipped_batches_read_back_as_the_records_given():
    async def scenario():
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
        records = [(b"k%d" % (i % 7) if i % 3 else None, b"v%03d" % i * 20, None) for i in range(300)]
        sent, too_large = await batches.send("t", iter(records))
        assert not too_large and len(sent) == len(shipped) > 3  # 4 KB batches: several per partition
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

    asyncio.run(scenario())
