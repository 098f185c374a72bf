"""`eventweir demo`: the whole system on one machine in under a minute.

Starts an embedded Tansu broker (unless KAFKA_BOOTSTRAP_SERVERS is set), creates the topics,
produces realistic IoT, clickstream and CDC traffic at a chosen rate (with a few malformed
records, to show the dead-letter topic at work), runs a worker with routing rules over it, serves
/metrics, and prints a live status line. Ctrl-C stops everything cleanly.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time

from streams.config import Config, parse_config

TOPICS = {"iot": "iot.telemetry", "click": "clickstream.web", "cdc": "cdc.shop.inventory.orders",
          "joins": "waitingroom.joins"}
OUTPUTS = ["alerts.iot", "analytics.commerce", "orders.changes", "waitingroom.replies", "lake.objects",
           "eventweir.dlq"]
BUS = "bus"
REGISTRY = "registry.devices"  # compacted: the device registry the IoT readings are joined with
CONTROL = "eventweir.rules"  # compacted: rules created through the API live here
ROOM = "demo-sale"


def redis_reachable(url: str) -> bool:
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), 0.5).close()
        return True
    except OSError:
        return False


def demo_config(bootstrap: str, port: int, waitingroom: dict | None = None, lake_dir: str | None = None) -> Config:
    rules = [
        {"name": "hot-devices", "description": "IoT readings above 35 °C become alerts",
         "event_pattern": {"source": ["eventweir.iot"],
                           "detail": {"measurements": {"temperature": {"value": [{"numeric": [">", 35]}]}}}},
         "targets": [{"id": "alerts", "type": "kafka", "topic": "alerts.iot", "key": "$.detail.device_id",
                      "InputTransformer": {
                          "InputPathsMap": {"device": "$.detail.device_id", "t": "$.detail.measurements.temperature.value",
                                            "at": "$.time"},
                          "InputTemplate": '{"alert": "overheating", "device": <device>, "celsius": <t>, "at": <at>}'}}]},
        {"name": "commerce", "description": "Cart and purchase clicks for analytics",
         "event_pattern": {"source": ["eventweir.clickstream"],
                           "detail": {"event_name": ["add_to_cart", "purchase"]}},
         "targets": [{"id": "analytics", "type": "kafka", "topic": "analytics.commerce"}]},
        {"name": "order-changes", "description": "Order rows changed in Postgres, as domain events",
         "event_pattern": {"source": ["eventweir.cdc"], "detail-type": [{"prefix": "orders."}]},
         "targets": [{"id": "changes", "type": "kafka", "topic": "orders.changes"}]},
    ]
    sources = [{"topic": TOPICS["iot"], "kind": "iot", "enrich": [
                   {"type": "join", "table": "devices", "key": "detail.device_id", "fields": ["site", "owner"],
                    "into": "detail.device"}]},
               {"topic": TOPICS["click"], "kind": "clickstream", "enrich": [
                   {"type": "sessions", "gap_minutes": 30}, {"type": "user_agent"}, {"type": "ip", "truncate": True}]},
               {"topic": TOPICS["cdc"], "kind": "cdc", "enrich": [{"type": "dedupe"}]},
               {"topic": BUS, "kind": "envelope"}]
    if lake_dir:
        rules.append({
            "name": "lake", "description": "Every normalised event into a Hive-partitioned JSON-lines lake",
            "event_pattern": {"source": ["eventweir.iot", "eventweir.clickstream", "eventweir.cdc"]},
            "targets": [{"id": "files", "type": "s3", "url": f"file://{lake_dir}",
                         "prefix": "source={source}/year=!{timestamp:yyyy}/month=!{timestamp:MM}/"
                                   "day=!{timestamp:dd}/hour=!{timestamp:HH}/",
                         "flush_size": 5000, "flush_interval_s": 10}]})
        rules.append({
            "name": "new-lake-objects", "description": "The lake's Object Created events, routed like any other",
            "event_pattern": {"source": ["eventweir.s3"], "detail-type": ["Object Created"]},
            "targets": [{"id": "objects", "type": "kafka", "topic": "lake.objects"}]})
    if waitingroom:
        sources.append({"topic": TOPICS["joins"], "kind": "json"})
        rules.append({"name": "room-joins", "description": "Join requests for the demo sale, answered by position",
                      "event_pattern": {"action": ["join", "complete"]},
                      "targets": [{"id": "room", "type": "waitingroom", "reply_topic": "waitingroom.replies"}]})
    return parse_config({
        "kafka": {"bootstrap_servers": bootstrap, "group_id": "eventweir-demo"},
        "consumer": {"commit_interval_ms": 500},
        "http": {"host": "127.0.0.1", "port": port},
        "waitingroom": waitingroom,
        # schema discovery on: `eventweir schemas discovered` shows what the demo's sources look like
        "bus": {"topic": BUS, "discovery": {"enabled": True}},
        "routing": {"control_topic": CONTROL},
        "sources": sources,
        "tables": {"devices": {"topic": REGISTRY}},
        "rules": rules,
    }, environ={})


async def forget_demo_room(room: dict) -> None:
    """The demo's room state is throw-away: remove its keys so repeated demos leave Redis clean."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(room["redis_url"])
    try:
        keys = [key async for key in client.scan_iter(match=room["key_prefix"] + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def demo_waitingroom() -> dict | None:
    url = os.environ.get("EVENTWEIR_REDIS_URL", "redis://127.0.0.1:6379/0")
    if not redis_reachable(url):
        print(f"(no Redis at {url}: the demo runs without its waiting room; set EVENTWEIR_REDIS_URL to add it)")
        return None
    import secrets

    return {"redis_url": url, "key_prefix": f"eventweir:demo:{secrets.token_hex(4)}:",
            "admin_token": secrets.token_urlsafe(24),
            # admit 30 people a minute, so a visitor sees the queue move
            "rooms": {ROOM: {"inlet": {"policy": "fixed_rate", "rate": 30, "interval_s": 60}}}}


async def fill_registry(bootstrap: str) -> None:
    """The device registry, as a CDC feed or an admin tool would keep it: one row per device."""
    import orjson
    from aiokafka import AIOKafkaProducer

    from streams.devtools.generator import TrafficGenerator

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(REGISTRY, key=device.encode(), value=orjson.dumps(
                       {"site": f"greenhouse-{i % 7}", "owner": "ops" if i % 3 else "research"}))
                   for i, device in enumerate(TrafficGenerator().devices)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def generate(producer, rate: int, stop: asyncio.Event, counts: dict, with_room: bool) -> None:
    """Produce `rate` events/s split across the three sources, in 10 slices a second."""
    import orjson

    from streams.devtools.generator import TrafficGenerator
    from streams.kafka.producer import BatchProducer

    gen = TrafficGenerator()
    batch_producer = BatchProducer(producer)
    per_slice = max(1, rate // 10)
    while not stop.is_set():
        started = time.monotonic()
        iot: list[tuple[bytes, bytes, None]] = []
        clicks: list[tuple[bytes, bytes, None]] = []
        cdc: list[tuple[bytes, bytes | None, None]] = []  # a delete's tombstone has no value
        for i in range(per_slice):
            kind = i % 10
            if kind < 5:
                key, value = gen.iot()
                iot.append((key, value if gen.rng.random() > 0.002 else gen.malformed(), None))
            elif kind < 8:
                key, value = gen.click()
                clicks.append((key, value, None))
            else:
                cdc.extend((k, v, None) for k, v in gen.cdc())
        joins = []
        if with_room and gen.rng.random() < 0.5:  # ~5 joins a second
            request_id = f"visitor-{gen.rng.getrandbits(40):010x}"
            joins.append((request_id.encode(), orjson.dumps({"action": "join", "room": ROOM, "request_id": request_id}), None))
        for topic, records in ((TOPICS["iot"], iot), (TOPICS["click"], clicks), (TOPICS["cdc"], cdc),
                               (TOPICS["joins"], joins)):
            if records:
                sent, _ = await batch_producer.send(topic, records)
                counts["produced"] += len(records)
        await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - started)))


def status_line(worker, started: float, previous: dict) -> str:
    stats = worker.stats
    now = time.monotonic()
    elapsed = max(1e-6, now - previous.get("at", started))
    rate_in = (stats.consumed - previous.get("consumed", 0)) / elapsed
    rate_out = (stats.delivered - previous.get("delivered", 0)) / elapsed
    previous.update(at=now, consumed=stats.consumed, delivered=stats.delivered)
    routes = "  ".join(f"{rule} {n:,}" for rule, n in sorted(stats.matched.items()))
    if not worker.joined:
        return f"[{now - started:5.0f}s] joining the consumer group (takes a few seconds on first start) ..."
    return (f"[{now - started:5.0f}s] in {rate_in:7,.0f}/s  out {rate_out:7,.0f}/s  lag {stats.total_lag:,}  "
            f"dead-lettered {stats.dead_lettered:,} | {routes or 'no matches yet'}")


async def run_demo(rate: int, duration: float | None, port: int, lake_dir: str) -> int:
    from aiokafka import AIOKafkaProducer

    from streams.devtools.broker import free_port, start_tansu
    from streams.http.app import serve
    from streams.http.eventbridge.api import mount_demo_api
    from streams.kafka.admin import ensure_topics
    from streams.runtime.worker import Worker
    from streams.service import build_waitingroom, worker_app

    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        print("starting the embedded Kafka broker (Tansu) ...", flush=True)
        broker = start_tansu()
        bootstrap = broker.bootstrap_servers
    print(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}", flush=True)
    try:
        await ensure_topics(bootstrap, {t: 3 for t in list(TOPICS.values()) + OUTPUTS + [BUS]})
        await ensure_topics(bootstrap, {CONTROL: 1, REGISTRY: 1}, compacted={CONTROL, REGISTRY})
        await fill_registry(bootstrap)
        room = demo_waitingroom()
        lake_dir = os.path.abspath(lake_dir)
        os.makedirs(lake_dir, exist_ok=True)
        config = demo_config(bootstrap, port, room, lake_dir)
        worker = Worker(config, waitingroom=build_waitingroom(config))
        app = worker_app(worker)
        key_id, secret = mount_demo_api(app, worker)
        runner, bound = await serve(app, "127.0.0.1", port or free_port())
        base = f"http://127.0.0.1:{bound}"
        print(f"metrics: {base}/metrics   health: {base}/readyz", flush=True)
        print("EventBridge-compatible API (boto3.client('events', endpoint_url=...)); paste into a shell:", flush=True)
        print(f"EVENTWEIR_ENDPOINT={base}", flush=True)
        print(f"AWS_ACCESS_KEY_ID={key_id}", flush=True)
        print(f"AWS_SECRET_ACCESS_KEY={secret}", flush=True)
        print(f"AWS_DEFAULT_REGION={config.bus.region}", flush=True)  # the region requests are signed for
        if room:
            print(f"waiting room: {base}/waitingroom/rooms/{ROOM}/  (the page; API clients solve "
                  f"GET {base}/waitingroom/rooms/{ROOM}/challenge, then POST .../join: README)", flush=True)
            print(f"waiting-room admin token: {room['admin_token']}", flush=True)
        print(f"rules: {', '.join(r.name for r in config.rules)} -> topics {', '.join(OUTPUTS)}", flush=True)
        print(f"lake: {lake_dir} (JSON lines, gzip; objects appear every 5,000 records or 10 s)", flush=True)
        print(f"producing ~{rate} events/s (IoT, clickstream, CDC; a few malformed); Ctrl-C stops", flush=True)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
        await producer.start()
        counts = {"produced": 0}
        worker_task = asyncio.create_task(worker.run())
        gen_task = asyncio.create_task(generate(producer, rate, stop, counts, room is not None))
        started = time.monotonic()
        previous: dict[str, float] = {}  # at, consumed, delivered: for the rates in status_line
        tty = sys.stdout.isatty()
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except TimeoutError:
                    pass
                if worker_task.done():
                    break
                line = status_line(worker, started, previous)
                print(("\r" + line + "\033[K") if tty else line, end="" if tty else "\n", flush=True)
                if duration and time.monotonic() - started >= duration:
                    stop.set()
        finally:
            print("\nstopping: draining the worker and committing offsets ...", flush=True)
            stop.set()
            await asyncio.gather(gen_task, return_exceptions=True)
            await producer.stop()
            # let the worker read what the generator produced last, so nothing is left behind unread
            deadline = time.monotonic() + 5
            while worker.stats.consumed < counts["produced"] and time.monotonic() < deadline and not worker_task.done():
                await asyncio.sleep(0.05)
            worker.request_stop()
            await asyncio.gather(worker_task, return_exceptions=True)
            await runner.cleanup()
            if room:
                await forget_demo_room(room)
        if exc := worker_task.exception():
            raise exc
        stats = worker.stats
        objects = sum(1 for folder, _, files in os.walk(lake_dir) if "_eventweir" not in folder
                      for name in files if not name.startswith("."))
        print(f"done: produced {counts['produced']:,}, consumed {stats.consumed:,}, delivered {stats.delivered:,}, "
              f"dead-lettered {stats.dead_lettered:,}; lake: {objects} objects under {lake_dir}", flush=True)
        return 0
    finally:
        if broker:
            broker.stop()
