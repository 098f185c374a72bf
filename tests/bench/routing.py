"""Routing throughput: decode + route over 100 EventBridge rules + produce to 3 Kafka topic
targets, on a realistic mix (IoT telemetry, clickstream, Debezium CDC), against the floor of raw
`getmany()` + `orjson.loads` on the same broker and data, side by side; and the same with an
archive of every event on the bus (CreateArchive without a pattern: one more delivery per event,
and the `replay-name` condition on every rule), against the same without (`archive_on_vs_off`);
and a replay (StartReplay) of the events from an archive topic to a bus topic, unpaced, against
the floor reading the archive (`replay_vs_floor`). Routing runs twice: as shipped, where the rule
set's timing trial chooses between reading records only as far as the rules read (msgspec,
engines/partial.py) and today's orjson path, and with today's path forced (`partial_vs_orjson`).

    python tests/bench/routing.py [--events N] [--repeats R] [--quick]

Figures are medians of R runs, alternating floor and worker (as shipped and orjson forced take
turns at running first). Timing starts once partitions are assigned and, for the worker, ends when
every output is acknowledged and every offset committed.
"""
from __future__ import annotations

import argparse
import asyncio
import time

from common import Broker, floor_run, median, preproduce, summary, unique

from processors.routing import RuleSet
from streams.config import parse_config
from streams.devtools.generator import TrafficGenerator
from streams.kafka.admin import ensure_topics
from streams.runtime import eventloop
from streams.runtime.archives import StoredArchive, StoredReplay
from streams.runtime.reload import ControlTopic
from streams.runtime.worker import Worker

PARTIAL_MARGIN = RuleSet.PARTIAL_MARGIN
THING_TYPES = ["EnvSensorV2", "PumpController", "ColdChainTracker"]
EVENT_NAMES = ["page_view", "add_to_cart", "purchase", "search", "sign_in"]
STATUSES = ["created", "paid", "packed", "shipped", "delivered"]


def rules_for(outputs: list[str], count: int = 100) -> list[dict]:
    """`count` rules of the kinds teams write: thresholds, prefixes, enumerations, anything-but,
    exists, across the three kinds of traffic; most are selective, so an event matches ~1-2."""
    patterns: list[dict] = []
    for t in THING_TYPES:
        for limit in (20, 25, 30, 35):
            patterns.append({"thing_type": [t], "measurements": {"temperature": {"value": [{"numeric": [">", limit]}]}}})
        patterns.append({"thing_type": [t], "measurements": {"battery": [{"numeric": ["<", 15]}]}})
        patterns.append({"thing_type": [t], "firmware": [{"anything-but": ["2.4.1"]}]})
    for i in range(20):
        patterns.append({"device_id": [f"sensor-{i:04d}"], "measurements": {"humidity": [{"numeric": [">=", 40]}]}})
    for name in EVENT_NAMES:
        patterns.append({"event_name": [name], "platform": ["web"]})
        patterns.append({"event_name": [name], "user_id": [{"exists": False}]})
        patterns.append({"event_name": [name], "page": {"path": [{"prefix": "/products"}]}})
    for path in ("/", "/cart", "/checkout", "/search"):
        patterns.append({"page": {"path": [path]}, "user_agent": [{"wildcard": "*iPhone*"}]})
    for status in STATUSES:
        patterns.append({"source": {"table": ["orders"]}, "after": {"status": [status]}})
        patterns.append({"op": ["u"], "after": {"status": [status], "total": [{"numeric": [">", 300]}]}})
    for op in ("c", "u", "d"):
        patterns.append({"op": [op], "source": {"connector": ["postgresql"], "table": [{"prefix": "order"}]}})
    i = 0
    while len(patterns) < count:  # rare events: customers and IPs of interest
        patterns.append({"after": {"customer_id": [1000 + i]}} if i % 2 else {"ip": [f"198.51.100.{i}"]})
        i += 1
    return [{"name": f"rule-{n:03d}", "EventPattern": p,
             "targets": [{"id": "out", "type": "kafka", "topic": outputs[n % len(outputs)]}]}
            for n, p in enumerate(patterns[:count])]


def mixed_traffic(events: int) -> list[tuple[bytes | None, bytes]]:
    gen = TrafficGenerator(seed=1)
    out: list[tuple[bytes | None, bytes]] = []
    now = 1732530000000
    while len(out) < events:
        now += 1
        kind = len(out) % 10
        if kind < 5:
            out.append(gen.iot(now))
        elif kind < 9:
            out.append(gen.click(now))
        else:
            out += [(k, v) for k, v in gen.cdc(now) if v is not None]
    return out[:events]


async def worker_run(bootstrap: str, source: str, outputs: list[str], dlq: str, total: int,
                     archive: bool = False, partial: bool = True) -> tuple[float, dict]:
    """With `archive`, an archive of every event on the bus, stored on the control topic as
    CreateArchive stores it; without, the same control topic with no archive. Without `partial`,
    the rule set's decoder trial never keeps a partial way: records are read whole by orjson."""
    RuleSet.PARTIAL_MARGIN = PARTIAL_MARGIN if partial else 0.0
    control = unique("control")
    config = parse_config({
        "kafka": {"bootstrap_servers": bootstrap, "group_id": unique("worker")},
        "consumer": {"max_batch_records": 5000, "commit_interval_ms": 50, "fetch_timeout_ms": 20},
        "producer": {"linger_ms": 5},
        "dead_letter": {"topic": dlq},
        "sources": [{"topic": source, "kind": "json"}],
        "rules": rules_for(outputs),
        "routing": {"control_topic": control},
    }, environ={})
    store = ControlTopic(config, control)
    await store.start()
    if archive:
        topic = unique("archive")
        await ensure_topics(bootstrap, {topic: 4})
        await store.put_archive(StoredArchive("all", config.bus.name, topic, None, 1, "", time.time()))
    await store.close()
    worker = Worker(config)
    task = asyncio.create_task(worker.run())
    while not worker.assigned:
        if task.done():
            task.result()
        await asyncio.sleep(0.002)
    started = time.perf_counter()
    while sum(worker.stats.committed.values()) < total:
        if task.done():
            task.result()
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    ruleset = worker.pipeline.router.ruleset
    worker.request_stop()
    await task
    return total / elapsed, {"deliveries": worker.stats.delivered, "rules_matched": len(worker.stats.matched),
                             "decoder": ruleset.decoder, "engine": ruleset.engine}


async def replay_run(bootstrap: str, archive_topic: str, dlq: str, total: int) -> float:
    """events/s of one replay of the whole archive topic, from RUNNING to COMPLETED (every event
    acknowledged by the bus topic, the position saved)."""
    control, bus_topic, idle = unique("control"), unique("bus"), unique("idle")
    await ensure_topics(bootstrap, {bus_topic: 4, idle: 1})
    config = parse_config({
        "kafka": {"bootstrap_servers": bootstrap, "group_id": unique("worker")},
        "producer": {"linger_ms": 5},
        "dead_letter": {"topic": dlq},
        "sources": [{"topic": idle, "kind": "json"}],
        "bus": {"topic": bus_topic},
        "routing": {"control_topic": control},
        "archives": {"replay_events_per_second": 1e9, "replay_start_delay_s": 0},
    }, environ={})
    store = ControlTopic(config, control)
    await store.start()
    await store.put_archive(StoredArchive("all", config.bus.name, archive_topic, None, 1, "", time.time()))
    stored = StoredReplay("bench", "all", config.bus.name, (), (), time.time() - 3600, time.time() + 3600, "", "STARTING",
                          time.time())
    await store.put_replay(stored)
    await store.close()
    worker = Worker(config)
    task = asyncio.create_task(worker.run())
    while worker.control is None or worker.control.store.replays.get("bench", stored).state != "RUNNING":
        if task.done():
            task.result()
        await asyncio.sleep(0.002)
    started = time.perf_counter()
    while worker.control.store.replays["bench"].state == "RUNNING":
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    assert worker.control.store.replays["bench"].state == "COMPLETED", worker.control.store.replays["bench"]
    worker.request_stop()
    await task
    return total / elapsed


async def main(events: int, repeats: int) -> None:
    records = mixed_traffic(events)
    size = sum(len(v) for _, v in records) / len(records)
    with Broker() as broker:
        source, dlq = unique("in"), unique("dlq")
        outputs = [unique(f"out{i}") for i in range(3)]
        await preproduce(broker.bootstrap, source, records)
        await ensure_topics(broker.bootstrap, {**{o: 4 for o in outputs}, dlq: 1})
        floors, workers, archived, whole = [], [], [], []
        info: dict = {}
        decoders: list[str] = []
        for i in range(repeats):
            floors.append(await floor_run(broker.bootstrap, source, events))
            # as shipped and orjson forced take turns at going first: neither always runs right after the floor
            for partial in (True, False) if i % 2 == 0 else (False, True):
                rate, info_ = await worker_run(broker.bootstrap, source, outputs, dlq, events, partial=partial)
                if partial:
                    info = info_
                    workers.append(rate)
                    decoders.append(f"{info['engine']}/{info['decoder']}")
                else:
                    whole.append(rate)
            archived.append((await worker_run(broker.bootstrap, source, outputs, dlq, events, archive=True))[0])
            print(f"run {i + 1}/{repeats}: floor {floors[-1]:,.0f}/s  routing {workers[-1]:,.0f}/s "
                  f"({decoders[-1]})  orjson forced {whole[-1]:,.0f}/s  with an archive {archived[-1]:,.0f}/s", flush=True)
        # a replay of the same events, archived as they are (the floor reads them from that topic)
        archive_topic = unique("archive")
        await preproduce(broker.bootstrap, archive_topic, records)
        replay_floors, replays = [], []
        for i in range(repeats):
            replay_floors.append(await floor_run(broker.bootstrap, archive_topic, events))
            replays.append(await replay_run(broker.bootstrap, archive_topic, dlq, events))
            print(f"run {i + 1}/{repeats}: floor {replay_floors[-1]:,.0f}/s  replay {replays[-1]:,.0f}/s", flush=True)
    floor, worker, with_archive, by_orjson = median(floors), median(workers), median(archived), median(whole)
    replay_floor, replay = median(replay_floors), median(replays)
    print()
    print(f"{events:,} mixed events (IoT/clickstream/CDC) of {size:.0f} bytes, 4 partitions, 100 rules, "
          f"3 output topics; {info['deliveries'] / events:.2f} deliveries per event, "
          f"{info['rules_matched']} rules matched something; medians of {repeats} runs, {eventloop.loop_name()} loop")
    print(f"{'contender':<50}{'events/s':>12}{'vs floor':>10}")
    print(f"{'floor: getmany + orjson.loads':<50}{floor:>12,.0f}{1.0:>10.2f}")
    print(f"{'eventweir: decode + route (100 rules) + produce':<50}{worker:>12,.0f}{worker / floor:>10.2f}"
          f"   engine/decoder per run: {', '.join(decoders)}")
    print(f"{'  the same, records read whole by orjson (forced)':<50}{by_orjson:>12,.0f}{by_orjson / floor:>10.2f}")
    print(f"{'  the same with an archive of every event':<50}{with_archive:>12,.0f}{with_archive / floor:>10.2f}")
    print(f"{'floor: getmany + orjson.loads of the archive':<50}{replay_floor:>12,.0f}{1.0:>10.2f}")
    print(f"{'eventweir: replay (read, add replay-name, produce)':<50}{replay:>12,.0f}{replay / replay_floor:>10.2f}")
    summary("routing", {"floor_events_per_s": round(floor), "routing_events_per_s": round(worker),
                        "archive_on_events_per_s": round(with_archive), "replay_floor_events_per_s": round(replay_floor),
                        "replay_events_per_s": round(replay), "routing_orjson_forced_events_per_s": round(by_orjson),
                        "decoders": decoders,
                        "deliveries_per_event": round(info["deliveries"] / events, 3), "rules": 100,
                        "events": events, "repeats": repeats},
            {"routing_vs_floor": round(worker / floor, 3), "partial_vs_orjson": round(worker / by_orjson, 3),
             "archive_on_vs_off": round(with_archive / worker, 3),
             "replay_vs_floor": round(replay / replay_floor, 3)})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="30,000 events, 3 repeats")
    args = parser.parse_args()
    eventloop.run(main(30_000 if args.quick else args.events, args.repeats))
