"""`eventweir publish --topic T [FILE|-]`: publish JSON lines, validated against the topic's schema.

The schema comes from `--schema` or from the config's source entry for the topic. Lines that are
not valid JSON objects, or fail the schema, are reported with their line number and not published.
"""
from __future__ import annotations

import os
import sys


def register(sub) -> None:
    p = sub.add_parser("publish", help="publish JSON lines from a file or stdin to a topic")
    p.add_argument("file", nargs="?", default="-", help="JSON lines file, or - for stdin (default)")
    p.add_argument("--topic", required=True)
    p.add_argument("-c", "--config", default=os.environ.get("EVENTWEIR_CONFIG"),
                   help="worker config: its bootstrap servers, and the topic's schema if it is a source")
    p.add_argument("--bootstrap-servers", default=None, help="overrides the config / $KAFKA_BOOTSTRAP_SERVERS")
    p.add_argument("--schema", action="append", help="schema ref the lines must satisfy (e.g. iot@v1); repeatable")
    p.add_argument("--key", default=None, help="JSON path whose value keys each record, e.g. $.device_id")
    p.add_argument("--batch", type=int, default=2000, help="lines per produce batch")
    p.set_defaults(func=run)


def _bootstrap_and_schemas(args):
    bootstrap = args.bootstrap_servers or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    refs = args.schema
    if args.config:
        from streams.config import load_config
        from streams.runtime.topology import DEFAULT_SCHEMAS

        config = load_config(args.config)
        bootstrap = args.bootstrap_servers or config.kafka.bootstrap_servers
        for source in config.sources:
            if source.topic == args.topic and not refs:
                refs = source.schemas or DEFAULT_SCHEMAS.get(source.kind)
    return bootstrap, refs


class Progress:
    """A one-line progress report on stderr: redrawn in place on a terminal, every 10 s otherwise."""

    def __init__(self, total_bytes: int | None):
        import time

        self.clock = time.monotonic
        self.started = self.last = self.clock()
        self.total = total_bytes
        self.tty = sys.stderr.isatty()

    def update(self, lines: int, done_bytes: int, rejected: int, final: bool = False) -> None:
        now = self.clock()
        if not final and now - self.last < (0.2 if self.tty else 10):
            return
        self.last = now
        rate = lines / max(1e-6, now - self.started)
        share = f"{100 * done_bytes / self.total:5.1f}% " if self.total else ""
        bar = ""
        if self.total:
            filled = int(30 * done_bytes / self.total)
            bar = "[" + "#" * filled + "." * (30 - filled) + "] "
        line = f"{bar}{share}{lines:,} lines  {rate:,.0f}/s  rejected {rejected:,}"
        if self.tty:
            print("\r" + line + "\033[K", end="\n" if final else "", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)


def run(args) -> int:
    import asyncio

    from streams.config import ConfigError

    try:
        bootstrap, refs = _bootstrap_and_schemas(args)
    except ConfigError as exc:
        print(f"eventweir publish: invalid configuration:\n  {exc}", file=sys.stderr)
        return 2
    try:
        stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    except OSError as exc:
        print(f"eventweir publish: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    total = None if args.file == "-" else os.path.getsize(args.file)
    try:
        return asyncio.run(_publish(args, bootstrap, refs, stream, total))
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


async def _publish(args, bootstrap, refs, stream, total) -> int:
    import asyncio

    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError

    from processors.core import SourceRecord
    from processors.decode import Decoder
    from processors.routing.router import extract_key, parse_key_path
    from processors.validate import SchemaValidator
    from streams.kafka.producer import BatchProducer

    decoder = Decoder()
    validator = SchemaValidator({args.topic: refs}) if refs else None
    key_path = parse_key_path(args.key) if args.key else None
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10)
    try:
        await producer.start()
    except KafkaConnectionError:
        await producer.stop()
        print(f"eventweir publish: cannot reach Kafka at {bootstrap}; pass --bootstrap-servers or set "
              "KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 1
    batches = BatchProducer(producer)
    progress = Progress(total)
    published = rejected = lines = done_bytes = 0
    pending = []
    try:
        await batches.partitions(args.topic)

        async def flush(chunk):
            nonlocal published, rejected
            failures = []
            events = decoder.decode(chunk, failures)
            if validator:
                events = validator.process(events, failures)
            for f in failures:
                rejected += 1
                print(f"line {f.record.offset}: {f.error}: {f.message}", file=sys.stderr)
            records = [(extract_key(e.body, key_path) if key_path else None, e.record.value, None) for e in events]
            if records:
                sent, _ = await batches.send(args.topic, records)
                await asyncio.gather(*(future for future, _ in sent))
                published += len(records)

        for raw in stream:
            lines += 1
            done_bytes += len(raw)
            line = raw.strip()
            if not line:
                continue
            pending.append(SourceRecord(args.topic, 0, lines, 0, None, line))
            if len(pending) >= args.batch:
                await flush(pending)
                pending = []
                progress.update(lines, done_bytes, rejected)
        if pending:
            await flush(pending)
        progress.update(lines, done_bytes, rejected, final=True)
    except LookupError as exc:
        print(f"eventweir publish: {exc}; create the topic first", file=sys.stderr)
        return 1
    finally:
        await producer.stop()
    print(f"published {published:,} records to {args.topic}; rejected {rejected:,}", file=sys.stderr)
    return 1 if rejected else 0
