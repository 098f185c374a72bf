"""Contender: a plain faust-streaming app, written as faust's docs suggest.

Pipeline 1 takes batches (`stream.take_events`), the batching faust offers. Pipeline 2 keeps
the window counts in a faust Table (changelogged, in-memory store), which faust ties to the
event being processed, so it iterates event by event as faust documents for tables.
Performance settings applied: larger stream buffer and max poll records, producer linger and
batch size, no web server, in-memory store. Done = every record consumed and the producer flushed.
"""
import asyncio
import logging

import faust
import orjson
import spec

BATCH = 5000


def build(args, clock, state):
    app = faust.App(args.group, broker=f"kafka://{args.bootstrap}", store="memory://", web_enabled=False,
                    topic_allow_declare=True, topic_disable_leader=True, topic_partitions=4,
                    consumer_auto_offset_reset="earliest", broker_rebalance_timeout=10.0,
                    broker_max_poll_records=BATCH, stream_buffer_maxsize=2 * BATCH, stream_recovery_delay=0.0,
                    producer_linger=0.005, producer_max_batch_size=1 << 20, producer_acks=-1)
    ins = spec.topics(args.prefix)
    outs = {k: app.topic(t, key_serializer="raw", value_serializer="raw") for k, t in spec.out_topics(args.out).items()}
    dlq = app.topic(f"{args.out}-dlq", key_serializer="raw", value_serializer="raw")
    source = app.topic(*ins.values(), key_serializer="raw", value_serializer="raw")
    rows = spec.reference_rows()
    counts = app.Table("window-counts", default=None, partitions=4) if args.stateful else None
    loads, dumps = orjson.loads, orjson.dumps
    kind_by_topic = {t: k for k, t in ins.items()}

    async def handle(message) -> None:
        kind = kind_by_topic[message.topic]
        try:
            body = loads(message.value)
            ok = type(body) is dict and all(f in body for f in spec.REQUIRED[kind])
        except orjson.JSONDecodeError:
            ok = False
        if not ok:
            await dlq.send(key=message.key, value=message.value)
            return
        key = body
        for part in spec.KEY_FIELD[kind]:
            key = key.get(part) if type(key) is dict else None
        row = rows.get(str(key)) if key is not None else None
        body["ref"] = {f: row.get(f) if row else None for f in spec.ENRICH_FIELDS}
        if counts is not None:
            rkey = message.key.decode()
            window = int(message.timestamp * 1000) // spec.WINDOW_MS
            current = counts.get(rkey)
            n = current[1] + 1 if current and current[0] == window else 1
            counts[rkey] = [window, n]
            body["window_count"] = n
        matches = sum(1 for _, pred in spec.RULES_BY_KIND[kind] if pred(body))
        if matches:
            value = dumps(body)
            for _ in range(matches):
                await outs[kind].send(key=message.key, value=value)
        state["produced"] += matches

    if args.stateful:
        @app.agent(source)
        async def pipeline(stream):
            async for event in stream.events():
                clock.tick()
                await handle(event.message)
                state["consumed"] += 1
    else:
        @app.agent(source)
        async def pipeline(stream):
            async for events in stream.take_events(BATCH, within=0.02):
                clock.tick()
                for event in events:
                    await handle(event.message)
                state["consumed"] += len(events)
    return app


async def main(args) -> None:
    logging.basicConfig(level=logging.WARNING)
    clock, state = spec.Clock(), {"consumed": 0, "produced": 0}
    app = build(args, clock, state)
    await app.start()
    while state["consumed"] < args.events:
        await asyncio.sleep(0.002)
    await app.producer.flush()
    elapsed = clock.elapsed()
    await app.stop()
    spec.report(state["consumed"], elapsed, state["produced"], cpu_s=clock.cpu_s)


if __name__ == "__main__":
    asyncio.run(main(spec.arguments(__doc__)))
