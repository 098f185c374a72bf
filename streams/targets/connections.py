"""Connections and API destinations as the worker holds them: parsed from the control topic,
their secrets opened only here, OAuth tokens cached, one rate limiter per destination.

The API (streams/http/eventbridge/connections.py) writes a connection as AWS's AuthParameters
with every secret replaced by a sealed form, so reading the control topic reveals none:

    {"ref": "VAR"}      the secret was given as `${VAR}`: the worker reads VAR, or the file VAR_FILE
                        names, when it needs the value (streams/config/env.py)
    {"sealed": "..."}   the secret was given by value: AES-256-GCM under routing.secrets_key, bound
                        to the connection's name (a sealed value copied to another key is refused)

Secret members: ApiKeyValue, Password, ClientSecret, and the Value of any header, query string or
body parameter with IsValueSecret.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from streams.config.env import InterpolationError, variable

log = logging.getLogger(__name__)

CONNECTION_PREFIX = "connection/"  # control-topic keys; no rule name has a `/`
DESTINATION_PREFIX = "api-destination/"
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SECRET_MEMBERS = ("ApiKeyValue", "Password", "ClientSecret")


class SecretError(ValueError):
    """A secret cannot be sealed or opened; the message names the setting or variable, never a value."""


class Sealer:
    """Seals secrets for the control topic and opens them for a delivery."""

    def __init__(self, key_b64: str | None, environ: Mapping[str, str] | None = None):
        self._aead = AESGCM(base64.b64decode(key_b64)) if key_b64 else None
        self.environ = os.environ if environ is None else environ

    def seal(self, value: str, context: str) -> dict:
        ref = REFERENCE.fullmatch(value)
        if ref is not None:
            return {"ref": ref.group(1)}
        if self._aead is None:
            raise SecretError("a secret given by value needs routing.secrets_key (the key that encrypts it on the "
                              "control topic); or give it as ${VAR}, an environment variable (or VAR_FILE) of the "
                              "workers")
        nonce = secrets.token_bytes(12)
        sealed = nonce + self._aead.encrypt(nonce, value.encode(), context.encode())
        return {"sealed": base64.b64encode(sealed).decode()}

    def open(self, sealed: dict, context: str) -> str:
        if "ref" in sealed:
            try:
                return variable(sealed["ref"], self.environ, context)
            except InterpolationError as exc:
                raise SecretError(str(exc)) from None
        if self._aead is None:
            raise SecretError(f"{context}: its secret is encrypted and routing.secrets_key is not set on this worker")
        raw = base64.b64decode(sealed["sealed"])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag:
            raise SecretError(f"{context}: its secret does not open with routing.secrets_key (another key?)") from None


def map_secrets(auth: Any, fn, path: str = "") -> Any:
    """`auth` (AuthParameters) with `fn(value, path)` applied to every secret member."""
    if isinstance(auth, list):
        return [map_secrets(item, fn, path) for item in auth]
    if not isinstance(auth, dict):
        return auth
    out = {}
    for key, value in auth.items():
        if key in SECRET_MEMBERS or (key == "Value" and auth.get("IsValueSecret")):
            out[key] = fn(value, f"{path}.{key}" if path else key)
        else:
            out[key] = map_secrets(value, fn, f"{path}.{key}" if path else key)
    return out


@dataclass(frozen=True)
class Connection:
    name: str
    uuid: str
    type: str  # API_KEY, BASIC, OAUTH_CLIENT_CREDENTIALS
    state: str  # AUTHORIZED, DEAUTHORIZED
    auth: dict  # AWS's AuthParameters, secrets sealed
    description: str = ""
    created: float = 0.0
    modified: float = 0.0
    authorized: float | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def from_json(cls, value: bytes) -> Connection:
        return cls(**orjson.loads(value))


@dataclass(frozen=True)
class Destination:
    name: str
    uuid: str
    connection: str  # the connection's name
    connection_arn: str
    endpoint: str
    method: str
    rate: int  # InvocationRateLimitPerSecond
    description: str = ""
    state: str = "ACTIVE"
    created: float = 0.0
    modified: float = 0.0

    def to_json(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def from_json(cls, value: bytes) -> Destination:
        return cls(**orjson.loads(value))


class RateLimiter:
    """At most `rate` requests per second, spaced evenly: a token bucket of one, so a burst of
    events leaves at the rate, never faster."""

    def __init__(self, rate: float):
        self.rate = rate
        self.next_at = 0.0

    async def acquire(self) -> None:
        now = time.monotonic()
        wait = self.next_at - now
        self.next_at = max(now, self.next_at) + 1.0 / self.rate
        if wait > 0:
            await asyncio.sleep(wait)


@dataclass
class Token:
    value: str
    refresh_at: float  # monotonic: refreshed before it expires
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ApiDestinations:
    """The connections and API destinations of the control topic, shared by every apidestination
    target of the worker: one token cache per connection, one rate limiter per destination."""

    def __init__(self, secrets_key: str | None, environ: Mapping[str, str] | None = None):
        self.sealer = Sealer(secrets_key, environ)
        self.connections: dict[str, Connection] = {}
        self.destinations: dict[str, Destination] = {}
        self._limiters: dict[str, RateLimiter] = {}
        self._tokens: dict[str, Token] = {}
        self._token_locks: dict[str, asyncio.Lock] = {}

    def apply(self, key: str, value: bytes | None) -> None:
        """One control-topic record (key connection/<name> or api-destination/<name>)."""
        try:
            if key.startswith(CONNECTION_PREFIX):
                name = key.removeprefix(CONNECTION_PREFIX)
                old = self.connections.pop(name, None)
                if value is not None:
                    self.connections[name] = Connection.from_json(value)
                if old is None or value is None or self.connections[name].auth != old.auth:
                    self._tokens.pop(name, None)  # new credentials, new token
            else:
                name = key.removeprefix(DESTINATION_PREFIX)
                self.destinations.pop(name, None)
                if value is not None:
                    self.destinations[name] = Destination.from_json(value)
                    limiter = self._limiters.get(name)
                    if limiter is None or limiter.rate != self.destinations[name].rate:
                        self._limiters[name] = RateLimiter(self.destinations[name].rate)
        except (ValueError, TypeError) as exc:
            log.error("control topic: %s is not valid, ignored: %s", key, exc)

    def limiter(self, destination: Destination) -> RateLimiter:
        limiter = self._limiters.get(destination.name)
        if limiter is None:
            limiter = self._limiters[destination.name] = RateLimiter(destination.rate)
        return limiter

    def secret(self, connection: Connection, sealed: dict) -> str:
        return self.sealer.open(sealed, CONNECTION_PREFIX + connection.name)

    def cached_token(self, connection: str) -> Token | None:
        token = self._tokens.get(connection)
        return token if token is not None and time.monotonic() < token.refresh_at else None

    def token_lock(self, connection: str) -> asyncio.Lock:
        return self._token_locks.setdefault(connection, asyncio.Lock())

    def store_token(self, connection: str, value: str, expires_in: float | None) -> None:
        # refreshed a tenth of its life (at most a minute) before it expires, so no request
        # carries a token about to lapse; a token without expires_in is kept until a 401
        life = float(expires_in) if expires_in else float("inf")
        self._tokens[connection] = Token(value, time.monotonic() + life - min(60.0, life / 10))

    def drop_token(self, connection: str, value: str) -> None:
        token = self._tokens.get(connection)
        if token is not None and token.value == value:  # not one another request already refreshed
            del self._tokens[connection]
