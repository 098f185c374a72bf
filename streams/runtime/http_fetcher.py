"""The I/O of `processors.enrich.lookup.HttpLookup`: one aiohttp session per lookup, and its metrics.

`HttpLookup` owns the cache, single-flight, concurrency bound, timeout and fallbacks; this class
only does the GET, so the processor stays free of aiohttp and tests can hand it any
`async fetch(url) -> (status, dict | None)`.
"""
from __future__ import annotations

import aiohttp
import orjson

from processors.enrich.lookup import HttpLookup
from streams import metrics


class HttpFetcher:
    """GETs a URL and returns (status, body): body is the parsed JSON object for a 200 whose
    body is a JSON object, else None. Raises on connection errors and timeouts."""

    def __init__(self, concurrency: int = 16, timeout_s: float = 2.0, headers: dict[str, str] | None = None):
        if concurrency < 1:
            raise ValueError(f"HttpFetcher concurrency={concurrency!r}: expected a positive number of requests")
        self.concurrency, self.timeout_s = concurrency, timeout_s
        self.headers = {"Accept": "application/json", **(headers or {})}
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # made on first use, inside the running loop (a session binds to the loop that creates it);
        # the connector limit matches the lookup's concurrency so no request queues inside aiohttp
        # while its timeout is already running
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s), headers=self.headers)
        return self._session

    async def fetch(self, url: str) -> tuple[int, dict | None]:
        session = self._session or self._open()
        async with session.get(url) as resp:
            # read even error bodies (small) so the connection goes back to the pool for reuse
            body = await resp.read()
            status = resp.status
        if status != 200:
            return status, None
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            return status, None
        return status, value if type(value) is dict else None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class LookupMetrics:
    """A lookup's `LookupObserver`: its requests by outcome and their latency, in Prometheus."""

    def __init__(self, name: str):
        requests = metrics.LOOKUP_REQUESTS
        self._hit, self._miss = requests.labels(name, "hit"), requests.labels(name, "miss")
        self._error, self._seconds = requests.labels(name, "error"), metrics.LOOKUP_SECONDS.labels(name)

    def counted(self, hits: int, misses: int, errors: int) -> None:
        if hits:
            self._hit.inc(hits)
        if misses:
            self._miss.inc(misses)
        if errors:
            self._error.inc(errors)

    def request_took(self, seconds: float) -> None:
        self._seconds.observe(seconds)


def make_fetcher(concurrency: int, timeout_s: float) -> HttpFetcher:
    return HttpFetcher(concurrency=concurrency, timeout_s=timeout_s)


def http_lookup(name: str, url: str, key: str, **settings) -> HttpLookup:
    """An `HttpLookup` wired as the worker runs it: GETs through aiohttp, metrics to Prometheus."""
    settings.setdefault("make_fetcher", make_fetcher)
    return HttpLookup(name, url, key, observer=LookupMetrics(name), **settings)
