"""Contender: a Quix Streams app (quixstreams), one StreamingDataFrame per source topic, written
as Quix's docs suggest: filter, apply, expand one row per matched rule, to_topic; pipeline 2 adds
a branch with a 1-minute tumbling window count per message key (`tumbling_window().count().final()`,
RocksDB state with its changelog topic, Quix's defaults) whose closed windows go to their topic.

Performance settings applied: the documented knobs for throughput (commit every 5 s, producer
linger 5 ms with large batches, larger fetches), JSON (de)serialisers as Quix ships them.
Done = every record processed and `Application.run()` returned (producer flushed, offsets committed).
"""
import tempfile

import orjson
import spec
from quixstreams import Application


def main(args) -> None:
    clock, state = spec.Clock(), {"consumed": 0, "produced": 0}
    app = Application(
        broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
        commit_interval=5.0, loglevel="WARNING", state_dir=tempfile.mkdtemp(prefix="quix-state-"),
        consumer_extra_config={"fetch.max.bytes": 32 << 20, "max.partition.fetch.bytes": 4 << 20},
        producer_extra_config={"linger.ms": 5, "batch.size": 1 << 20, "enable.idempotence": False},
    )
    rows = spec.reference_rows()
    outs = {k: app.topic(t, value_serializer="bytes", key_serializer="bytes") for k, t in spec.out_topics(args.out).items()}
    windows_out = app.topic(spec.windows_topic(args.out), value_serializer="json", key_serializer="bytes")
    dumps = orjson.dumps
    total = args.events

    def counted(value):
        clock.tick()
        state["consumed"] += 1
        if state["consumed"] >= total:
            app.stop()
        return value

    for kind, name in spec.topics(args.prefix).items():
        topic = app.topic(name, value_deserializer="json", key_deserializer="bytes")
        sdf = app.dataframe(topic)
        required, key_field, rules = spec.REQUIRED[kind], spec.KEY_FIELD[kind], spec.RULES_BY_KIND[kind]

        def valid(body, required=required):
            return type(body) is dict and all(f in body for f in required)

        def enrich(body, key_field=key_field):
            key = body
            for part in key_field:
                key = key.get(part) if type(key) is dict else None
            row = rows.get(str(key)) if key is not None else None
            body["ref"] = {f: row.get(f) if row else None for f in spec.ENRICH_FIELDS}
            return body

        def route(body, rules=rules):
            matches = sum(1 for _, pred in rules if pred(body))
            state["produced"] += matches
            if not matches:
                return []
            value = dumps(body)
            return [value] * matches

        sdf = sdf.apply(counted).filter(valid).apply(enrich)
        if args.stateful:  # a branch: the events go on to routing, the window counts to their topic
            sdf.tumbling_window(spec.WINDOW_MS).count().final().to_topic(windows_out)
        sdf = sdf.apply(route, expand=True)
        sdf.to_topic(outs[kind])
    app.run()
    elapsed = clock.elapsed()
    spec.report(state["consumed"], elapsed, state["produced"], cpu_s=clock.cpu_s)


if __name__ == "__main__":
    main(spec.arguments(__doc__))
