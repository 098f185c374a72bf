"""The `http` target (an EventBridge API destination): one request per event to a URL.

Requests for one source partition go out one after another, so each partition's order holds at
the endpoint; partitions proceed side by side up to `concurrency` requests in flight, and under
`rate_limit_per_second` overall. A failure is retried in place by the target's retry policy
(connection errors, timeouts, 401/407/409/429 and 5xx, as EventBridge does) and other statuses
(400, 403, 404, ...) are dead-lettered at once. A slow or failing endpoint only fills this
target's in-flight bound, which pauses the partitions that feed it and nothing else.
"""
from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import socket
import time
from collections import deque
from email.utils import parsedate_to_datetime
from typing import Literal

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from pydantic import BaseModel, ConfigDict, Field, model_validator
from yarl import URL

from streams.targets.base import Item, Target
from streams.targets.retry import DeliveryError

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({401, 407, 409, 429})
MAX_RETRY_AFTER_S = 300.0


class AddressNotAllowed(OSError):
    """The target's host is, or resolves to, an address outside the public internet that
    routing.http_allow_networks does not list."""


class AddressPolicy:
    """Public internet addresses, plus the networks the operator listed: nothing else. Checked on
    the resolved addresses, so a public name that points inside is refused too."""

    def __init__(self, allow_networks: tuple[str, ...] = ()):
        self.allowed = [ipaddress.ip_network(cidr, strict=False) for cidr in allow_networks]

    def refusal(self, address: str) -> str | None:
        """Why `address` may not be called, or None when it may."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if any(ip in net for net in self.allowed) or (ip.is_global and not ip.is_multicast):
            return None
        return (f"{address} is not a public internet address; list its network in routing.http_allow_networks "
                "to let http targets call it")

    def check_url(self, url: str) -> str | None:
        """The refusal for a URL whose host is an IP address (names are checked when resolved)."""
        host = URL(url).host or ""
        try:
            return self.refusal(host.strip("[]"))
        except ValueError:  # a name
            return None


class PolicyResolver(AbstractResolver):
    """aiohttp's resolver, with every resolved address checked against the policy."""

    def __init__(self, policy: AddressPolicy):
        self.policy = policy
        self._resolver = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list:
        resolved = await self._resolver.resolve(host, port, family)
        for entry in resolved:
            why = self.policy.refusal(entry["host"])
            if why is not None:
                raise AddressNotAllowed(f"{host} resolves to {why}")
        return resolved

    async def close(self) -> None:
        await self._resolver.close()


class AuthSettings(BaseModel):
    """API-destination auth, as EventBridge connections have it: basic, api_key (a header) or bearer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["none", "basic", "api_key", "bearer"] = "none"
    username: str | None = None
    password: str | None = None
    name: str | None = Field(None, description="api_key: the header name.")
    value: str | None = Field(None, description="api_key: the header value.")
    token: str | None = Field(None, description="bearer: the token.")

    @model_validator(mode="after")
    def _complete(self):
        needs = {"basic": ("username", "password"), "api_key": ("name", "value"), "bearer": ("token",)}
        missing = [k for k in needs.get(self.type, ()) if getattr(self, k) is None]
        if missing:
            raise ValueError(f"auth type {self.type!r} needs {', '.join(missing)}")
        return self


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(None, description="http: the endpoint (http:// or https://).")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    rate_limit_per_second: float | None = Field(None, gt=0, description="http: requests per second at most.")
    timeout_s: float = Field(5.0, gt=0, description="http: per-request timeout.")
    concurrency: int = Field(8, ge=1, le=1000, description="http: requests in flight (one lane per partition).")

    @model_validator(mode="after")
    def _url(self):
        if not (self.url or "").startswith(("http://", "https://")):
            raise ValueError(f"an http target needs `url` starting with http:// or https://, got {self.url!r}")
        return self


def auth_headers(auth) -> dict[str, str]:
    if auth.type == "basic":
        token = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    if auth.type == "api_key":
        return {auth.name: auth.value}
    if auth.type == "bearer":
        return {"Authorization": f"Bearer {auth.token}"}
    return {}


class RateLimiter:
    """At most `rate` acquisitions per second, spaced evenly (a token bucket of size 1)."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self.next_at = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = time.monotonic()
            wait = self.next_at - now
            self.next_at = max(now, self.next_at) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)


class HttpLanes(Target):
    """What the http and apidestination targets share: one lane per source partition (its events
    go out one after another, each retried in place by the rule's RetryPolicy before the next, so
    the partition's order holds at the endpoint), one session whose resolver applies the address
    policy, and one request whose failures become DeliveryErrors. A subclass's `_send` makes the
    request for one event and decides which statuses are retried."""

    def __init__(self, target_id: str, max_in_flight: int, dead_letters, policy: AddressPolicy, timeout_s: float):
        super().__init__(target_id, max_in_flight, dead_letters)
        self.policy = policy
        self.timeout_s = timeout_s
        self._lanes: dict[tuple[str, int], deque] = {}
        self._tasks: dict[tuple[str, int], asyncio.Task] = {}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                                              connector=aiohttp.TCPConnector(resolver=PolicyResolver(self.policy)))

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def write(self, items: list[Item]) -> None:
        for item in items:
            record = item[0].record
            lane_key = (record.topic, record.partition)
            lane = self._lanes.get(lane_key)
            if lane is None:
                lane = self._lanes[lane_key] = deque()
            lane.append(item)
            if lane_key not in self._tasks:
                self._tasks[lane_key] = asyncio.create_task(self._drain_lane(lane_key), name=f"target-{self.id}")

    async def _drain_lane(self, lane_key) -> None:
        lane = self._lanes[lane_key]
        try:
            while lane:
                await self.deliver_with_retry([lane[0]], self._send)
                lane.popleft()
        finally:
            if not lane:
                self._lanes.pop(lane_key, None)
            self._tasks.pop(lane_key, None)

    async def _send(self, items: list[Item]) -> None:
        raise NotImplementedError

    async def request(self, method: str, url: str, headers: dict, body: bytes | None) -> tuple[int, str, float | None]:
        """(status, the start of the body unless 2xx, Retry-After in seconds); a request that got no
        status raises DeliveryError. Messages name the request without its query string, which may
        carry a secret parameter."""
        session = self._session
        assert session is not None, "start() opens the session"
        try:
            async with session.request(method, url, data=body, headers=headers) as resp:
                if resp.status < 300:
                    return resp.status, "", None
                text = (await resp.text(errors="replace"))[:512]
                return resp.status, text, retry_after(resp.headers.get("Retry-After"))
        except TimeoutError:
            raise DeliveryError("Timeout", f"no response from {where(method, url)} within {self.timeout_s}s",
                                True) from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressNotAllowed):
                raise DeliveryError("AddressNotAllowed", f"{where(method, url)}: {exc.os_error}", False) from None
            # its text names the host, port and OS error: never the path or query
            raise DeliveryError("ConnectionError", f"{where(method, url)}: {type(exc).__name__}: {exc}", True) from None
        except aiohttp.ClientError as exc:
            raise DeliveryError("ConnectionError", f"{where(method, url)}: {type(exc).__name__}", True) from None


def where(method: str, url: str) -> str:
    """The request, for a message: without its query string, which may carry a secret parameter."""
    return f"{method} {URL(url).with_query(None)}"


def retry_after(header: str | None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) in seconds, at most MAX_RETRY_AFTER_S."""
    if not header:
        return None
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(header)))
    except ValueError:
        pass
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, parsedate_to_datetime(header).timestamp() - time.time()))
    except (TypeError, ValueError):
        return None


class HttpTarget(HttpLanes):
    kind = "http"

    def __init__(self, target_id: str, settings, max_in_flight: int, dead_letters,
                 policy: AddressPolicy | None = None):
        super().__init__(target_id, max_in_flight, dead_letters, policy or AddressPolicy(), settings.timeout_s)
        refusal = self.policy.check_url(settings.url)
        if refusal is not None:
            raise ValueError(f"url: {refusal}")
        self.url = settings.url
        self.method = settings.method
        self.headers = {"Content-Type": "application/json", **settings.headers, **auth_headers(settings.auth)}
        self._limiter = RateLimiter(settings.rate_limit_per_second) if settings.rate_limit_per_second else None
        self._slots = asyncio.Semaphore(settings.concurrency)

    async def _send(self, items: list[Item]) -> None:
        body = items[0][0].payload  # the router renders every payload to bytes
        if self._limiter is not None:
            await self._limiter.acquire()
        async with self._slots:
            status, text, wait = await self.request(self.method, self.url, self.headers, body)
        if status < 300:
            return
        raise DeliveryError(f"HttpStatus{status}", f"{where(self.method, self.url)} returned {status}: {text}",
                            retryable=status in RETRYABLE_STATUS or status >= 500, retry_after=wait)


def build(context, name: str, settings: Settings) -> HttpTarget:
    return HttpTarget(name, settings, context.max_in_flight, context.dead_letters,
                      AddressPolicy(context.allow_networks))
