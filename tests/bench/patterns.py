"""EventBridge pattern matching: events/s on a citylots-shaped data set, against orjson.loads
alone (the floor) and the pattern engines of moto and localstack-core (peers), side by side.

    python tests/bench/patterns.py            # default run (~4 min on 2 cores)
    python tests/bench/patterns.py --quick    # small run
    python tests/bench/patterns.py --events 200000

Each figure is the median of several repeats of: parse every line with orjson, then match it.
The machine is shared, so every repeat times the floor (orjson.loads of the same lines) right
before the engine and ratios are taken per repeat (medians reported): load from other processes
then scales both sides alike. Peers run on fewer events than eventweir (they are far slower);
events/s is a rate, so the figures compare, and the peer ratio is taken floor-relative too.
eventweir runs two ways, side by side: `matching(orjson.loads(line))` per line (today's path, as
`ours`), and `RuleSet.matching_bytes` over batches of 1,000 lines (`ours_bytes`: what the worker's
route_records calls, reading lines only as far as the rules read, in C, where its timing trial
finds that faster: engines/partial.py; the `decoder` column says what the trial kept).
The last line is the JSON summary.
"""
from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from processors.routing import RuleSet  # noqa: E402

STREETS = ["FOLSOM", "MARKET", "MISSION", "HOWARD", "VALENCIA", "GUERRERO", "DOLORES", "CHURCH",
           "SANCHEZ", "NOE", "CASTRO", "DIAMOND", "DOUGLASS", "HOFFMAN", "GRAND VIEW", "CLIPPER",
           "ELIZABETH", "JERSEY", "24TH", "25TH", "ALVARADO", "HILL", "LIBERTY", "CUMBERLAND",
           "CORBETT", "PORTOLA", "TARAVAL", "ULLOA", "VICENTE", "WAWONA", "SLOAT", "JUDAH",
           "KIRKHAM", "LAWTON", "MORAGA", "NORIEGA", "ORTEGA", "PACHECO", "QUINTARA", "RIVERA",
           "SANTIAGO", "LAGUNA HONDA", "GENEVA", "OCEAN", "BRODERICK", "DIVISADERO", "SCOTT"]
ST_TYPES = ["ST", "AVE", "BLVD", "WAY", "TER", "DR", "LN", "CT", "PL", "AL"]


def citylots(n: int, seed: int = 42) -> list[bytes]:
    """`n` GeoJSON-like lot features of ~900 bytes, one JSON document per line."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        block = f"{rnd.randrange(1, 7600):04d}"
        lot = f"{rnd.randrange(1, 400):03d}"
        x0, y0 = -122.52 + rnd.random() * 0.16, 37.70 + rnd.random() * 0.11
        coords = [[round(x0 + rnd.uniform(-3e-4, 3e-4), 14), round(y0 + rnd.uniform(-3e-4, 3e-4), 14), 0.0]
                  for _ in range(12)]
        coords.append(coords[0])
        frm = rnd.randrange(0, 3000)
        doc = {
            "type": "Feature",
            "properties": {
                "MAPBLKLOT": block + lot, "BLKLOT": block + lot, "BLOCK_NUM": block, "LOT_NUM": lot,
                "FROM_ST": str(frm), "TO_ST": str(frm + rnd.randrange(0, 40)),
                "STREET": rnd.choice(STREETS), "ST_TYPE": rnd.choice(ST_TYPES),
                "ODD_EVEN": rnd.choice("OE"),
            },
            "geometry": {
                "type": "Polygon" if rnd.random() < 0.9 else "MultiPolygon",
                "coordinates": [coords],
                "firstCoordinates": {"x": coords[0][0], "y": coords[0][1], "z": 0.0},
            },
        }
        out.append(orjson.dumps(doc))
    return out


def P(**props):
    return {"properties": props}


RULE_SETS = {
    "exact": [P(MAPBLKLOT=["1430022"]), P(STREET=["FOLSOM"]), P(ST_TYPE=["BLVD"], ODD_EVEN=["E"]),
              P(BLOCK_NUM=["0100"]), P(LOT_NUM=["007"], STREET=["MARKET"])],
    "wildcard": [P(STREET=[{"wildcard": "*ST*"}]), P(MAPBLKLOT=[{"wildcard": "14*22"}]),
                 P(STREET=[{"wildcard": "G*O"}]), P(ST_TYPE=[{"wildcard": "*L*"}]),
                 P(BLKLOT=[{"wildcard": "0*0*1"}])],
    "prefix": [P(STREET=[{"prefix": "FO"}]), P(MAPBLKLOT=[{"prefix": "14"}]),
               P(BLOCK_NUM=[{"prefix": "07"}]), P(ST_TYPE=[{"prefix": "B"}]), P(TO_ST=[{"prefix": "29"}])],
    "prefix_eic": [P(STREET=[{"prefix": {"equals-ignore-case": "fo"}}]),
                   P(STREET=[{"prefix": {"equals-ignore-case": "Gu"}}]),
                   P(ST_TYPE=[{"prefix": {"equals-ignore-case": "bl"}}]),
                   P(STREET=[{"prefix": {"equals-ignore-case": "laGUNA"}}]),
                   P(ODD_EVEN=[{"prefix": {"equals-ignore-case": "o"}}])],
    "suffix": [P(STREET=[{"suffix": "OM"}]), P(MAPBLKLOT=[{"suffix": "22"}]), P(ST_TYPE=[{"suffix": "VE"}]),
               P(STREET=[{"suffix": "TH"}]), P(LOT_NUM=[{"suffix": "9"}])],
    "suffix_eic": [P(STREET=[{"suffix": {"equals-ignore-case": "om"}}]),
                   P(STREET=[{"suffix": {"equals-ignore-case": "Th"}}]),
                   P(ST_TYPE=[{"suffix": {"equals-ignore-case": "ve"}}]),
                   P(STREET=[{"suffix": {"equals-ignore-case": "HONDA"}}]),
                   P(ST_TYPE=[{"suffix": {"equals-ignore-case": "l"}}])],
    "equals_ignore_case": [P(STREET=[{"equals-ignore-case": "folsom"}]),
                           P(STREET=[{"equals-ignore-case": "Market"}]),
                           P(ST_TYPE=[{"equals-ignore-case": "ave"}]),
                           P(ODD_EVEN=[{"equals-ignore-case": "e"}]),
                           P(STREET=[{"equals-ignore-case": "grand view"}])],
    "numeric": [{"geometry": {"firstCoordinates": {"x": [{"numeric": ["<", -122.5]}]}}},
                {"geometry": {"firstCoordinates": {"y": [{"numeric": [">=", 37.8]}]}}},
                {"geometry": {"firstCoordinates": {"x": [{"numeric": [">", -122.41, "<=", -122.4]}]}}},
                {"geometry": {"firstCoordinates": {"z": [{"numeric": ["=", 0]}]}}},
                {"geometry": {"firstCoordinates": {"y": [{"numeric": [">", 37.75, "<", 37.751]}]}}}],
    "complex_arrays": [{"geometry": {"type": ["Polygon"], "coordinates": [{"numeric": [">", -122.401, "<", -122.4]}]}},
                       {"geometry": {"coordinates": [{"numeric": ["=", 37.75]}]}},
                       {"geometry": {"type": ["MultiPolygon"], "coordinates": [{"numeric": ["<", -122.515]}]}},
                       {"geometry": {"coordinates": [{"numeric": [">", 37.8099]}]}, "properties": {"ODD_EVEN": ["O"]}},
                       {"geometry": {"type": ["Polygon"], "firstCoordinates": {"x": [{"numeric": ["<", -122.51]}]}}}],
    "anything_but": [P(STREET=[{"anything-but": ["FOLSOM", "MARKET"]}]), P(ST_TYPE=[{"anything-but": "ST"}]),
                     P(ODD_EVEN=[{"anything-but": ["O"]}]), P(LOT_NUM=[{"anything-but": ["001", "002"]}]),
                     P(STREET=[{"anything-but": ["MISSION"]}], ST_TYPE=["AVE"])],
    "anything_but_ignore_case": [P(STREET=[{"anything-but": {"equals-ignore-case": ["folsom", "market"]}}]),
                                 P(ST_TYPE=[{"anything-but": {"equals-ignore-case": "st"}}]),
                                 P(ODD_EVEN=[{"anything-but": {"equals-ignore-case": "o"}}]),
                                 P(STREET=[{"anything-but": {"equals-ignore-case": "Mission"}}]),
                                 P(ST_TYPE=[{"anything-but": {"equals-ignore-case": ["ave", "blvd"]}}])],
    "anything_but_prefix": [P(STREET=[{"anything-but": {"prefix": "FO"}}]),
                            P(MAPBLKLOT=[{"anything-but": {"prefix": "1"}}]),
                            P(ST_TYPE=[{"anything-but": {"prefix": "A"}}]),
                            P(BLOCK_NUM=[{"anything-but": {"prefix": "0"}}]),
                            P(STREET=[{"anything-but": {"prefix": "S"}}])],
    "anything_but_suffix": [P(STREET=[{"anything-but": {"suffix": "OM"}}]),
                            P(MAPBLKLOT=[{"anything-but": {"suffix": "1"}}]),
                            P(ST_TYPE=[{"anything-but": {"suffix": "T"}}]),
                            P(LOT_NUM=[{"anything-but": {"suffix": "0"}}]),
                            P(STREET=[{"anything-but": {"suffix": "TH"}}])],
    "anything_but_wildcard": [P(STREET=[{"anything-but": {"wildcard": "*O*"}}]),
                              P(MAPBLKLOT=[{"anything-but": {"wildcard": "1*2"}}]),
                              P(ST_TYPE=[{"anything-but": {"wildcard": "A*"}}]),
                              P(LOT_NUM=[{"anything-but": {"wildcard": "*0"}}]),
                              P(STREET=[{"anything-but": {"wildcard": "*TH"}}])],
}
NAMES = list(RULE_SETS)
WARM = 16_000  # lines the trials take (engine: ~9,600, then decoder: ~4,800)


def rules_of(name: str) -> dict:
    if name == "combined":
        return {f"{n}-{i}": p for n in NAMES for i, p in enumerate(RULE_SETS[n])}
    return {f"{name}-{i}": p for i, p in enumerate(RULE_SETS[name])}


def timed(fn, lines, repeats):
    """(median events/s, median events/s relative to the floor timed alongside, fn's result)."""
    runs, rel, result = [], [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        floor(lines)
        t1 = time.perf_counter()
        result = fn(lines)
        t2 = time.perf_counter()
        runs.append(t2 - t1)
        rel.append((t1 - t0) / (t2 - t1))
    return len(lines) / statistics.median(runs), statistics.median(rel), result


def floor(lines):
    loads = orjson.loads
    for line in lines:
        loads(line)
    return None


def _settle() -> None:
    """What a long-lived worker does after compiling its rules at start-up: move them out of the
    garbage collector's sight, so collections triggered by per-event allocations do not walk
    100,000 compiled rules. Applied to every engine alike."""
    gc.collect()
    gc.freeze()


def ours(rules):
    rs = RuleSet(rules)
    _settle()
    matching, loads = rs.matching, orjson.loads

    def run(lines):
        hits = 0
        for line in lines:
            hits += len(matching(loads(line)))
        return hits
    return run


BATCH = 1000  # lines per matching_bytes call: a fetch's worth


def bytes_matches(rs, batch: int = BATCH):
    """A timed run of `rs.matching_bytes` over lines, `batch` at a time: the number of matches."""
    def run(lines):
        hits = 0
        for i in range(0, len(lines), batch):
            for names in rs.matching_bytes(lines[i:i + batch]):
                hits += len(names) if names is not None else 0
        return hits
    return run


def ours_bytes(rules, warm):
    """The worker's path: `matching_bytes` per batch; its trials (the engine's, then the
    decoder's) run on `warm` first, as on a worker's first events. `run.decoder`: the choice."""
    rs = RuleSet(rules)
    for i in range(0, len(warm), BATCH):
        rs.matching_bytes(warm[i:i + BATCH])
    _settle()
    run = bytes_matches(rs)
    run.decoder = rs.decoder  # type: ignore[attr-defined]
    return run


def moto_peer(rules):
    from moto.events.models import EventPattern
    compiled = [EventPattern.load(json.dumps(p)) for p in rules.values()]
    _settle()

    def run(lines):
        hits = 0
        for line in lines:
            ev = orjson.loads(line)
            hits += sum(1 for p in compiled if p.matches_event(ev))
        return hits
    return run


def localstack_peer(rules):
    from localstack.services.events.event_rule_engine import EventPatternCompiler, EventRuleEngine
    compiler, engine = EventPatternCompiler(), EventRuleEngine()
    compiled = [compiler.compile_event_pattern(json.dumps(p)) for p in rules.values()]
    _settle()

    def run(lines):
        hits = 0
        for line in lines:
            ev = orjson.loads(line)
            hits += sum(1 for p in compiled if engine.evaluate_pattern_on_event(p, ev))
        return hits
    return run


PEERS = {"moto": moto_peer, "localstack": localstack_peer}


def exact_lookups_only(lines):
    """Reference for `exact`, no engine: a function, called per event as a matcher is, that looks
    the six properties its rules read up in tables of their rules' values, with no type checks,
    no rule names, no EventBridge semantics. Less than any correct matcher does per event: its
    ratio to the floor bounds what `exact` can reach in pure Python."""
    t1, t2, t3, t4, t5, t6 = ({v: (i,) for i, v in enumerate(values)} for values in
                              (["1430022"], ["FOLSOM", "MARKET"], ["BLVD"], ["E"], ["0100"], ["007"]))

    def lookups(ev):
        p = ev["properties"]
        found = [t1.get(p.get("MAPBLKLOT")), t2.get(p.get("STREET")), t3.get(p.get("ST_TYPE")),
                 t4.get(p.get("ODD_EVEN")), t5.get(p.get("BLOCK_NUM")), t6.get(p.get("LOT_NUM"))]
        return found if any(found) else []
    loads, hits = orjson.loads, 0
    for line in lines:
        hits += len(lookups(loads(line)))
    return hits


def combined_reads_only(lines):
    """Reference for `combined`, no engine: read every value its rules use (14 of them) and look
    at each of the 39 coordinates once, by the cheapest pass found (a membership test in C per
    point), deciding no rule. Any pure-Python matcher for that rule set does at least this much
    per event, so its ratio to the floor bounds what `combined` can reach."""
    loads = orjson.loads
    hits = 0
    for line in lines:
        ev = loads(line)
        p, g = ev["properties"], ev["geometry"]
        f = g["firstCoordinates"]
        values = (ev["type"], p["MAPBLKLOT"], p["BLKLOT"], p["BLOCK_NUM"], p["LOT_NUM"], p["TO_ST"], p["STREET"],
                  p["ST_TYPE"], p["ODD_EVEN"], g["type"], f["x"], f["y"], f["z"])
        for point in g["coordinates"][0]:
            if 37.75 in point:
                hits += 1
        hits += len(values)
    return hits


def scale_rules(n: int) -> dict:
    """n rules: 90% exact on a lot id, 10% a mix of prefix/suffix/numeric/eic plus an id."""
    rnd = random.Random(7)
    rules = {}
    for i in range(n):
        lot_id = f"{rnd.randrange(1, 7600):04d}{rnd.randrange(1, 400):03d}"
        kind = i % 40
        if kind == 10:
            p = P(MAPBLKLOT=[lot_id], STREET=[{"prefix": rnd.choice(STREETS)[:3]}])
        elif kind == 20:
            p = {"properties": {"BLKLOT": [lot_id]},
                 "geometry": {"firstCoordinates": {"x": [{"numeric": [">", -122.5, "<", -122.4]}]}}}
        elif kind == 30:
            p = P(BLKLOT=[lot_id], STREET=[{"equals-ignore-case": rnd.choice(STREETS).lower()}])
        elif kind == 0 and i:
            p = P(MAPBLKLOT=[{"prefix": lot_id}], ST_TYPE=[{"suffix": rnd.choice(ST_TYPES)[-1:]}])
        else:
            p = P(MAPBLKLOT=[lot_id])
        rules[f"r{i}"] = p
    return rules


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small run")
    ap.add_argument("--events", type=int, help="events for eventweir and the floor")
    ap.add_argument("--peer-events", type=int, help="events for the peers")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-seconds", type=float, default=2.0, help="time budget per peer pass")
    args = ap.parse_args()
    # the default stays near 4 minutes on a 2-core machine: 60,000 events rather than the
    # 200,000 the generator can make (--events 200000 for the full set)
    n = args.events or (20_000 if args.quick else 60_000)
    n_peer = args.peer_events or (1_000 if args.quick else 5_000)
    n_scale = min(n, 20_000 if args.quick else 30_000)

    t0 = time.perf_counter()
    lines = citylots(n)
    avg = sum(map(len, lines)) / len(lines)
    print(f"citylots-shaped data: {n} events (peers: up to {n_peer}, ~{args.peer_seconds:g}s a pass; "
          f"scale: {n_scale}), "
          f"{avg:.0f} bytes/event, generated in {time.perf_counter() - t0:.1f}s; "
          f"medians of {args.repeats} repeats")
    floor_eps, _, _ = timed(floor, lines, args.repeats)
    print(f"floor orjson.loads: {floor_eps:,.0f} events/s")

    figures: dict = {"floor_events_per_s": round(floor_eps)}
    ratios: dict = {}
    header = (f"{'rule set':26} {'eventweir ev/s':>15} {'vs floor':>9} {'moto ev/s':>12} "
              f"{'localstack ev/s':>16} {'vs best peer':>13} {'bytes ev/s':>11} {'vs floor':>9} "
              f"{'vs loads':>9}  decoder")
    print(header)
    for name in NAMES + ["combined"]:
        rules = rules_of(name)
        ours_eps, ours_rel, hits = timed(ours(rules), lines, args.repeats)
        by_bytes = ours_bytes(rules, lines[:WARM])
        bytes_eps, bytes_rel, bytes_hits = timed(by_bytes, lines, args.repeats)
        assert bytes_hits == hits, (name, bytes_hits, hits)
        peer_eps: dict = {}
        peer_rel: dict = {}
        for peer, make in PEERS.items():
            try:
                run = make(rules)
                # peers are slow: size their share so one pass takes about `peer_seconds`
                t0 = time.perf_counter()
                run(lines[:100])
                per_event = (time.perf_counter() - t0) / 100
                sub = lines[:max(200, min(n_peer, int(args.peer_seconds / per_event)))]
                eps, rel, peer_hits = timed(run, sub, 1 if args.quick else 2)
                ours_hits_sub = ours(rules)(sub)
                peer_eps[peer] = eps
                peer_rel[peer] = rel
                if peer_hits != ours_hits_sub:
                    peer_eps[peer + "_note"] = f"{peer_hits} matches vs our {ours_hits_sub}"
            except Exception as e:  # a peer that rejects or fails on a rule set is reported as such
                peer_eps[peer] = None
                peer_eps[peer + "_note"] = f"{type(e).__name__}: {str(e)[:80]}"
        best = max(peer_rel.values(), default=None)
        figures[name] = {"events_per_s": round(ours_eps), "matches": hits, "bytes_events_per_s": round(bytes_eps),
                         "decoder": by_bytes.decoder,
                         **{k: (round(v) if isinstance(v, float) else v) for k, v in peer_eps.items()}}
        ratios[f"{name}_vs_floor"] = round(ours_rel, 3)
        ratios[f"{name}_vs_best_peer"] = round(ours_rel / best, 1) if best else None
        ratios[f"{name}_bytes_vs_floor"] = round(bytes_rel, 3)
        ratios[f"{name}_bytes_vs_loads"] = round(bytes_rel / ours_rel, 3)

        def fmt(v):
            return f"{v:,.0f}" if isinstance(v, float) else "rejected/err"
        print(f"{name:26} {ours_eps:>15,.0f} {ours_rel:>9.2f} {fmt(peer_eps['moto']):>12} "
              f"{fmt(peer_eps['localstack']):>16} {(ours_rel / best if best else float('nan')):>12.1f}x "
              f"{bytes_eps:>11,.0f} {bytes_rel:>9.2f} {bytes_rel / ours_rel:>9.2f}  {by_bytes.decoder}")
        for k, v in peer_eps.items():
            if k.endswith("_note"):
                print(f"    {k[:-5]}: {v}")

    # what `exact` and `combined` could reach at best: their values read, no rule decided
    for ref_name, ref in (("exact_lookups_only", exact_lookups_only), ("combined_reads_only", combined_reads_only)):
        ref_eps, ref_rel, _ = timed(ref, lines, args.repeats)
        ratios[f"{ref_name}_vs_floor"] = round(ref_rel, 3)
        print(f"{ref_name.replace('_', ' ') + ' (ref)':26} {ref_eps:>15,.0f} {ref_rel:>9.2f}")
    print(f"scale ({n_scale} events; rules: 90% exact on a lot id + a mix of prefix/suffix/numeric/eic):")
    scale_lines = lines[:n_scale]
    base = bytes_base = None
    for count in (1, 100, 10_000, 100_000):
        gc.unfreeze()  # let the previous rule set go
        gc.collect()
        t0 = time.perf_counter()
        run = ours(scale_rules(count))
        build = time.perf_counter() - t0
        eps, rel, hits = timed(run, scale_lines, args.repeats)
        by_bytes = ours_bytes(scale_rules(count), scale_lines[:WARM])
        bytes_eps, bytes_rel, _ = timed(by_bytes, scale_lines, args.repeats)
        base = base or rel
        bytes_base = bytes_base or bytes_rel
        figures[f"rules_{count}"] = {"events_per_s": round(eps), "vs_floor": round(rel, 3),
                                     "matches": hits, "compile_s": round(build, 2),
                                     "bytes_events_per_s": round(bytes_eps), "bytes_vs_floor": round(bytes_rel, 3),
                                     "decoder": by_bytes.decoder}
        print(f"  {count:>7} rules: {eps:>10,.0f} events/s, {rel:.2f} of floor  "
              f"({rel / base:.2f} of 1 rule; compiled in {build:.1f}s); bytes: {bytes_eps:>10,.0f} events/s, "
              f"{bytes_rel:.2f} of floor ({bytes_rel / bytes_base:.2f} of 1 rule; {by_bytes.decoder})")
    # floor-relative, so that load from other processes between runs does not skew it
    ratios["rules_100000_vs_rules_1"] = round(figures["rules_100000"]["vs_floor"] / figures["rules_1"]["vs_floor"], 3)
    ratios["rules_100000_vs_rules_1_bytes"] = round(
        figures["rules_100000"]["bytes_vs_floor"] / figures["rules_1"]["bytes_vs_floor"], 3)
    print(json.dumps({"bench": "patterns", "figures": figures, "ratios": ratios}))


if __name__ == "__main__":
    main()
