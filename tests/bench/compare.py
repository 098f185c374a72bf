"""Head-to-head: eventweir (native and on faust) against plain faust-streaming, Quix Streams and
the raw-consume floor, on the same broker and the same pre-produced data, side by side.

    python tests/bench/compare.py [--events N] [--repeats R] [--quick] [--contenders a,b,...]

Data: N mixed events (50% IoT telemetry, 35% clickstream, 15% Debezium CDC) from
streams.devtools.generator, in three 4-partition topics. Pipelines (tests/bench/peers/spec.py):
  1. parse JSON, validate required fields, enrich two fields from a 10,000-entry reference
     table, match 20 EventBridge-pattern rules, produce each match to its output topic;
  2. the same plus a per-key count over 1-minute tumbling windows in each contender's windowed
     state with its changelog (eventweir: the `windows` stage as configured in `sources[].enrich`),
     the closed windows produced to a topic (stateful).
Each contender runs in its own process (tests/bench/peers/<name>.py), so peak RSS is its own;
the clock starts at its first consumed record and stops when its outputs are acknowledged. Cost
beside speed: the CPU seconds the process used over that same window (all its threads and
waited-for children, read in the process: spec.cpu_seconds) and events per CPU-second.
Figures are medians of R repeats; contenders alternate inside each repeat so machine noise hits
all alike. Writes tests/bench/results/compare.png and compare.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import Broker, summary, unique

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))
import spec  # noqa: E402

from streams.kafka.admin import ensure_topics  # noqa: E402

CONTENDERS = {  # name -> (peer script, label)
    "eventweir": ("eventweir_native.py", "eventweir (native)"),
    "eventweir_faust": ("eventweir_faust.py", "eventweir on faust"),
    "faust": ("faust_app.py", "faust-streaming app"),
    "quixstreams": ("quix_app.py", "Quix Streams app"),
    "floor": ("floor.py", "floor: getmany + orjson.loads"),
    "floor_produce": ("floor_produce.py", "reference: floor + produce each"),
}
REFERENCES = {"floor", "floor_produce"}  # no processing: one measurement serves both pipelines
# the faust runtime refuses stateful stages (their changelogs are the native worker's): pipeline 1 only
NOT_STATEFUL = {"eventweir_faust"}
FLOORS = {"eventweir_vs_quixstreams": 3.0, "eventweir_vs_faust": 20.0, "eventweir_vs_floor": 0.25,
          "stateful_eventweir_vs_quixstreams": 2.5, "stateful_eventweir_vs_faust": 15.0}
RESULTS = HERE / "results"


async def produce_dataset(bootstrap: str, prefix: str, events: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from common import preproduce

    data = spec.dataset(events)
    # explicit retention: Quix sizes its changelog topics from the source topic's retention,
    # which Tansu's DescribeConfigs only reports when it was set
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 4, 1, topic_configs={"retention.ms": "604800000", "retention.bytes": "-1"})
                                   for t in spec.topics(prefix).values()])
    finally:
        await admin.close()
    for kind, topic in spec.topics(prefix).items():
        await preproduce(bootstrap, topic, data[kind], partitions=4)


async def fresh_outputs(bootstrap: str, out: str) -> None:
    await ensure_topics(bootstrap, {**{t: 4 for t in spec.out_topics(out).values()}, spec.windows_topic(out): 4,
                                    f"{out}-dlq": 1})


async def drop_outputs(bootstrap: str, out: str) -> None:
    """Output topics are deleted after each run so a long benchmark does not fill the broker."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([*spec.out_topics(out).values(), spec.windows_topic(out), f"{out}-dlq"])
    except Exception as exc:  # noqa: BLE001 - a broker without DeleteTopics just keeps them
        print(f"  (could not delete output topics: {exc})", flush=True)
    finally:
        await admin.close()


def run_contender(name: str, bootstrap: str, prefix: str, events: int, stateful: bool, timeout: float) -> dict:
    out = unique(f"out-{name}")
    asyncio.run(fresh_outputs(bootstrap, out))
    script = HERE / "peers" / CONTENDERS[name][0]
    cmd = [sys.executable, str(script), "--bootstrap", bootstrap, "--prefix", prefix, "--out", out,
           "--events", str(events), "--group", unique(f"g-{name}")] + (["--stateful"] if stateful else [])
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    finally:
        asyncio.run(drop_outputs(bootstrap, out))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    result = json.loads(lines[-1])
    result["wall_s"] = time.monotonic() - started
    return result


def median_of(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if "error" not in r]
    return statistics.median(values) if values else None


def chart(table: dict, path: Path, events: int, repeats: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in CONTENDERS if any(table[p].get(n) for p in table)]
    fig, axes = plt.subplots(1, len(table), figsize=(6.5 * len(table), 4.8), squeeze=False)
    colours = {"eventweir": "#1f6feb", "eventweir_faust": "#6ea8fe", "faust": "#d9822b", "quixstreams": "#2da44e",
               "floor": "#8b949e", "floor_produce": "#b1bac4"}
    for ax, (pipeline, rows) in zip(axes[0], table.items()):
        shown = [n for n in names if rows.get(n)]
        rates = [rows[n]["events_per_s"] for n in shown]
        bars = ax.barh([CONTENDERS[n][1] for n in shown], rates, color=[colours[n] for n in shown])
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("events/s (log scale, higher is better)")
        ax.set_title(pipeline)
        for bar, rate in zip(bars, rates):
            ax.text(rate * 1.05, bar.get_y() + bar.get_height() / 2, f"{rate:,.0f}", va="center", fontsize=9)
        ax.set_xlim(right=max(rates) * 4)
    fig.suptitle(f"{events:,} mixed IoT/clickstream/CDC events, Tansu broker, median of {repeats} runs")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20,000 events, 3 repeats")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated subset")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one contender run may take")
    args = parser.parse_args()
    events = 20_000 if args.quick else args.events
    chosen = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CONTENDERS]
    if unknown:
        parser.error(f"--contenders: unknown {unknown}; expected some of {', '.join(CONTENDERS)}")
    pipelines = {"pipeline 1: validate, enrich, route": False, "pipeline 2: + 1-min tumbling window count": True}
    runs: dict[str, dict[str, list]] = {p: {c: [] for c in chosen} for p in pipelines}
    with Broker() as broker:
        prefix = unique("data")
        started = time.monotonic()
        asyncio.run(produce_dataset(broker.bootstrap, prefix, events))
        print(f"pre-produced {events:,} events in {time.monotonic() - started:.1f}s", flush=True)
        for pipeline, stateful in pipelines.items():
            for i in range(args.repeats):
                # each repeat starts with another contender: a slow spell of the shared machine
                # (or a broker still settling after the pre-produce) does not always fall on the same one
                for name in chosen[i % len(chosen):] + chosen[:i % len(chosen)]:
                    if stateful and name in REFERENCES | NOT_STATEFUL:
                        continue
                    result = run_contender(name, broker.bootstrap, prefix, events, stateful, args.timeout)
                    runs[pipeline][name].append(result)
                    shown = result.get("error") or (f"{result['events_per_s']:,.0f}/s, {result['cpu_s']:.2f} CPU s, "
                                                     f"{result['peak_rss_mb']:.0f} MB")
                    print(f"{pipeline[:10]} run {i + 1}/{args.repeats} {name:<16} {shown}", flush=True)
    first = next(iter(pipelines))
    table: dict[str, dict] = {}
    for pipeline in pipelines:
        rows = {}
        for name in chosen:
            source = runs[first][name] if name in REFERENCES else runs[pipeline][name]
            rate = median_of(source, "events_per_s")
            if rate is not None:
                rows[name] = {"events_per_s": rate, "peak_rss_mb": median_of(source, "peak_rss_mb"),
                              "cpu_s": median_of(source, "cpu_s"),
                              "events_per_cpu_s": median_of(source, "events_per_cpu_s"),
                              "errors": sum(1 for r in source if "error" in r)}
        table[pipeline] = rows
    ratios, figures = {}, {"events": events, "repeats": args.repeats}
    print()
    print(f"{events:,} mixed events (50% IoT, 35% clickstream, 15% CDC), 3 topics x 4 partitions, "
          f"medians of {args.repeats} runs")
    for (pipeline, rows), prefix_ in zip(table.items(), ("", "stateful_")):
        native = rows.get("eventweir", {}).get("events_per_s")
        native_per_cpu = rows.get("eventweir", {}).get("events_per_cpu_s")
        print(f"\n{pipeline}")
        print(f"{'contender':<32}{'events/s':>12}{'CPU s':>8}{'events/CPU-s':>14}{'peak RSS MB':>13}{'vs eventweir':>14}")
        for name, row in rows.items():
            vs = f"{row['events_per_s'] / native:.3f}" if native else "-"
            note = f"  ({row['errors']} failed runs)" if row["errors"] else ""
            print(f"{CONTENDERS[name][1]:<32}{row['events_per_s']:>12,.0f}{row['cpu_s']:>8.2f}"
                  f"{row['events_per_cpu_s']:>14,.0f}{row['peak_rss_mb']:>13.0f}{vs:>14}{note}")
            figures[f"{prefix_}{name}_events_per_s"] = round(row["events_per_s"])
            figures[f"{prefix_}{name}_cpu_s"] = round(row["cpu_s"], 2)
            figures[f"{prefix_}{name}_events_per_cpu_s"] = round(row["events_per_cpu_s"])
            figures[f"{prefix_}{name}_peak_rss_mb"] = round(row["peak_rss_mb"])
        if native:
            for peer, key in (("quixstreams", "eventweir_vs_quixstreams"), ("faust", "eventweir_vs_faust"),
                              ("floor", "eventweir_vs_floor"), ("eventweir_faust", "eventweir_vs_eventweir_faust")):
                if peer in rows:
                    ratios[prefix_ + key] = round(native / rows[peer]["events_per_s"], 3)
                    # cost: events per CPU-second, eventweir's over the peer's (above 1: eventweir is cheaper)
                    ratios[prefix_ + key + "_per_cpu"] = round(native_per_cpu / rows[peer]["events_per_cpu_s"], 3)
    reference, quix = table[first].get("floor_produce"), table[first].get("quixstreams")
    if reference and quix:
        # what the 3x floor asks for, beside what reading and producing alone cost (no processing)
        ratios["floor_produce_vs_quixstreams"] = round(reference["events_per_s"] / quix["events_per_s"], 3)
        print(f"\nreading and producing alone (no processing) run at {ratios['floor_produce_vs_quixstreams']:.2f}x "
              f"Quix Streams' full pipeline 1")
    print("\nfloors: " + ", ".join(
        f"{k} {ratios[k]:.2f} {'>=' if ratios[k] >= v else '<'} {v} {'met' if ratios[k] >= v else 'NOT MET'}"
        for k, v in FLOORS.items() if k in ratios))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "compare.json").write_text(json.dumps({"table": table, "ratios": ratios, "runs": runs}, indent=1))
    chart(table, RESULTS / "compare.png", events, args.repeats)
    print(f"chart: {RESULTS / 'compare.png'}")
    summary("compare", figures, ratios)


if __name__ == "__main__":
    main()
