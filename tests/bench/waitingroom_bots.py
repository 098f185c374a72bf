"""Waiting-room bot protection: what the ALTCHA proof of work costs a visitor, an API client and the server.

    python tests/bench/waitingroom_bots.py            # 15 solves per cost in Chromium, 15 in Python
    python tests/bench/waitingroom_bots.py --quick    # 5 of each

One run, side by side, on one server (real Redis):
- a visitor: headless Chromium (Debian's) on the room's page solves with the vendored ALTCHA widget (web
  workers, WebCrypto), from asking for a challenge to holding the solution; at the rooms' default cost
  (max_number 100,000) and at ALTCHA's own default (1,000,000), the same page;
- an API client: the `altcha` library's pure-Python solver on the same challenges;
- the server: checking one solution (one SHA-256 and one HMAC, processors/waitingroom/botcheck.py) and
  remembering it (one Redis SET NX): the added cost of a protected join. Issuing a challenge is timed too.
Medians. The number to find is uniform in 0..max_number, so single solves spread widely: the median of
many is the figure a visitor can expect (half wait less).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from altcha import ChallengeV1, solve_challenge_v1  # noqa: E402

from processors.waitingroom import botcheck  # noqa: E402
from processors.waitingroom.settings import BotProtection  # noqa: E402

ROOMS = {"default": {"inlet": {"policy": "manual"}, "bot_protection": True},
         "costly": {"inlet": {"policy": "manual"}, "bot_protection": {"altcha": {"max_number": 1_000_000}}}}

SOLVE_JS = """(async () => {
  await customElements.whenDefined("altcha-widget");
  const t0 = performance.now();
  await new Promise((resolve, reject) => {
    const w = document.createElement("altcha-widget");
    w.setAttribute("challengeurl", "/waitingroom/rooms/ROOM/challenge");
    w.style.display = "none";
    w.addEventListener("statechange", (e) => {
      if (e.detail.state === "verified") { w.remove(); resolve(e.detail.payload); }
      if (e.detail.state === "error") { w.remove(); reject(new Error("error")); }
    });
    document.body.appendChild(w);
    setTimeout(() => w.verify(), 0);
  });
  return performance.now() - t0;
})()"""


async def chromium_solves(client, room: str, n: int) -> list[float]:
    from tests.integration.test_waitingroom_page import chromium

    out = []
    async with chromium() as page:
        await page.goto(client.make_url("/waitingroom/rooms/default/"))  # a protected room's page: it loads the widget
        for _ in range(n):
            r = await page.call("Runtime.evaluate", expression=SOLVE_JS.replace("ROOM", room), awaitPromise=True,
                                returnByValue=True)
            out.append(float(r["result"]["value"]))
    return out


async def python_solves(client, room: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        c = await (await client.get(f"/waitingroom/rooms/{room}/challenge")).json()
        assert solve_challenge_v1(ChallengeV1(c["algorithm"], c["challenge"], c["maxNumber"], c["salt"], c["signature"]))
        out.append((time.perf_counter() - t0) * 1000)
    return out


def per_call_us(fn, calls: int, repeats: int = 7) -> float:
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(runs)


async def server_costs(service) -> dict[str, float]:
    key, now = b"k" * 32, time.time()
    c = botcheck.issue(key, "sale", BotProtection(), now)
    solution = solve_challenge_v1(ChallengeV1(c["algorithm"], c["challenge"], c["maxNumber"], c["salt"], c["signature"]))
    assert solution is not None
    payload = base64.b64encode(orjson.dumps({**c, "number": solution.number})).decode()
    figures = {"verify_us": per_call_us(lambda: botcheck.verify(key, "sale", payload, now), 2000),
               "issue_us": per_call_us(lambda: botcheck.issue(key, "sale", BotProtection(), now), 2000)}
    runs = []
    for r in range(5):
        t0 = time.perf_counter()
        for i in range(300):
            await service.store.use_once("default", f"bench:{r}:{i}", 60_000)
        runs.append((time.perf_counter() - t0) / 300 * 1e6)
    figures["redis_set_nx_us"] = statistics.median(runs)
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 5 if args.quick else 15

    import uuid

    from tests.waitingroom_support import REDIS_URL, delete_prefix, start_api

    prefix = f"bench:wr:{uuid.uuid4().hex[:8]}:"
    client, service = await start_api(prefix, ROOMS)
    try:
        chrome = {room: await chromium_solves(client, room, n) for room in ROOMS}
        python = {room: await python_solves(client, room, n) for room in ROOMS}
        server = await server_costs(service)
    finally:
        await client.close()
        import redis.asyncio as aioredis

        r = aioredis.from_url(REDIS_URL)
        await delete_prefix(r, prefix)
        await r.aclose()

    figures = {
        "chromium_solve_ms_p50_100k": statistics.median(chrome["default"]),
        "chromium_solve_ms_p50_1m": statistics.median(chrome["costly"]),
        "python_solve_ms_p50_100k": statistics.median(python["default"]),
        "python_solve_ms_p50_1m": statistics.median(python["costly"]),
        "server_verify_us": server["verify_us"], "server_issue_us": server["issue_us"],
        "server_redis_set_nx_us": server["redis_set_nx_us"],
        "server_per_join_us": server["verify_us"] + server["redis_set_nx_us"],
        "solves_per_cost": n,
    }
    ratios = {
        "python_over_chromium_100k": figures["python_solve_ms_p50_100k"] / figures["chromium_solve_ms_p50_100k"],
        "visitor_over_server_100k": figures["chromium_solve_ms_p50_100k"] * 1000 / figures["server_per_join_us"],
    }
    print(f"ALTCHA proof of work, medians of {n} solves per cost (the machine's load applies)\n")
    print(f"{'':34} {'max_number 100,000':>20} {'max_number 1,000,000':>22}")
    print(f"{'Chromium, vendored widget (ms)':34} {figures['chromium_solve_ms_p50_100k']:>20.0f} "
          f"{figures['chromium_solve_ms_p50_1m']:>22.0f}")
    print(f"{'Python, altcha lib (ms)':34} {figures['python_solve_ms_p50_100k']:>20.0f} "
          f"{figures['python_solve_ms_p50_1m']:>22.0f}")
    print(f"\nserver, per protected join: verify {figures['server_verify_us']:.1f} µs + Redis SET NX "
          f"{figures['server_redis_set_nx_us']:.0f} µs; issuing a challenge {figures['server_issue_us']:.1f} µs")
    print(json.dumps({"bench": "waitingroom_bots", "figures": {k: round(v, 2) for k, v in figures.items()},
                      "ratios": {k: round(v, 2) for k, v in ratios.items()}}))


if __name__ == "__main__":
    asyncio.run(main())
