"""`eventweir dlq redrive --topic T [--rule R] [--target ID] [--since 1h|2026-11-25T10:00:00Z]`.

Sends dead letters back to where they came from (their `eventweir-source-topic` header, or
`--to`), with their original key, value and headers, so the worker routes them again once the
cause is fixed. The dead-letter topic is read from its beginning up to its end at start; nothing
is deleted from it (Kafka has no per-record delete), so use --since to avoid redriving twice.
Note: a redriven event is routed by every rule again, so targets that had already taken it may
receive it a second time (at-least-once).
"""
from __future__ import annotations

import os
import re
import sys
from datetime import UTC, datetime

HEADER_PREFIX = "eventweir-"
_RELATIVE = re.compile(r"^(\d+)([smhd])$")


def register(sub) -> None:
    p = sub.add_parser("dlq", help="work with dead-letter topics")
    verbs = p.add_subparsers(dest="dlq_command", metavar="VERB")
    r = verbs.add_parser("redrive", help="send dead letters back to their source topics to be routed again")
    r.add_argument("--topic", required=True, help="the dead-letter topic to read")
    r.add_argument("--rule", help="only dead letters of this rule (eventweir-rule header)")
    r.add_argument("--target", help="only dead letters of this target (rule/id, eventweir-target header)")
    r.add_argument("--since", help="only dead letters written since: 30m, 2h, 1d, or an ISO-8601 time")
    r.add_argument("--to", help="send to this topic instead of each record's source topic")
    r.add_argument("--dry-run", action="store_true", help="count what would be redriven, send nothing")
    r.add_argument("-c", "--config", default=os.environ.get("EVENTWEIR_CONFIG"),
                   help="worker config (for kafka settings); else --bootstrap-servers")
    r.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    r.set_defaults(func=run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def parse_since(text: str | None, now: datetime | None = None) -> int | None:
    """Milliseconds since the epoch, from `30m` / `2h` / `1d` ago or an ISO-8601 time."""
    if not text:
        return None
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(text.strip())
    if match:
        seconds = int(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
        return int(now.timestamp() * 1000) - seconds * 1000
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r}: expected 30m, 2h, 1d or an ISO-8601 time like 2026-11-25T10:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def select(records, rule: str | None, target: str | None, since_ms: int | None, to: str | None):
    """(destination topic, key, value, original headers) for each dead letter that passes the filters."""
    out, skipped = [], 0
    for rec in records:
        headers = dict(rec.headers or ())
        if rule and headers.get("eventweir-rule", b"").decode() != rule:
            continue
        if target and headers.get("eventweir-target", b"").decode() != target:
            continue
        if since_ms is not None and rec.timestamp < since_ms:
            continue
        if "eventweir-value-dropped" in headers:
            skipped += 1  # the body was too large to keep: nothing to send back
            continue
        destination = to or headers.get("eventweir-source-topic", b"").decode()
        if not destination:
            skipped += 1
            continue
        original = [(k, v) for k, v in (rec.headers or ()) if not k.startswith(HEADER_PREFIX)]
        out.append((destination, rec.key, rec.value, original))
    return out, skipped


async def redrive(bootstrap: str, topic: str, rule=None, target=None, since_ms=None, to=None,
                  dry_run: bool = False) -> dict[str, int]:
    """Redrive; returns {destination topic: records sent} (plus "skipped")."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

    from streams.kafka.read import partitions_of, read_to_end

    records: list[ConsumerRecord] = []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic, 30)]
        consumer.assign(tps)
        await read_to_end(consumer, tps, records.extend, 300)
    finally:
        await consumer.stop()
    chosen, skipped = select(records, rule, target, since_ms, to)
    counts: dict[str, int] = {}
    for destination, *_ in chosen:
        counts[destination] = counts.get(destination, 0) + 1
    if not dry_run and chosen:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        try:
            futures = [await producer.send(d, value, key=key, headers=headers) for d, key, value, headers in chosen]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
    counts["skipped"] = skipped
    return counts


def run(args) -> int:
    import asyncio

    bootstrap = args.bootstrap_servers
    if args.config:
        from streams.config import ConfigError, load_config

        try:
            bootstrap = load_config(args.config).kafka.bootstrap_servers
        except ConfigError as exc:
            print(f"eventweir dlq: invalid configuration:\n  {exc}", file=sys.stderr)
            return 2
    if not bootstrap:
        print("eventweir dlq: no Kafka given; pass -c config.yaml or --bootstrap-servers", file=sys.stderr)
        return 2
    try:
        since_ms = parse_since(args.since)
    except ValueError as exc:
        print(f"eventweir dlq: {exc}", file=sys.stderr)
        return 2
    try:
        counts = asyncio.run(redrive(bootstrap, args.topic, args.rule, args.target, since_ms, args.to, args.dry_run))
    except TimeoutError as exc:
        print(f"eventweir dlq: {exc}", file=sys.stderr)
        return 1
    skipped = counts.pop("skipped")
    verb = "would redrive" if args.dry_run else "redrove"
    total = sum(counts.values())
    where = ", ".join(f"{n} to {t}" for t, n in sorted(counts.items())) or "nothing matched"
    print(f"{verb} {total} dead letters from {args.topic}: {where}"
          + (f" ({skipped} skipped: no body or source)" if skipped else ""))
    return 0
