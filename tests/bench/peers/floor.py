"""The floor: raw aiokafka `getmany()` + `orjson.loads` over the source topics, no processing."""
import orjson
import spec
from aiokafka import AIOKafkaConsumer


def raw_consumer(args) -> AIOKafkaConsumer:
    """The floor's consumer of the source topics, with the memory settings eventweir's worker runs
    with (fetch buffers reuse freed memory)."""
    from streams.runtime.tuning import tune_malloc

    tune_malloc()
    return AIOKafkaConsumer(*spec.topics(args.prefix).values(), bootstrap_servers=args.bootstrap,
                            group_id=args.group, auto_offset_reset="earliest", enable_auto_commit=False,
                            max_partition_fetch_bytes=4 << 20, fetch_max_bytes=32 << 20)


async def main(args) -> None:
    consumer = raw_consumer(args)
    await consumer.start()
    clock, seen, loads = spec.Clock(), 0, orjson.loads
    try:
        while seen < args.events:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            if batch:
                clock.tick()
            for messages in batch.values():
                for m in messages:
                    loads(m.value)
                seen += len(messages)
    finally:
        elapsed = clock.elapsed()
        await consumer.stop()
    spec.report(seen, elapsed, 0, cpu_s=clock.cpu_s)


if __name__ == "__main__":
    from streams.runtime import eventloop

    eventloop.run(main(spec.arguments(__doc__)))  # the eventweir contender's loop: uvloop when installed
