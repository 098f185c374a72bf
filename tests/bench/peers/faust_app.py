"""Contender: a plain faust-streaming app, written as faust's docs suggest.

Pipeline 1 takes batches (`stream.take_events`), the batching faust offers. Pipeline 2 keeps
the window counts in a faust windowed Table (`.tumbling(60)` relative to the event's timestamp,
changelogged, in-memory store), which faust ties to the event being processed, so it iterates
event by event as faust documents for tables; `on_window_close` sends each closed window's count.
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
    windows_out = app.topic(spec.windows_topic(args.out), key_serializer="raw", value_serializer="raw")

    def window_closed(key, count) -> None:
        window_key, (start, _) = key
        windows_out.send_soon(key=window_key.encode(), value=orjson.dumps({"start": start, "count": count}))

    counts = app.Table("window-counts", default=int, partitions=4, on_window_close=window_closed).tumbling(
        spec.WINDOW_MS / 1000, expires=spec.WINDOW_MS / 1000).relative_to_stream() if args.stateful else None
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
            counts[message.key.decode()] += 1
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
