"""Before/after of the windows stage in one run: compare.py's eventweir native peer (pipelines 1 and
2) from two checkouts, alternating, against one broker and one pre-produced dataset; medians.

    PYTHONPATH=$PWD python tests/bench/results/windows_ab.py BASE_CHECKOUT NEW_CHECKOUT [--events N] [--repeats R]

Each checkout runs its own tests/bench/peers/eventweir_native.py with PYTHONPATH set to it.
"""
import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(BENCH), str(BENCH / "peers")]
import compare  # noqa: E402
from common import Broker, unique  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs=2)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[tuple[str, bool], list[dict]] = {}
    with Broker() as broker:
        prefix = unique("data")
        asyncio.run(compare.produce_dataset(broker.bootstrap, prefix, args.events))
        for stateful in (False, True):
            for i in range(args.repeats):
                for tree in args.trees[i % 2:] + args.trees[:i % 2]:  # alternate which goes first
                    out = unique("out")
                    asyncio.run(compare.fresh_outputs(broker.bootstrap, out))
                    cmd = [sys.executable, f"{tree}/tests/bench/peers/eventweir_native.py", "--bootstrap", broker.bootstrap,
                           "--prefix", prefix, "--out", out, "--events", str(args.events), "--group", unique("g")]
                    proc = subprocess.run(cmd + (["--stateful"] if stateful else []), capture_output=True, text=True,
                                          env={**os.environ, "PYTHONPATH": tree})
                    asyncio.run(compare.drop_outputs(broker.bootstrap, out))
                    result = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
                    print(f"{'pipeline 2' if stateful else 'pipeline 1'} {tree}: {result['events_per_s']:,.0f}/s "
                          f"{result['cpu_s']:.2f} CPU s {result['peak_rss_mb']:.0f} MB", flush=True)
                    runs.setdefault((tree, stateful), []).append(result)
    figures = {}
    print(f"{'checkout':<28}{'pipeline':>10}{'events/s':>12}{'CPU s':>8}{'us/event':>10}{'peak RSS MB':>13}")
    for (tree, stateful), results in runs.items():
        med = {k: statistics.median(r[k] for r in results) for k in ("events_per_s", "cpu_s", "peak_rss_mb")}
        name = f"{Path(tree).name}_{'p2' if stateful else 'p1'}"
        figures[name] = {k: round(v, 2) for k, v in med.items()}
        print(f"{Path(tree).name:<28}{2 if stateful else 1:>10}{med['events_per_s']:>12,.0f}{med['cpu_s']:>8.2f}"
              f"{med['cpu_s'] / args.events * 1e6:>10.1f}{med['peak_rss_mb']:>13.0f}")
    base, new = (Path(t).name for t in args.trees)
    after, before = figures[f"{new}_p2"], figures[f"{base}_p2"]
    ratios = {"p2_events_per_s_new_vs_base": round(after["events_per_s"] / before["events_per_s"], 3),
              "p2_cpu_new_vs_base": round(after["cpu_s"] / before["cpu_s"], 3)}
    print(json.dumps({"bench": "windows_ab", "figures": figures, "ratios": ratios}))


if __name__ == "__main__":
    main()
