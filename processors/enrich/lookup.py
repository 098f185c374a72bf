"""Enrich events from an external HTTP service (a profile API, a device registry behind REST ...),
through a TTL cache.

`HttpLookup` is an async stage (`process_async`): for each sub-batch it fetches the distinct keys
the cache does not hold, at most `concurrency` requests in flight, each bounded by `timeout_s`,
then joins like `ReferenceJoin` (same `fields`, `into`, `on_missing`, `default`). A 200 with a
JSON object is the row (cached `ttl_s`), a 404 is "no row" (cached `negative_ttl_s`); a timeout,
connection error, other status or a body that is not a JSON object is an error, and the event
takes the `on_missing` path with the URL and the error in the dead-letter message.

What does I/O is injected, so this module never imports aiohttp or prometheus_client: the GET is
`fetch(url) -> (status, dict | None)`, given as `fetch` or made on first use by `make_fetcher`
(concurrency, timeout_s) -> an object with `fetch` and `close`; counts and latencies go to a
`LookupObserver`. The worker wires both with `streams.runtime.http_fetcher.http_lookup`.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Protocol
from urllib.parse import quote

from processors.core import Event, Failure
from processors.enrich.reference import ON_MISSING
from processors.paths import get_path, split_path

# A cache entry: (expires at, in time.monotonic() seconds; the projected row or None; the error or None).
# Not found is (t, None, None).
Entry = tuple[float, "dict | None", "str | None"]
Fetch = Callable[[str], Awaitable[tuple[int, "dict | None"]]]


class Fetcher(Protocol):
    """What `make_fetcher` returns: the GET, and what releases its connections."""

    async def fetch(self, url: str) -> tuple[int, dict | None]: ...

    async def close(self) -> None: ...


class LookupObserver(Protocol):
    """Where a lookup reports what it did (the worker's is Prometheus: streams.runtime.http_fetcher)."""

    def counted(self, hits: int, misses: int, errors: int) -> None: ...

    def request_took(self, seconds: float) -> None: ...


class Unobserved:
    """The default observer: reports go nowhere (the lookup's own counters still count)."""

    def counted(self, hits: int, misses: int, errors: int) -> None:
        pass

    def request_took(self, seconds: float) -> None:
        pass


class HttpLookup:
    stage = "enrich"
    # Errors are cached, but only for a second: long enough that a hot key met again in the next
    # sub-batches does not pay the timeout again while the service hangs (a 4000-record batch is
    # ~30 sub-batches), short enough that enrichment resumes within a second of the service
    # recovering. Not found (a real answer) is what `negative_ttl_s` is for.
    error_ttl_s = 1.0

    @classmethod
    def from_settings(cls, settings, context) -> HttpLookup:
        """Built by the worker: the GET and the metrics come from the runtime (StageContext)."""
        observer = context.observe_lookup(settings.name) if context.observe_lookup else None
        return cls(**dict(settings), make_fetcher=context.make_fetcher, observer=observer)

    def __init__(self, name: str, url: str, key: str,
                 fields: Sequence[str] | Mapping[str, str] | None = None, into: str | None = None,
                 ttl_s: float = 300, negative_ttl_s: float = 30, max_entries: int = 100_000,
                 concurrency: int = 16, timeout_s: float = 2.0, on_missing: str = "pass",
                 default: dict | None = None, fetch: Fetch | None = None,
                 make_fetcher: Callable[[int, float], Fetcher] | None = None,
                 observer: LookupObserver | None = None):
        """`url` holds `{key}`, replaced by the URL-quoted key; `key` is a dotted path into the event
        body. `fields`: names to copy, or {row field: output name}; None copies the whole row."""
        if not name:
            raise ValueError("HttpLookup name: expected a non-empty name (it labels the metrics)")
        if "{key}" not in url:
            raise ValueError(f"HttpLookup {name!r} url={url!r}: expected a template with {{key}} in it")
        if on_missing not in ON_MISSING:
            raise ValueError(f"HttpLookup on_missing={on_missing!r}: expected one of {', '.join(ON_MISSING)}")
        if on_missing == "default" and default is None:
            raise ValueError("HttpLookup on_missing='default' needs a `default` dict")
        for label, value in (("ttl_s", ttl_s), ("negative_ttl_s", negative_ttl_s)):
            if value < 0:
                raise ValueError(f"HttpLookup {name!r} {label}={value!r}: expected seconds >= 0")
        if fetch is None and make_fetcher is None:
            raise ValueError(f"HttpLookup {name!r}: expected `fetch` or `make_fetcher` (the worker passes "
                             "streams.runtime.http_fetcher.HttpFetcher; see its http_lookup)")
        if timeout_s <= 0:
            raise ValueError(f"HttpLookup {name!r} timeout_s={timeout_s!r}: expected seconds > 0")
        for label, value in (("max_entries", max_entries), ("concurrency", concurrency)):
            if type(value) is not int or value < 1:
                raise ValueError(f"HttpLookup {name!r} {label}={value!r}: expected a positive integer")
        self.name, self.url, self.key_path = name, url, key
        self._key = split_path(key)
        self._fields = None if fields is None else (
            dict(fields) if isinstance(fields, Mapping) else {f: f for f in fields})
        target = split_path(into or f"detail.{name}")
        self._parent, self._leaf = target[:-1], target[-1]
        self.ttl_s, self.negative_ttl_s, self.max_entries = ttl_s, negative_ttl_s, max_entries
        self.concurrency, self.timeout_s = concurrency, timeout_s
        self.on_missing, self.default = on_missing, default
        self._fetch = fetch
        self._make_fetcher = make_fetcher
        self._fetcher: Fetcher | None = None  # the fetcher this lookup made itself (and so closes)
        self._slots: asyncio.Semaphore | None = None
        self._cache: dict[str, Entry] = {}  # insertion order = eviction order
        self._inflight: dict[str, asyncio.Future] = {}
        self._observer: LookupObserver = observer or Unobserved()
        self.hits = self.misses = self.errors = self.requests = 0

    # --- fetching ---------------------------------------------------------------------------

    def _start(self) -> None:
        # made inside the running loop, on first use: the semaphore and the HTTP session bind to it
        if self._fetch is None and self._make_fetcher is not None:
            self._fetcher = self._make_fetcher(self.concurrency, self.timeout_s)
            self._fetch = self._fetcher.fetch
        self._slots = asyncio.Semaphore(self.concurrency)

    def _store(self, key: str, entry: Entry) -> None:
        cache = self._cache
        cache.pop(key, None)  # re-inserted at the end: the oldest entry is always first
        cache[key] = entry
        if len(cache) > self.max_entries:
            del cache[next(iter(cache))]

    async def _fetch_one(self, key: str) -> Entry:
        url = self._url(key)
        slots, fetch = self._slots, self._fetch
        assert slots is not None and fetch is not None, "process_async calls _start() before any fetch"
        async with slots:  # the timeout starts once a slot is ours, not while queueing
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.timeout_s):
                    status, body = await fetch(url)
                error = None
            except TimeoutError:
                error = f"timed out after {self.timeout_s:g}s"
            except Exception as exc:  # connection refused, reset, DNS ...: the service is unavailable
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._observer.request_took(time.perf_counter() - started)
        self.requests += 1
        now = time.monotonic()
        entry: Entry
        ttl: float
        if error is None:
            if status == 200 and type(body) is dict:
                entry, ttl = (now + self.ttl_s, self._project(body), None), self.ttl_s
            elif status == 404:
                entry, ttl = (now + self.negative_ttl_s, None, None), self.negative_ttl_s
            elif status == 200:
                error = "HTTP 200 with a body that is not a JSON object"
            else:
                error = f"HTTP {status}"
        if error is not None:
            entry, ttl = (now + self.error_ttl_s, None, f"GET {url}: {error}"), self.error_ttl_s
        if ttl > 0:
            self._store(key, entry)
        return entry

    def _url(self, key: str) -> str:
        return self.url.replace("{key}", quote(key, safe=""))

    def _load(self, key: str) -> asyncio.Future:
        """The fetch for `key`, shared with any batch already waiting for the same key."""
        future = self._inflight.get(key)
        if future is None:
            future = self._inflight[key] = asyncio.ensure_future(self._fetch_one(key))
            future.add_done_callback(partial(self._landed, key))
        # shielded: one waiting batch being cancelled must not cancel the fetch others wait for
        return asyncio.shield(future)

    def _landed(self, key: str, future: asyncio.Future) -> None:
        if self._inflight.get(key) is future:
            del self._inflight[key]

    def _project(self, row: dict) -> dict:
        fields = self._fields
        if fields is None:
            return dict(row)
        return {dst: row.get(src) for src, dst in fields.items()}

    # --- the stage --------------------------------------------------------------------------

    async def process_async(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        if self._slots is None:
            self._start()
        path = self._key
        two = len(path) == 2
        first, second = path[0], path[-1]
        # key -> (entry, fetched for this batch?); cached entries are taken now, before any await,
        # so this batch's own fetches (or another batch's) cannot evict them from under it
        resolved: dict[str, tuple[Entry, bool]] = {}
        wanted: dict[str, None] = {}
        cache, now = self._cache, time.monotonic()
        keys = []
        for event in events:
            if two:  # the usual "detail.<field>" without the generic walk
                holder = event.body.get(first)
                key = holder.get(second) if type(holder) is dict else None
            else:
                key = get_path(event.body, path)
            if key is not None:
                if type(key) is not str:
                    key = str(key)
                if key not in resolved and key not in wanted:
                    entry = cache.get(key)
                    if entry is not None and entry[0] > now:
                        resolved[key] = (entry, False)
                    else:
                        wanted[key] = None
            keys.append(key)
        if wanted:
            entries = await asyncio.gather(*(self._load(key) for key in wanted))
            for key, entry in zip(wanted, entries):
                resolved[key] = (entry, True)

        out = []
        parent_path, leaf, on_missing = self._parent, self._leaf, self.on_missing
        hits = misses = errors = 0
        default = self.default if self.default is not None else {}  # set when on_missing is "default"
        for event, key in zip(events, keys):
            if key is None:
                value = error = None
            else:
                entry, was_fetched = resolved[key]
                value, error = entry[1], entry[2]
                if error is not None:
                    errors += 1
                elif was_fetched:
                    misses += 1
                else:
                    hits += 1
            if value is None:
                if on_missing == "dead-letter":
                    if error is not None:
                        failures.append(Failure(event.record, self.stage, "lookup_error",
                                                f"lookup {self.name!r} for {self.key_path}={key!r} failed: {error}"))
                    else:
                        failures.append(Failure(event.record, self.stage, "lookup_missing", self._missing(key)))
                    continue
                if on_missing == "pass":
                    out.append(event)
                    continue
                value = dict(default)
            # the projected row is shared by the events that join it, as in ReferenceJoin:
            # stages after must not mutate it
            parent = event.body
            for step in parent_path:
                parent = parent.setdefault(step, {})
            parent[leaf] = value
            out.append(event)
        self.hits += hits
        self.misses += misses
        self.errors += errors
        self._observer.counted(hits, misses, errors)
        return out

    def _missing(self, key: str | None) -> str:
        if key is None:
            return f"lookup {self.name!r}: the event has no {self.key_path}"
        return f"lookup {self.name!r} found no row for {self.key_path}={key!r} (GET {self._url(key)}: 404)"

    async def close(self) -> None:
        """Release the HTTP session this lookup made (an injected `fetch` is its owner's to close)."""
        if self._fetcher is not None:
            await self._fetcher.close()
