"""HttpLookup cost: the cache-hit path against an in-memory ReferenceJoin, and the miss path
against a real local HTTP service (in this process, on the same loop: it shares the CPU).

- hit: 10,000 events over 1,000 keys, all cached, in 128-event sub-batches (as Chain feeds
  them); events/s of `HttpLookup.process_async` vs `ReferenceJoin.process` on the same events.
- miss: a cold cache, every key distinct, the service answering after `delay` ms; events/s and
  the requests in flight, for a few `concurrency` settings. Bounded by concurrency / delay.

    python tests/bench/lookup.py [--repeats R]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import orjson  # noqa: E402

from processors.core import Event, SourceRecord  # noqa: E402
from processors.enrich import ReferenceJoin, ReferenceTable  # noqa: E402
from streams.runtime import eventloop  # noqa: E402
from streams.runtime.http_fetcher import http_lookup  # noqa: E402
from tests.integration.http_endpoint import LookupService  # noqa: E402

CHUNK = 128


def make_events(keys: list[str]) -> list[list[Event]]:
    events = [Event(SourceRecord("t", 0, i, 0, None, b""), {"detail": {"user_id": k}}) for i, k in enumerate(keys)]
    return [events[i:i + CHUNK] for i in range(0, len(events), CHUNK)]


async def bench_hits(repeats: int) -> dict:
    rows = {f"u{i}": {"tier": "gold", "country": "NL", "n": i} for i in range(1000)}
    batches = make_events([f"u{i % 1000}" for i in range(10_000)])
    n = sum(map(len, batches))
    async with LookupService(rows) as svc:
        lookup = http_lookup("bench-hit", svc.url, "detail.user_id", fields=["tier", "country"])
        for batch in batches:  # warm the cache
            await lookup.process_async(batch, [])
        join = ReferenceJoin(ReferenceTable("profile", rows), "detail.user_id", ["tier", "country"])
        lookup_rates, join_rates = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            for batch in batches:
                await lookup.process_async(batch, [])
            lookup_rates.append(n / (time.perf_counter() - start))
            start = time.perf_counter()
            for batch in batches:
                join.process(batch, [])
            join_rates.append(n / (time.perf_counter() - start))
        assert svc.total == 1000, svc.total  # every timed batch was answered from the cache
        await lookup.close()
    return {"lookup_hit_events_s": statistics.median(lookup_rates),
            "reference_join_events_s": statistics.median(join_rates)}


async def bench_misses(delay_ms: float, concurrency: int, n: int, repeats: int) -> dict:
    rates, peaks = [], []
    async with LookupService(delay_s=delay_ms / 1000) as svc:
        for r in range(repeats):
            keys = [f"r{r}-k{i}" for i in range(n)]
            svc.rows.update({k: {"v": 1} for k in keys})
            svc.max_in_flight = 0
            lookup = http_lookup(f"bench-miss-{concurrency}", svc.url, "detail.user_id", concurrency=concurrency)
            batches = make_events(keys)
            start = time.perf_counter()
            for batch in batches:
                out = await lookup.process_async(batch, [])
                assert all(e.body["detail"][lookup.name] == {"v": 1} for e in out)
            rates.append(n / (time.perf_counter() - start))
            peaks.append(svc.max_in_flight)
            await lookup.close()
    return {"events_s": statistics.median(rates), "peak_in_flight": max(peaks)}


async def main(repeats: int) -> None:
    hits = await bench_hits(repeats)
    misses = {}
    for delay_ms, concurrency in ((0, 16), (20, 16), (20, 64)):
        misses[(delay_ms, concurrency)] = await bench_misses(delay_ms, concurrency, 1024, max(1, repeats // 2))
    print(f"{'case':<44}{'events/s':>12}{'in flight':>11}")
    print(f"{'hit: HttpLookup, all cached':<44}{hits['lookup_hit_events_s']:>12,.0f}{'-':>11}")
    print(f"{'hit: ReferenceJoin (in-memory table)':<44}{hits['reference_join_events_s']:>12,.0f}{'-':>11}")
    for (delay_ms, concurrency), m in misses.items():
        label = f"miss: service {delay_ms} ms, concurrency {concurrency}"
        print(f"{label:<44}{m['events_s']:>12,.0f}{m['peak_in_flight']:>11}")
    figures = {"lookup_hit_events_s": round(hits["lookup_hit_events_s"]),
               "reference_join_events_s": round(hits["reference_join_events_s"])}
    for (delay_ms, concurrency), m in misses.items():
        figures[f"miss_{delay_ms}ms_c{concurrency}_events_s"] = round(m["events_s"])
    ratios = {"hit_vs_reference_join": round(hits["lookup_hit_events_s"] / hits["reference_join_events_s"], 3),
              # 20 ms per request: the ceiling is concurrency / 0.02 s
              "miss_20ms_c16_vs_ceiling": round(misses[(20, 16)]["events_s"] / (16 / 0.02), 3)}
    print(orjson.dumps({"bench": "lookup", "figures": figures, "ratios": ratios}).decode())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    eventloop.run(main(args.repeats))
