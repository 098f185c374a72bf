"""Reference, not a contender: the floor plus producing every record once, unchanged, with no
processing: raw aiokafka `getmany()` + `orjson.loads`, then each fetched batch's values sent to
the output topic of their kind by eventweir's batched producer (aiokafka's batch API, with the
producer settings eventweir's contender runs with), every batch acknowledged before the end.

Every pipeline contender produces about as many records as it reads (eventweir: 0.94 per event
over the 20 rules), so this is what the Kafka I/O alone costs one Python process with aiokafka."""
import asyncio

import orjson
import spec
from eventweir_pipeline import bench_config
from floor import raw_consumer

from streams.kafka.producer import BatchProducer, make_producer


async def main(args) -> None:
    consumer = raw_consumer(args)
    producer = make_producer(bench_config(args))
    await consumer.start()
    await producer.start()
    batches, outs = BatchProducer(producer), spec.out_topics(args.out)
    clock, seen, produced, pending, loads = spec.Clock(), 0, 0, [], orjson.loads
    try:
        while seen < args.events:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            if batch:
                clock.tick()
            for tp, messages in batch.items():
                values = []
                for m in messages:
                    loads(m.value)
                    values.append(m.value)
                sent, _ = await batches.send_columns(outs[spec.kind_of(tp.topic)], [None] * len(values), values)
                pending.extend(future for future, _ in sent)
                seen += len(messages)
                produced += len(values)
            if len(pending) > 200:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        elapsed = clock.elapsed()
        await producer.stop()
        await consumer.stop()
    spec.report(seen, elapsed, produced, cpu_s=clock.cpu_s)


if __name__ == "__main__":
    from streams.runtime import eventloop

    eventloop.run(main(spec.arguments(__doc__)))
