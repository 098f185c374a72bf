"""Benchmark: deliveries per second through an API destination with an OAuth connection, against a
plain `http` target calling the same local aiohttp server.

Both targets get the same events in the same batches (4 partitions, so 4 requests in flight each),
alternating which goes first, medians of repeats. The API destination's rate limit is set out of the way (the point
is what the connection costs: the token cache, the parameters, the secret opened per request).

    python tests/bench/apidestination.py [--quick]

Last line: {"bench": "apidestination", "figures": {...}, "ratios": {...}}
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from aiohttp import web  # noqa: E402

from processors.core import Delivery, SourceRecord  # noqa: E402
from streams.http.app import serve  # noqa: E402
from streams.runtime.offsets import Ticket  # noqa: E402
from streams.targets.apidestination import ApiDestinationTarget  # noqa: E402
from streams.targets.apidestination import Settings as ApiSettings  # noqa: E402
from streams.targets.connections import ApiDestinations, Connection, Destination  # noqa: E402
from streams.targets.http import AddressPolicy, HttpTarget  # noqa: E402
from streams.targets.http import Settings as HttpSettings  # noqa: E402

PARTITIONS = 4
ARN = "arn:aws:events:local:000000000000:api-destination/bench/0000"


class NullDeadLetters:
    def write_failures(self, failures, on_done=None, **_):
        raise AssertionError(f"benchmark deliveries should never be dead-lettered: {failures[0][0]}")


def items_for(target: str, payloads: list[bytes]):
    tickets = [Ticket(0) for _ in range(PARTITIONS)]
    return [(Delivery(target, SourceRecord("bench", i % PARTITIONS, i, 0, None, None), p), tickets[i % PARTITIONS])
            for i, p in enumerate(payloads)]


async def run(target, payloads: list[bytes]) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (client and server) to deliver `payloads`."""
    await target.start()
    items = items_for(target.id, payloads)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(items), 500):
        target.submit(items[i:i + 500])
        await asyncio.sleep(0)
    assert await target.flush(600)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    await target.close()
    return elapsed, cpu


async def bench(n: int, repeats: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]], int]:
    fetches = 0

    async def token(request):
        nonlocal fetches
        fetches += 1
        return web.json_response({"access_token": f"tok-{fetches}", "expires_in": 3600})

    async def api(request):
        await request.read()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_post("/api/{tail:.*}", api)
    runner, port = await serve(app, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"
    key = base64.b64encode(b"k" * 32).decode()
    registry = ApiDestinations(key)
    sealed = registry.sealer.seal("client-secret", "connection/bench")
    registry.apply("connection/bench", Connection(
        "bench", "0000", "OAUTH_CLIENT_CREDENTIALS", "AUTHORIZED",
        {"OAuthParameters": {"AuthorizationEndpoint": f"{base}/token", "HttpMethod": "POST",
                             "ClientParameters": {"ClientID": "bench", "ClientSecret": sealed}}}).to_json())
    registry.apply("api-destination/bench", Destination(
        "bench", "0000", "bench", "", f"{base}/api/orders", "POST", 10**9).to_json())
    policy = AddressPolicy(("127.0.0.0/8",))
    payloads = [orjson.dumps({"detail": {"n": i, "pad": "x" * 200}}) for i in range(n)]
    api_t, http_t = [], []
    try:
        for i in range(repeats):
            target = ApiDestinationTarget("bench/api", ApiSettings(arn=ARN), n * 2, NullDeadLetters(), registry, policy)
            plain = HttpTarget("bench/http", HttpSettings(url=f"{base}/api/orders"), n * 2, NullDeadLetters(), policy)
            for which in ((target, plain) if i % 2 == 0 else (plain, target)):  # alternate who goes first
                (api_t if which is target else http_t).append(await run(which, payloads))
    finally:
        await runner.cleanup()
    return api_t, http_t, fetches


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small run (for development)")
    args = parser.parse_args()
    n, repeats = (2_000, 3) if args.quick else (10_000, 5)
    api_t, http_t, fetches = asyncio.run(bench(n, repeats))
    a, h = statistics.median(t for t, _ in api_t), statistics.median(t for t, _ in http_t)
    a_cpu, h_cpu = statistics.median(c for _, c in api_t), statistics.median(c for _, c in http_t)
    figures = {"apidestination_oauth_per_s": round(n / a), "http_target_per_s": round(n / h),
               "apidestination_cpu_us": round(a_cpu / n * 1e6), "http_cpu_us": round(h_cpu / n * 1e6),
               "token_fetches": fetches}
    # on a shared machine the wall-clock ratio swings with the neighbours' load; CPU seconds per
    # delivery (client and server, one process) are the steadier comparison
    ratios = {"apidestination_vs_http": round(h / a, 2), "apidestination_vs_http_cpu": round(h_cpu / a_cpu, 2)}
    print(f"{n} deliveries, {PARTITIONS} partitions, median of {repeats}, one aiohttp server on localhost")
    print(f"{'target':<28}{'deliveries/s':>14}{'CPU µs each':>13}")
    print(f"{'apidestination (OAuth)':<28}{n / a:>14,.0f}{a_cpu / n * 1e6:>13.0f}")
    print(f"{'http':<28}{n / h:>14,.0f}{h_cpu / n * 1e6:>13.0f}")
    print(f"ratio {ratios['apidestination_vs_http']} wall, {ratios['apidestination_vs_http_cpu']} CPU (floor 0.9); "
          f"tokens fetched: {fetches} (cached across the runs)")
    print(orjson.dumps({"bench": "apidestination", "figures": figures, "ratios": ratios}).decode())


if __name__ == "__main__":
    main()
