"""Ingest + enrichment throughput per source kind, against the consume + parse floor.

For IoT telemetry, clickstream and Debezium CDC: N realistic records are produced to a topic on
a real broker (Tansu started here unless KAFKA_BOOTSTRAP_SERVERS is set). Each repeat then reads
the topic from the beginning twice, side by side: once doing only `orjson.loads` per value (the
floor: nothing can be faster than reading and parsing), once through the full pipeline
(decode -> validate -> normalise -> enrich, fresh stage state per repeat, run through
processors.chain.Chain in cache-sized sub-batches as the runtime should). Enrichment per kind:
IoT registry join, unit normalisation, heat index, duplicate/out-of-order check, threshold
alerts; clickstream sessions, user agent, CIDR region + IP truncation, profile join; CDC
per-key dedupe (SCD2 history is opt-in and reported separately, in process). Ratios are pipeline
events/s over floor events/s, medians of the repeats; each must be at least 0.30.
Also printed: the in-process pipeline rate on pre-built record batches (no broker), and the
validator choice measured (fastjsonschema vs jsonschema on the same documents).

    python tests/bench/enrich.py [--quick] [--n N] [--repeats R]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import orjson  # noqa: E402
from common import Broker, Reader, preproduce  # noqa: E402

import schemas  # noqa: E402
import streams.runtime.tuning  # noqa: E402
from processors.chain import Chain  # noqa: E402
from processors.core import SourceRecord  # noqa: E402
from processors.decode import Decoder  # noqa: E402
from processors.enrich import (  # noqa: E402
    CdcDeduplicator,
    CidrTable,
    DerivedFields,
    DeviceOrderCheck,
    IpEnricher,
    ReferenceJoin,
    ReferenceTable,
    Scd2History,
    Sessioniser,
    ThresholdAlerts,
    UnitNormaliser,
    UserAgentEnricher,
)
from processors.normalise import CdcNormaliser, ClickstreamNormaliser, IotNormaliser, format_time  # noqa: E402
from processors.validate import SchemaValidator  # noqa: E402
from streams.runtime import eventloop  # noqa: E402

FLOOR_RATIO = 0.30
BASE_MS = 1732530000000
UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",  # noqa: E501
    "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",  # noqa: E501
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0.2210.115",  # noqa: E501
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
]


# --- data ---------------------------------------------------------------------------------------

def iot_values(n: int, rng: random.Random) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        dev = f"sensor-{i % 200:04d}"
        m = {"temperature": {"value": round(rng.uniform(60, 100), 1), "unit": "F"} if i % 2 else round(rng.uniform(15, 38), 1),
             "humidity": round(rng.uniform(20, 90), 1), "pressure": {"value": round(rng.uniform(990, 1030), 1), "unit": "hPa"}}
        doc = {"device_id": dev, "thing_type": "EnvSensorV2", "timestamp": BASE_MS + (i // 200) * 1000,
               "seq": i // 200, "measurements": m, "location": {"lat": 52.37, "lon": 4.89}}
        if i % 3 == 0:
            doc["message_id"] = str(uuid.UUID(int=rng.getrandbits(128)))
        out.append((dev.encode(), orjson.dumps(doc)))
    return out


def click_values(n: int, rng: random.Random) -> list[tuple[bytes, bytes]]:
    out = []
    users = max(50, n // 20)  # ~20 events per user: a realistic session length
    for i in range(n):
        user = f"user-{rng.randrange(users)}"
        doc = {"event_id": f"evt-{i}", "event_name": rng.choice(["page_view", "click", "add_to_cart"]),
               "anonymous_id": f"anon-{user}", "user_id": user if i % 4 else None, "platform": "web",
               "timestamp": format_time(BASE_MS + i * 250 + rng.randrange(250)),  # ~4 events/s
               "page": {"url": f"https://shop.example.com/products/{i % 97}", "path": f"/products/{i % 97}"},
               "properties": {"product_id": str(i % 97), "price": 19.9}, "user_agent": UAS[i % len(UAS)],
               "ip": f"203.0.{int(user[5:]) % 256}.{int(user[5:]) // 256 + 1}"}  # a visitor keeps an address
        out.append((user.encode(), orjson.dumps(doc)))
    return out


def cdc_values(n: int, rng: random.Random) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        cid = 1000 + i % 1000
        op = "c" if i < 1000 else rng.choice("uuuud")
        row = {"id": cid, "first_name": f"name{cid}", "last_name": "Thomas", "email": f"u{cid}-{i}@acme.com",
               "balance": i * 3}
        if i % 2:
            source = {"version": "2.5.0.Final", "connector": "postgresql", "name": "dbserver1",
                      "ts_ms": BASE_MS + i, "snapshot": "false", "db": "postgres", "schema": "inventory",
                      "table": "customers", "txId": 500 + i, "lsn": 24000000 + i * 100, "xmin": None}
        else:
            source = {"version": "2.5.0.Final", "connector": "mysql", "name": "mysqlserver", "ts_ms": BASE_MS + i,
                      "snapshot": "false", "db": "inventory", "table": "customers", "server_id": 223344,
                      "gtid": None, "file": "mysql-bin.000003", "pos": 400 + i * 50, "row": 0, "thread": 7}
        value = {"before": None if op == "c" else row, "after": None if op == "d" else row, "source": source,
                 "op": op, "ts_ms": BASE_MS + i + 150, "transaction": None}
        out.append((orjson.dumps({"id": cid}), orjson.dumps(value)))
    return out


# --- pipelines ----------------------------------------------------------------------------------

def pipelines(topics: dict[str, str]):
    """Fresh stages (and state) per call: each repeat starts from empty state, as after a deploy."""
    registry = ReferenceTable("device", {f"sensor-{i:04d}": {"site": f"greenhouse-{i % 7}", "owner": "ops"}
                                         for i in range(200)})
    profiles = ReferenceTable("profile", {f"user-{i}": {"tier": "gold" if i % 5 == 0 else "basic", "country": "NL"}
                                          for i in range(500)})
    cidrs = CidrTable([(f"203.0.{i}.0/24", {"region": f"region-{i % 5}"}) for i in range(256)] + [("0.0.0.0/0", "world")])
    validator = SchemaValidator({topics["iot"]: "iot@v1", topics["clickstream"]: "clickstream@v1",
                                 topics["cdc"]: "debezium@v1"})
    return {
        "iot": [Decoder(), validator, IotNormaliser(), ReferenceJoin(registry, "detail.device_id", ["site", "owner"]),
                UnitNormaliser(), DerivedFields(), DeviceOrderCheck(),
                ThresholdAlerts([{"name": "hot", "measurement": "temperature", "op": ">", "value": 37.5}])],
        "clickstream": [Decoder(), validator, ClickstreamNormaliser(), Sessioniser(), UserAgentEnricher(),
                        IpEnricher(cidrs, truncate=True),
                        ReferenceJoin(profiles, "detail.user_id", ["tier", "country"])],
        "cdc": [Decoder(tombstones="keep"), validator, CdcNormaliser(), CdcDeduplicator()],
        # SCD2 history is opt-in (it emits up to two extra records per change): measured in process only
        "cdc_scd2": [Decoder(tombstones="keep"), validator, CdcNormaliser(), CdcDeduplicator(), Scd2History()],
    }


# --- validator choice ---------------------------------------------------------------------------

def validator_rates(docs: list[dict]) -> dict[str, float]:
    """The engine behind schemas.validator (jsonschema-rs) against the pure-Python alternatives."""
    schema = schemas.load_schema("clickstream")
    engines = [("jsonschema_rs", schemas.validator("clickstream"))]
    try:
        import fastjsonschema
        engines.append(("fastjsonschema", fastjsonschema.compile(schema)))
    except ImportError:
        pass
    try:
        import jsonschema
        engines.append(("jsonschema", jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.FormatChecker()).is_valid))
    except ImportError:
        pass
    out = {}
    for name, check in engines:
        t0 = time.perf_counter()
        for d in docs:
            check(d)
        out[name] = len(docs) / (time.perf_counter() - t0)
    return out


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run for development")
    parser.add_argument("--n", type=int, help="records per source kind (default 20000, quick 3000)")
    parser.add_argument("--repeats", type=int, help="repeats, median reported (default 5, quick 3)")
    args = parser.parse_args()
    n = args.n or (3000 if args.quick else 20000)
    repeats = args.repeats or (3 if args.quick else 5)

    with Broker() as broker:
        bootstrap = broker.bootstrap
        rng = random.Random(7)
        suffix = uuid.uuid4().hex[:6]
        kinds = {"iot": iot_values(n, rng), "clickstream": click_values(n, rng), "cdc": cdc_values(n, rng)}
        topics = {"iot": f"bench.iot.telemetry.{suffix}", "clickstream": f"bench.clickstream.{suffix}",
                  "cdc": f"bench.dbserver1.inventory.customers.{suffix}"}
        for kind, items in kinds.items():
            await preproduce(bootstrap, topics[kind], items, partitions=1)
        readers = {kind: Reader(bootstrap, topics[kind], n) for kind in kinds}
        for reader in readers.values():
            await reader.start()

        floor = {k: [] for k in kinds}
        piped = {k: [] for k in kinds}
        floor_cpu = {k: [] for k in kinds}
        piped_cpu = {k: [] for k in kinds}
        inproc: dict[str, list[float]] = {}
        failures = {k: 0 for k in kinds}
        prebuilt = {k: [SourceRecord(topics[k], 0, i, BASE_MS, key, value) for i, (key, value) in enumerate(items)]
                    for k, items in kinds.items()}
        # the collector as the worker sets it once started (streams.runtime.tuning.tune_gc): what was built
        # so far frozen out of its reach, and young collections per batch rather than per event
        streams.runtime.tuning.tune_gc()
        for reader in readers.values():  # warm-up: connections, first fetches
            await reader.floor()
        for _ in range(repeats):
            for kind in kinds:
                rate, cpu_rate = await readers[kind].floor()
                floor[kind].append(rate)
                floor_cpu[kind].append(cpu_rate)
                rate, cpu_rate, failed = await readers[kind].pipeline(pipelines(topics)[kind])
                piped[kind].append(rate)
                piped_cpu[kind].append(cpu_rate)
                failures[kind] = failed
                for variant in (kind, "cdc_scd2") if kind == "cdc" else (kind,):
                    stages = pipelines(topics)[variant]
                    chain = Chain(stages[0], stages[1:])
                    t0 = time.perf_counter()
                    for start in range(0, n, 1000):  # the same 1000-record batches the consumer hands over
                        chain.run(prebuilt[kind][start:start + 1000], [])
                    inproc.setdefault(variant, []).append(n / (time.perf_counter() - t0))
        for reader in readers.values():
            await reader.stop()

        med = statistics.median
        figures, ratios = {}, {}
        print(f"enrich bench: {n} records per kind, {repeats} repeats, broker {bootstrap}, {eventloop.loop_name()} loop")
        print(f"{'kind':<12}{'floor ev/s':>14}{'pipeline ev/s':>16}{'in-process ev/s':>18}{'ratio':>8}"
              f"{'cpu ratio':>11}{'dlq':>6}")
        for kind in kinds:
            f, p, i = med(floor[kind]), med(piped[kind]), med(inproc[kind])
            figures[f"{kind}_floor_eps"] = round(f)
            figures[f"{kind}_pipeline_eps"] = round(p)
            figures[f"{kind}_inprocess_eps"] = round(i)
            figures[f"{kind}_failures"] = failures[kind]
            ratios[f"{kind}_vs_floor"] = round(p / f, 3)
            # the same ratio in events per CPU-second of this process: what the code costs, with the
            # time other processes on a shared machine take from us left out
            cpu = med(piped_cpu[kind]) / med(floor_cpu[kind])
            figures[f"{kind}_vs_floor_cpu"] = round(cpu, 3)
            print(f"{kind:<12}{f:>14,.0f}{p:>16,.0f}{i:>18,.0f}{p / f:>8.2f}{cpu:>11.2f}{failures[kind]:>6}")
        scd2 = med(inproc["cdc_scd2"])
        figures["cdc_scd2_inprocess_eps"] = round(scd2)
        print(f"{'cdc + scd2':<12}{'':>14}{'':>16}{scd2:>18,.0f}   (opt-in SCD2 history, in process)")
        docs = [orjson.loads(v) for _, v in kinds["clickstream"][:min(n, 3000)]]
        rates = validator_rates(docs)
        for engine, rate in rates.items():
            figures[f"validate_{engine}_eps"] = round(rate)
        print("validator (clickstream docs, docs/s): " + ", ".join(f"{e} {r:,.0f}" for e, r in rates.items()))
        below = [k for k, v in ratios.items() if v < FLOOR_RATIO]
        print(f"floor {FLOOR_RATIO}: " + ("all kinds pass" if not below else f"BELOW: {', '.join(below)}"))
        print(orjson.dumps({"bench": "enrich", "figures": figures, "ratios": ratios}).decode())
        return 0


if __name__ == "__main__":
    sys.exit(eventloop.run(main()))
