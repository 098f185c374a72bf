"""Hand-off to the protected site: where an admitted visitor is sent back to, the access cookie's name,
and the URL a forward-auth request was made for. Pure functions of the room's settings and the
request's headers, shared by the hand-off and forward-auth endpoints.

The target of every redirect is checked against the room's `origins` (scheme, host and port): a
`return_to` anywhere else falls back to the first origin, so the room is never an open redirect.
"""
from __future__ import annotations

from collections.abc import Mapping

from .settings import RoomSettings, origin_key

COOKIE_PREFIX = "eventweir_wr_"
QUEUE_COOKIE_PREFIX = "eventweir_wrq_"


def cookie_name(room_id: str) -> str:
    """One cookie per room (room ids are valid cookie-name characters), so rooms on one domain do not clash."""
    return COOKIE_PREFIX + room_id


def queue_cookie_name(room_id: str) -> str:
    """The visitor's queue token, set by join on the room's path only: the proof of their place."""
    return QUEUE_COOKIE_PREFIX + room_id


def allowed(settings: RoomSettings, url: str | None) -> bool:
    if not url:
        return False
    key = origin_key(url)
    return key is not None and any(origin_key(o) == key for o in settings.origins)


def handoff_target(settings: RoomSettings, return_to: str | None) -> str | None:
    """`return_to` when it is on one of the room's origins, else the first origin; None without origins."""
    if allowed(settings, return_to):
        assert return_to is not None, "allowed() refuses an empty return_to"
        return return_to
    return settings.origins[0] if settings.origins else None


def original_url(headers: Mapping[str, str], tail: str = "") -> str | None:
    """The URL the visitor asked the proxy for, from the headers each proxy sends to forward-auth:
    X-Original-URL (nginx as documented, ingress-nginx), else X-Forwarded-Proto/-Host/-Uri (Traefik),
    else the path after the endpoint's own (Envoy's path_prefix) on the request's Host."""
    url = headers.get("X-Original-URL")
    if url:
        return url
    host = headers.get("X-Forwarded-Host") or headers.get("Host")
    uri = headers.get("X-Forwarded-Uri") or tail
    if not host or not uri.startswith("/"):
        return None
    proto = (headers.get("X-Forwarded-Proto") or "https").split(",")[0].strip()
    return f"{proto}://{host.split(',')[0].strip()}{uri}"


def access_cookie(settings: RoomSettings, room_id: str, token: str, max_age_s: int) -> str:
    """The Set-Cookie value of the access cookie (the hand-off, a renewal by forward-auth; an empty token and 0
    clear it). HttpOnly: no script reads it; SameSite=Lax: it comes along when a link to the site is followed."""
    domain = f"; Domain={settings.cookie_domain}" if settings.cookie_domain else ""
    secure = "; Secure" if settings.cookie_secure else ""
    return f"{cookie_name(room_id)}={token}; Max-Age={max(0, max_age_s)}; Path=/{domain}{secure}; HttpOnly; SameSite=Lax"
