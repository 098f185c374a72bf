"""Windowed aggregation over IoT telemetry, against the consume + parse floor (`windows_vs_floor`, floor 0.30).

N IoT readings (200 devices, one reading per device per second of event time, 200,000 by default)
are produced to a topic on a real broker (Tansu started here unless KAFKA_BOOTSTRAP_SERVERS is set);
10% of them are out of order, delayed by up to 20 s of event time, within the 30 s allowed lateness.
Each repeat reads the topic from the beginning twice: only `orjson.loads` per value (the floor),
then decode -> the `windows` stage as a user configures it (1-minute tumbling windows per
$.device_id over $.timestamp, count, mean and max humidity, first and last sequence number),
fresh state per repeat, with each batch's state changes serialised for the changelog as the worker
does after each batch. Ratios are events/s over the floor's, medians of the repeats; the in-process
rate on pre-built batches is printed too, and the closed windows and late records are checked
(every window closes with all its readings, none late).

    python tests/bench/windows.py [--quick] [--n N] [--repeats R]
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
from enrich import BASE_MS, iot_values  # noqa: E402

from processors.chain import Chain  # noqa: E402
from processors.core import SourceRecord  # noqa: E402
from processors.decode import Decoder  # noqa: E402
from processors.enrich.windows import WindowAggregate  # noqa: E402
from streams.runtime import eventloop, tuning  # noqa: E402

FLOOR_RATIO = 0.30
DEVICES = 200
SETTINGS = {  # what a user writes under sources[].enrich
    "type": "windows", "name": "humidity1m", "window": "tumbling", "size": "1m", "allowed_lateness": "30s",
    "key": "$.device_id", "time": "$.timestamp",
    "aggregations": {"readings": {"op": "count"}, "mean": {"op": "mean", "field": "$.measurements.humidity"},
                     "max": {"op": "max", "field": "$.measurements.humidity"},
                     "first_seq": {"op": "first", "field": "$.seq"}, "last_seq": {"op": "last", "field": "$.seq"}},
}


def readings(n: int, rng: random.Random) -> list[tuple[bytes, bytes]]:
    """enrich.py's IoT readings, every 10th delayed by 1-20 s of event time (out of order, within the lateness)."""
    out = []
    for i, (key, value) in enumerate(iot_values(n, rng)):
        if i % 10 == 5:
            doc = orjson.loads(value)
            doc["timestamp"] -= rng.randrange(1_000, 20_000)
            value = orjson.dumps(doc)
        out.append((key, value))
    return out


def stages() -> list:
    """Fresh stages and state, as after a deploy."""
    settings = WindowAggregate.Settings.model_validate({k: v for k, v in SETTINGS.items() if k != "type"})
    return [Decoder(), WindowAggregate.from_settings(settings)]


def changelog_writer(stage: WindowAggregate):
    """What the worker does with a batch's state changes (streams.runtime.state): serialise each,
    then, once the batch is committed, tell the state (the results its windows closed are
    forgotten; without this each key's entry, re-serialised on every change, keeps growing)."""
    dumps, state = orjson.dumps, stage.state

    def write() -> None:
        for _, _, value in state.changes():
            if value is not None:
                dumps(value)
        for partition in state.partitions():
            meta = state.table(partition).get("~")
            if meta is not None:
                state.committed(partition, meta["offset"] + 1)
    return write


async def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run for development")
    parser.add_argument("--n", type=int, help="records (default 200000, quick 20000)")
    parser.add_argument("--repeats", type=int, help="repeats, median reported (default 3, quick 2)")
    args = parser.parse_args()
    n = args.n or (20_000 if args.quick else 200_000)
    repeats = args.repeats or (2 if args.quick else 3)

    with Broker() as broker:
        items = readings(n, random.Random(7))
        topic = f"bench.iot.windows.{uuid.uuid4().hex[:6]}"
        await preproduce(broker.bootstrap, topic, items, partitions=1)
        reader = Reader(broker.bootstrap, topic, n)
        await reader.start()
        prebuilt = [SourceRecord(topic, 0, i, BASE_MS, key, value) for i, (key, value) in enumerate(items)]
        tuning.tune_gc()
        await reader.floor()  # warm-up
        runs: dict[str, list[float]] = {k: [] for k in ("floor", "windows", "floor_cpu", "windows_cpu", "inproc")}
        failed = 0
        for _ in range(repeats):
            rate, cpu = await reader.floor()
            runs["floor"].append(rate)
            runs["floor_cpu"].append(cpu)
            parts = stages()
            rate, cpu, failed = await reader.pipeline(parts, changelog_writer(parts[-1]))
            runs["windows"].append(rate)
            runs["windows_cpu"].append(cpu)
            parts = stages()
            chain, write = Chain(parts[0], parts[1:]), changelog_writer(parts[-1])
            results: list = []
            t0 = time.perf_counter()
            for start in range(0, n, 1000):  # the 1000-record batches the consumer hands over
                results += [e for e in chain.run(prebuilt[start:start + 1000], []) if "detail-type" in e.body]
                write()
            runs["inproc"].append(n / (time.perf_counter() - t0))
            stage = parts[-1]
        await reader.stop()

        closed_readings = sum(e.body["detail"]["aggregates"]["readings"] for e in results)
        open_windows = sum(len(v["open"]) for k, v in stage.state.table(0).items() if k.startswith("k"))
        med = {k: statistics.median(v) for k, v in runs.items()}
        figures = {"events": n, "repeats": repeats, "floor_eps": round(med["floor"]),
                   "windows_eps": round(med["windows"]), "windows_inprocess_eps": round(med["inproc"]),
                   "windows_vs_floor_cpu": round(med["windows_cpu"] / med["floor_cpu"], 3),
                   "closed_windows": len(results), "open_windows_at_end": open_windows,
                   "late_records": stage.late, "failures": failed}
        ratios = {"windows_vs_floor": round(med["windows"] / med["floor"], 3)}
        print(f"windows bench: {n:,} IoT readings ({DEVICES} devices, 10% out of order within the lateness), "
              f"{repeats} repeats, broker {broker.bootstrap}, {eventloop.loop_name()} loop; medians")
        print(f"{'run':<40}{'ev/s':>12}{'in-process ev/s':>18}{'vs floor':>10}")
        print(f"{'floor (orjson.loads)':<40}{med['floor']:>12,.0f}{'':>18}{1:>10.2f}")
        print(f"{'decode + windows (tumbling 1m, 5 aggs)':<40}{med['windows']:>12,.0f}{med['inproc']:>18,.0f}"
              f"{ratios['windows_vs_floor']:>10.2f}")
        print(f"{len(results):,} windows closed holding {closed_readings:,} readings, {open_windows} still open, "
              f"{stage.late} late, {failed} failed; cpu ratio {figures['windows_vs_floor_cpu']}")
        if stage.late or failed:
            print("UNEXPECTED: every reading is within the lateness")
        verdict = "passes" if ratios["windows_vs_floor"] >= FLOOR_RATIO else "is BELOW"
        print(f"windows_vs_floor {verdict} the floor {FLOOR_RATIO}")
        print(orjson.dumps({"bench": "windows", "figures": figures, "ratios": ratios}).decode())
        return 0


if __name__ == "__main__":
    sys.exit(eventloop.run(main()))
