"""Decoding only what the rules read: RuleSet.matching_bytes against today's path and the floor.

    python tests/bench/partial.py            # default run (~3 min on 2 cores)
    python tests/bench/partial.py --quick    # small run
    python tests/bench/partial.py --events 200000 --repeats 5

Per rule set of tests/bench/patterns.py (citylots-shaped events), three ways over the same lines,
side by side in one run:
- floor: `orjson.loads` of every line, nothing else;
- generated: today's path, `orjson.loads` then `RuleSet.matching` (the engine its trial chose),
  as patterns.py times it, except that each batch's answers are kept in a list, as
  matching_bytes returns them (a router delivers them per batch);
- partial: `RuleSet.matching_bytes(batch)`, whichever way its trial chose (engines/partial.py:
  msgspec structs of the fields read with the index or bit-mask engine, or orjson where that
  is faster).
Lines go in batches of `--batch` (1000: a fetch's worth).
Both rule sets are warmed first by one pass (their trials decide on it). Every repeat times the
three in turn, in a rotating order, and ratios are taken within the repeat (medians reported),
so load from other processes scales them alike. `R_vs_generated` is generated time / partial
time (above 1: partial is faster). `msgspec decode only` times the decoder of `exact` alone
(structs, no matching): what the issue measured. The last line is the JSON summary.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from processors.routing import RuleSet  # noqa: E402
from tests.bench.patterns import NAMES, bytes_matches, citylots, floor, rules_of, scale_rules  # noqa: E402

BATCH = 1000  # lines per call: a fetch's worth (--batch)


def today(rs):
    """Today's path over batches: each line read whole, matched, its answer kept with the batch's."""
    matching, loads = rs.matching, orjson.loads

    def run(lines):
        hits = 0
        for i in range(0, len(lines), BATCH):
            for names in [matching(loads(line)) for line in lines[i:i + BATCH]]:
                hits += len(names)
        return hits
    return run


def partial(rs):
    return bytes_matches(rs, BATCH)  # BATCH as --batch set it


def side_by_side(ways: dict, lines, repeats: int) -> tuple[dict, dict, dict]:
    """({way: median events/s}, {way: median ratio of the floor's time to its}, {way: result})."""
    names = list(ways)
    times: dict = {n: [] for n in names}
    rel: dict = {n: [] for n in names}
    vs: list = []
    results: dict = {}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        took = {}
        for n in order:
            t0 = time.perf_counter()
            results[n] = ways[n](lines)
            took[n] = time.perf_counter() - t0
            times[n].append(took[n])
        for n in names:
            rel[n].append(took["floor"] / took[n])
        if "generated" in took and "partial" in took:
            vs.append(took["generated"] / took["partial"])
    eps = {n: len(lines) / statistics.median(t) for n, t in times.items()}
    ratios = {n: statistics.median(v) for n, v in rel.items()}
    if vs:
        ratios["R_vs_generated"] = statistics.median(vs)
    return eps, ratios, results


def prepared(rules, lines):
    """Two rule sets, each warmed by one pass of its way (its trials decide on it)."""
    ours, theirs = RuleSet(rules), RuleSet(rules)
    today(ours)(lines)
    partial(theirs)(lines)
    gc.collect()
    gc.freeze()  # as a worker does after compiling its rules (patterns.py's _settle)
    return ours, theirs


def main() -> None:
    global BATCH
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small run")
    ap.add_argument("--events", type=int, help="events per pass")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1000, help="lines per batch")
    ap.add_argument("--scale", type=int, nargs="*", default=None,
                    help="rule counts of patterns.py's scale rule sets (default: 1 100000; none: skip)")
    args = ap.parse_args()
    BATCH = args.batch
    n = args.events or (20_000 if args.quick else 60_000)
    scale = args.scale if args.scale is not None else ([1, 10_000] if args.quick else [1, 100_000])
    lines = citylots(n)
    print(f"citylots-shaped data: {n} events, {sum(map(len, lines)) / n:.0f} bytes/event; medians of "
          f"{args.repeats} repeats, the three ways in turn")
    figures: dict = {}
    ratios: dict = {}
    print(f"{'rule set':26} {'decoder':16} {'generated ev/s':>15} {'vs floor':>9} {'partial ev/s':>13} "
          f"{'vs floor':>9} {'R_vs_generated':>15} {'fallbacks':>10}")

    def row(name, rules, rows_lines):
        ours, theirs = prepared(rules, rows_lines)
        eps, rel, res = side_by_side({"floor": floor, "generated": today(ours), "partial": partial(theirs)},
                                     rows_lines, args.repeats)
        assert res["generated"] == res["partial"], (name, res)  # the same matches
        p = theirs.partial
        fallbacks = p.fallbacks / max(1, p.decoded + p.fallbacks) if theirs.decoder.startswith("partial") else None
        figures[name] = {"floor_events_per_s": round(eps["floor"]), "generated_events_per_s": round(eps["generated"]),
                         "partial_events_per_s": round(eps["partial"]), "decoder": theirs.decoder,
                         "engine": ours.engine, "matches": res["partial"],
                         "partial_fallback_share": None if fallbacks is None else round(fallbacks, 4)}
        ratios[f"{name}_vs_floor"] = round(rel["partial"], 3)
        ratios[f"{name}_generated_vs_floor"] = round(rel["generated"], 3)
        ratios[f"{name}_R_vs_generated"] = round(rel["R_vs_generated"], 3)
        print(f"{name:26} {theirs.decoder:16} {eps['generated']:>15,.0f} {rel['generated']:>9.2f} "
              f"{eps['partial']:>13,.0f} {rel['partial']:>9.2f} {rel['R_vs_generated']:>15.2f} "
              f"{'-' if fallbacks is None else f'{fallbacks:.1%}':>10}")
        gc.unfreeze()

    for name in NAMES + ["combined"]:
        row(name, rules_of(name), lines)

    # the measure: the structs of `exact` decoded, nothing matched
    rs = RuleSet(rules_of("exact"))
    rs.matching_bytes(lines[:1])
    decode = rs.partial.decode

    def decode_only(ls):
        for line in ls:
            decode(line)
    eps, rel, _ = side_by_side({"floor": floor, "decode": decode_only}, lines, args.repeats)
    ratios["exact_msgspec_decode_only_vs_floor"] = round(rel["decode"], 3)
    print(f"{'msgspec decode only (exact)':26} {'':16} {'':>15} {'':>9} {eps['decode']:>13,.0f} {rel['decode']:>9.2f}")

    # compare.py's pipeline 1: its 20 rules over IoT, clickstream and CDC records (a rule set per
    # topic kind there; here one set over the records of all three, as one topic would carry them)
    sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
    import spec  # the peers' shared spec, as compare.py loads it
    data = spec.dataset(n, seed=1)
    mixed = [v for records in zip(*data.values()) for _, v in records]
    print(f"    (pipeline_1: {len(mixed)} records of compare.py's dataset, "
          f"{sum(map(len, mixed)) / len(mixed):.0f} bytes/record, kinds interleaved)")
    row("pipeline_1", {name: pattern for name, _, pattern, _ in spec.RULES}, mixed)

    scale_lines = lines[:min(n, 30_000)]
    for count in scale:
        t0 = time.perf_counter()
        rules = scale_rules(count)
        row(f"rules_{count}", rules, scale_lines)
        print(f"    ({count} rules, {len(scale_lines)} events; compiled and warmed in {time.perf_counter() - t0:.1f}s)")
    if 1 in scale and 100_000 in scale:
        # floor-relative, as patterns.py takes it
        ratios["rules_100000_vs_rules_1"] = round(ratios["rules_100000_vs_floor"] / ratios["rules_1_vs_floor"], 3)
        ratios["rules_100000_vs_rules_1_generated"] = round(
            ratios["rules_100000_generated_vs_floor"] / ratios["rules_1_generated_vs_floor"], 3)
    print(json.dumps({"bench": "partial", "figures": figures, "ratios": ratios}))


if __name__ == "__main__":
    main()
