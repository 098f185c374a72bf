"""Waiting-room HTTP API (aiohttp): the public endpoints, the waiting page and the admin API.

Public (under `prefix`, default /waitingroom). Status, token and enter need the queue token from join, as
`Authorization: Bearer <queue_token>` or the HttpOnly queue cookie join sets:
  GET  /rooms/{room}/challenge       a bot-protection challenge (ALTCHA) to solve before joining
  POST /rooms/{room}/join            {"request_id"? (rooms with client_request_ids), "claim"?: signed site claim,
                                      "altcha"?: the solved challenge (rooms with bot_protection, without a claim)}
                                     -> request_id, position, queue_token (+ the queue cookie)
  GET  /rooms/{room}/status          position, people_ahead, serving_counter, eta_s, refresh_interval_s
  POST /rooms/{room}/token           -> access token once admitted
  GET  /rooms/{room}/jwks.json, /.well-known/jwks.json   public keys (offline verification)
  GET  /.well-known/openid-configuration   OpenID discovery: issuer, jwks_uri, signing algorithms (gateways)
  GET  /rooms/{room}/                the waiting page (?return_to=<URL on one of the room's origins>)
  GET  /static/altcha-<version>.js  the ALTCHA widget the page solves challenges with (vendored, MIT)
  GET  /rooms/{room}/wait            the same without JavaScript: rendered on the server, refreshing itself
  POST /rooms/{room}/enter           form return_to (+ the queue cookie) -> 303 to the site with the access cookie
  POST /rooms/{room}/end             {"status"?: "completed"|"abandoned"} with the access token (bearer or cookie):
                                     end-of-session, the slot is freed at once and the token stops passing
  ANY  /rooms/{room}/auth            forward-auth: 200 with X-Waitingroom-* claims, else 401 + Location
  ANY  /rooms/{room}/auth/redirect[/original path]   the same, but 302 to the room (Traefik, Envoy)
Admin (Authorization: Bearer <admin_token>):
  GET /admin/rooms; GET|PUT|DELETE /admin/rooms/{room}; POST /admin/rooms/{room}/serving {"increment": n};
  POST /admin/rooms/{room}/pause|resume|reset; GET /admin/rooms/{room}/counters;
  POST /admin/rooms/{room}/sessions/{request_id} {"status": "completed"|"abandoned"}; POST /admin/keys/rotate
"""
from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Mapping
from typing import Any, overload
from urllib.parse import quote

import orjson
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from processors.waitingroom.handoff import (
    access_cookie,
    allowed,
    cookie_name,
    handoff_target,
    original_url,
    queue_cookie_name,
)
from processors.waitingroom.redis_store import RedisRoomStore
from processors.waitingroom.service import RoomError, WaitingRoomService
from processors.waitingroom.settings import RoomSettings, SettingsError
from processors.waitingroom.tokens import (
    ISSUER,
    QUEUE_TOKEN_TTL_S,
    KeyStoreError,
    SigningKey,
    TokenError,
    key_encryption_key,
)
from streams.http.bearer import bearer_token
from streams.http.waitingroom import page
from streams.http.waitingroom.nojs import add_nojs_route
from streams.metrics import waitingroom as m

log = logging.getLogger("eventweir.waitingroom")
_STATUS = {"not_found": 404, "bad_request": 400, "unauthorized": 401, "forbidden": 403, "closed": 403, "sold_out": 410,
           "not_admitted": 409, "session_closed": 410, "conflict": 409, "unavailable": 503,
           "challenge_required": 403}
_CONFIG_KEYS = {"redis_url", "key_prefix", "admin_token", "token_alg", "key_grace_s", "tick_interval_s",
                "rooms", "account", "region", "redis_max_connections", "issuer", "jwks_max_age_s", "key_prepublish_s",
                "signing_keys", "key_encryption_key", "redis_timeout_s", "challenge_key"}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _page(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # every visitor's page is theirs alone (their place) and changes by the second: never cached
    return web.Response(body=body, status=status, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store", "Vary": "Accept-Language, Cookie", **(headers or {})})


def _error(code: str, message: str, status: int, **extra: Any) -> web.Response:
    return _json({"error": code, "message": message, **extra}, status)


def parse_body(raw: bytes, *, required: bool) -> dict[str, Any]:
    if not raw:
        if required:
            raise RoomError("bad_request", "expected a JSON object body")
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RoomError("bad_request", f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RoomError("bad_request", "expected a JSON object body")
    return body


async def _body(request: web.Request, *, required: bool) -> dict[str, Any]:
    return parse_body(await request.read(), required=required)


@overload
def error_reply(exc: RoomError | SettingsError | OSError | RedisConnectionError | RedisTimeoutError
                ) -> tuple[int, bytes, dict[str, str]]: ...
@overload
def error_reply(exc: Exception) -> tuple[int, bytes, dict[str, str]] | None: ...
def error_reply(exc: Exception) -> tuple[int, bytes, dict[str, str]] | None:
    """(status, JSON body, extra headers) for the errors every endpoint maps; None for any other exception."""
    headers: dict[str, str] = {}
    if isinstance(exc, RoomError):
        status, body = _STATUS.get(exc.code, 400), {"error": exc.code, "message": exc.message, **exc.detail}
    elif isinstance(exc, SettingsError):
        status, body = 400, {"error": "invalid_settings", "message": str(exc), "path": exc.path}
    elif isinstance(exc, (OSError, RedisConnectionError, RedisTimeoutError)):
        # Redis unreachable or not answering (the fast path raises OSErrors, redis-py its own): tell clients to retry
        # the page puts the code in words and retries with back-off; the place is kept (an outage does not count
        # against heartbeats), which the visitor is told. The exception's text is for the log, not the public
        status, body = 503, {"error": "unavailable", "message": "the waiting room's store is unavailable: retry after "
                                                                "retry_after_s, backing off on repeated failures; a "
                                                                "place already held is kept"}
    else:
        return None
    if body["error"] == "unavailable":
        body["retry_after_s"] = RETRY_AFTER_S
        headers["Retry-After"] = str(RETRY_AFTER_S)
    return status, orjson.dumps(body), headers


RETRY_AFTER_S = 1  # the first retry's wait; the page doubles it on each failure in a row (up to 30 s)

_counters: dict[tuple[str, int], Any] = {}


def count_request(endpoint: str, status: int) -> None:
    """Requests per endpoint and status (the labelled child is looked up once, not per request)."""
    c = _counters.get((endpoint, status))
    if c is None:
        c = _counters[(endpoint, status)] = m.REQUESTS.labels(endpoint, str(status))
    c.inc()


def _handler(endpoint: str, fn):
    """Map RoomError/SettingsError/store outages to JSON errors and count requests per endpoint and status."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            resp = await fn(request)
        except (RoomError, SettingsError, OSError, RedisConnectionError, RedisTimeoutError) as exc:
            status, body, headers = error_reply(exc)
            resp = web.Response(body=body, status=status, content_type="application/json", headers=headers)
        count_request(endpoint, resp.status)
        return resp

    return handle


class PublicAPI:
    """The hot public endpoints (join, status, forward-auth) as plain functions returning the answer, so the
    aiohttp routes and the lean keep-alive server (streams/http/waitingroom/server.py) answer exactly alike."""

    def __init__(self, service: WaitingRoomService, prefix: str = "/waitingroom"):
        self.service = service
        self.prefix = prefix.rstrip("/")
        self._join_hist: dict[str, Any] = {}

    def room_page(self, room: str, return_to: str | None) -> str:
        url = f"{self.prefix}/rooms/{room}/"
        return url + f"?return_to={quote(return_to, safe='')}" if return_to else url

    def forward_auth(self, room: str, *, cookies: str, authorization: str, headers: Mapping[str, str], tail: str,
                     redirect: bool) -> tuple[int, dict[str, str]] | Awaitable[tuple[int, dict[str, str]]]:
        """(status, headers): 200 with the visitor's claims for a valid access cookie or bearer token for the
        room; otherwise 401 with the room's URL in Location (nginx auth_request only knows 2xx/401/403, so the
        proxy redirects), or with `redirect` a 302 there itself (Traefik and Envoy pass it to the browser).
        `cookies`: the Cookie header(s); `tail`: the path after .../auth/redirect (Envoy's path_prefix).
        In a room that renews sessions (max_session_s), a token past half its life is renewed: the answer is then
        an awaitable (the renewal is a store call) and carries the new access cookie in Set-Cookie, which the
        proxy passes to the browser."""
        settings = self.service.room_settings(room)
        reason = "missing"
        for token, in_cookie in self.access_tokens(room, cookies, authorization):
            try:
                claims = self.service.check_access(room, token)
            except TokenError as exc:
                reason = exc.reason
                continue
            # only a cookie is renewed: an API client's bearer token would not take the new one, and the renewal
            # would hold its slot past the token's end
            if in_cookie and self.service.renewal_due(room, claims):
                return self._renewed(room, settings, token, claims)  # a store call: the caller awaits it
            return 200, _passed(room, claims)
        url = original_url(headers, tail)
        return (302 if redirect else 401), {
            "Location": self.room_page(room, url if allowed(settings, url) else None), "X-Waitingroom-Error": reason,
            "Cache-Control": "no-store", "WWW-Authenticate": 'Bearer realm="eventweir-waitingroom"'}

    @staticmethod
    def access_tokens(room: str, cookies: str, authorization: str) -> list[tuple[str, bool]]:
        """The access tokens a request carries, each with whether it came in the cookie: the room's cookie (a
        host-only and a domain one may both be there), then a bearer token."""
        name = cookie_name(room) + "="
        out = [(c.strip()[len(name):].strip('"'), True) for c in cookies.split(";") if c.strip().startswith(name)]
        bearer = bearer_token(authorization)
        if bearer is not None:
            out.append((bearer.decode(), False))
        return [t for t in out if t[0]]

    async def _renewed(self, room: str, settings: RoomSettings, token: str,
                       claims: dict[str, Any]) -> tuple[int, dict[str, str]]:
        try:
            renewed = await self.service.renew(room, token, claims)
        except (OSError, RedisError):  # the token is still valid: let the visitor in, a later request renews
            log.warning("waiting-room %s: could not renew a session (the store is unavailable)", room)
            renewed = None
        if renewed is None:
            return 200, _passed(room, claims)
        new_token, new_claims = renewed
        headers = _passed(room, new_claims)
        headers["Set-Cookie"] = access_cookie(settings, room, new_token, new_claims["exp"] - int(self.service.clock()))
        return 200, headers

    def queue_tokens(self, room: str, cookies: str, authorization: str) -> list[str]:
        """The queue tokens a request carries: a bearer token (API clients), then the room's queue cookie (the page)."""
        scheme, _, bearer = authorization.partition(" ")
        out = [bearer.strip()] if scheme.lower() == "bearer" else []  # as bearer_token() reads it, without bytes
        if cookies:
            name = queue_cookie_name(room) + "="
            out.extend(c.strip()[len(name):].strip('"') for c in cookies.split(";") if c.strip().startswith(name))
        return [t for t in out if t]

    def visitor(self, room: str, cookies: str, authorization: str, request_id: str | None = None) -> str:
        """The request id the request proves it holds (RoomError 'unauthorized' without a valid queue token)."""
        return self.service.visitor(room, self.queue_tokens(room, cookies, authorization), request_id)

    async def join(self, room: str, raw: bytes, cookies: str = "", authorization: str = "") -> tuple[bytes, dict[str, str]]:
        """(JSON body, headers): the position, and the queue token in the body (API clients send it back as a
        bearer token) and in an HttpOnly cookie scoped to the room's path (the page's polls carry it). A join
        with a valid queue token is its holder's: the same place while it lasts, and once it has closed
        (expired, ...) a place again (the old one within the room's rejoin_grace_s)."""
        t0 = time.perf_counter()
        body = parse_body(raw, required=False)
        settings = self.service.room_settings(room)
        request_id = body.get("request_id")
        if request_id is not None:
            if not settings.client_request_ids:
                raise RoomError("bad_request", f"request_id: room {room!r} makes request ids itself; send none "
                                               "(a room with client_request_ids takes one, for retries)")
            if not isinstance(request_id, str) or len(request_id) < CLIENT_ID_MIN:
                # whoever knows a client-chosen id can join with it again and get its queue token: it must be a secret
                raise RoomError("bad_request", f"request_id: a random id of {CLIENT_ID_MIN}-128 characters "
                                               "(whoever knows it holds the place)")
        held = None
        # a join with a site claim is a new place in the claim's class, whatever queue cookie the browser has
        tokens = self.queue_tokens(room, cookies, authorization) if (cookies or authorization) and "claim" not in body \
            else []
        if tokens:
            try:
                held = self.service.visitor(room, tokens)
            except RoomError:
                pass  # an old or foreign token: an ordinary new join
        if held is not None:
            out = await self.service.join(room, held, rejoin=True)
        else:
            # a public join proves some work first; a join with a site claim is vouched for by the site that signed it
            if settings.bot_protection is not None and body.get("claim") is None:  # {"claim": null} is no claim
                await self.service.check_challenge(room, body.get("altcha"), f"{self.prefix}/rooms/{room}/challenge")
            out = await self.service.join(room, request_id, body.get("claim"))
        h = self._join_hist.get(room)
        if h is None:
            h = self._join_hist[room] = m.JOIN_LATENCY.labels(room)
        h.observe(time.perf_counter() - t0)
        cookie = (f"{queue_cookie_name(room)}={out['queue_token']}; Max-Age={QUEUE_TOKEN_TTL_S}; "
                  f"Path={self.prefix}/rooms/{room}/; HttpOnly; SameSite=Strict" + ("; Secure" if settings.cookie_secure else ""))
        return orjson.dumps(out), {"Set-Cookie": cookie, "Cache-Control": "no-store"}

    async def status(self, room: str, request_id: str | None, cookies: str = "", authorization: str = "") -> bytes:
        """A poll, which is also the heartbeat that keeps the place: for the holder of the queue token only
        (`request_id`, if given, must be the token's)."""
        rid = self.visitor(room, cookies, authorization, request_id)
        return orjson.dumps(await self.service.status(room, rid))

    async def token(self, room: str, raw: bytes, cookies: str, authorization: str) -> dict[str, Any]:
        body = parse_body(raw, required=False)
        request_id: Any = body.get("request_id")
        if request_id is not None and not isinstance(request_id, str):
            raise RoomError("bad_request", "request_id: expected the id returned by join")
        return await self.service.access_token(room, self.visitor(room, cookies, authorization, request_id))


CLIENT_ID_MIN = 16


def _passed(room: str, claims: dict[str, Any]) -> dict[str, str]:
    """Forward-auth's answer headers for a valid token: the visitor's claims, for the proxy to pass to the site."""
    return {"X-Waitingroom-Room": room, "X-Waitingroom-Subject": str(claims["sub"]),
            # percent-encoded: a class is any name an admin chose, a header value is one line of ASCII
            "X-Waitingroom-Class": quote(str(claims.get("priority_class", "")), safe=" -._~"),
            "X-Waitingroom-Expires": str(claims["exp"]), "Cache-Control": "no-store"}


def add_waitingroom_routes(app: web.Application, service: WaitingRoomService, prefix: str = "/waitingroom", *,
                           public_routes: bool = True, admin_routes: bool = True) -> None:
    """Mount the waiting room's public routes (join, status, token, JWKS, the page) and its admin
    routes on `app`: both on one port, or each on its own listener (http.public)."""
    public = PublicAPI(service, prefix)
    p = prefix.rstrip("/")
    room_page = public.room_page

    def cookies(request: web.Request) -> str:
        return "; ".join(request.headers.getall("Cookie", []))  # several Cookie headers are one list

    async def join(request: web.Request) -> web.Response:
        body, headers = await public.join(request.match_info["room"], await request.read(), cookies(request),
                                          request.headers.get("Authorization", ""))
        return web.Response(body=body, content_type="application/json", headers=headers)

    async def status(request: web.Request) -> web.Response:
        body = await public.status(request.match_info["room"], request.query.get("request_id"), cookies(request),
                                   request.headers.get("Authorization", ""))
        return web.Response(body=body, content_type="application/json")

    async def challenge(request: web.Request) -> web.Response:
        resp = _json(service.challenge(request.match_info["room"]))
        resp.headers["Cache-Control"] = "no-store"  # one per visitor
        return resp

    async def widget(request: web.Request) -> web.Response:
        return web.Response(body=page.altcha_widget(), content_type="text/javascript", charset="utf-8",
                            headers={"Cache-Control": "public, max-age=31536000, immutable"})  # versioned name

    async def token(request: web.Request) -> web.Response:
        return _json(await public.token(request.match_info["room"], await request.read(), cookies(request),
                                        request.headers.get("Authorization", "")))

    # verifiers may cache the keys this long; a rotation pre-publishes the next key for longer (key_prepublish_s)
    cache_control = f"public, max-age={service.jwks_max_age_s}"

    async def jwks(request: web.Request) -> web.Response:
        if "room" in request.match_info:
            service.room_settings(request.match_info["room"])  # 404 for an unknown room
        resp = _json(service.jwks())
        resp.headers["Cache-Control"] = cache_control
        return resp

    async def discovery(request: web.Request) -> web.Response:
        """The issuer's discovery document. The JWKS URL is under the configured issuer when that is a URL (as
        gateways expect: they fetch <issuer>/.well-known/openid-configuration), else on the host asked."""
        if service.issuer.startswith(("https://", "http://")):
            jwks_uri = service.issuer.rstrip("/") + "/.well-known/jwks.json"
        else:
            proto = (request.headers.get("X-Forwarded-Proto") or request.scheme).split(",")[0].strip()
            jwks_uri = f"{proto}://{request.host}{p}/.well-known/jwks.json"
        resp = _json(service.openid_configuration(jwks_uri))
        resp.headers["Cache-Control"] = cache_control
        return resp

    async def waiting_page(request: web.Request) -> web.Response:
        """The page, rendered with the visitor's place (its fetch is their status poll). Whatever goes wrong, a
        visitor gets a page in their language that says so in words, never an error's text or JSON."""
        room = request.match_info["room"]
        accept = request.headers.get("Accept-Language", "")
        settings = service.rooms[room].settings if room in service.rooms else None
        if settings is None:
            return _page(page.render(None, room, page.language(accept), "not_found", None), 404)
        if not request.path.endswith("/"):
            raise web.HTTPFound(request.path + "/" + (f"?{request.query_string}" if request.query_string else ""))
        lang = page.language(accept, settings.language)
        status: dict[str, Any] | None = None
        counters: dict[str, Any] | None = None
        try:
            try:
                status = await service.status(room, public.visitor(room, cookies(request), ""))
            except RoomError as exc:
                if exc.code not in ("unauthorized", "not_found"):
                    raise
                counters = await service.counters(room)  # no place yet: the script joins, unless the room is over
        except (OSError, RedisError):
            log.warning("waiting page of room %s: the store is unavailable", room)
            return _page(page.render(settings, room, lang, "unavailable", None), 503, {"Retry-After": "5"})
        state = page.page_state(settings, status, counters, service.clock())
        raw = request.rel_url.raw_query_string
        nojs = "wait" + (f"?{raw}" if raw else "")  # return_to goes along, still encoded
        return _page(page.render(settings, room, lang, state, status, nojs))

    async def enter(request: web.Request) -> web.Response:
        """The hand-off: a form post from the page once admitted (a navigation, so it works without
        scripts reading the token). The access token goes into an HttpOnly cookie that the site's proxy
        checks with forward-auth, and the browser goes back to the page it asked for, if that is on one of
        the room's origins. Not admitted yet, or no valid queue cookie: back to the room's page."""
        room = request.match_info["room"]
        settings = service.room_settings(room)
        form = await request.post()
        return_to = form.get("return_to")
        target = handoff_target(settings, return_to if isinstance(return_to, str) else None)
        if target is None:
            raise RoomError("bad_request", f"room {room!r} has no origins to hand visitors off to; use /token")
        try:
            # the queue cookie the join set: the page's form carries no id, and a request id alone proves nothing
            token = await service.access_token(room, public.visitor(room, cookies(request), ""))
        except RoomError as exc:
            if exc.code not in ("not_admitted", "unauthorized"):  # the room's page waits, or joins anew
                raise
            return web.Response(status=303, headers={"Location": room_page(room, target), "Cache-Control": "no-store"})
        return web.Response(status=303, headers={
            "Location": target, "Cache-Control": "no-store",
            "Set-Cookie": access_cookie(settings, room, token["access_token"], token["expires_in"])})

    async def end(request: web.Request) -> web.Response:
        """End-of-session: the site (server to server, with the visitor's access token as the bearer token) or the
        visitor's browser (the access cookie) ends the session; its slot goes to the next waiter at once and the
        token no longer passes forward-auth. The answer clears the access cookie."""
        room = request.match_info["room"]
        settings = service.room_settings(room)
        body = await _body(request, required=False)
        status = body.get("status", "completed")
        tokens = public.access_tokens(room, cookies(request), request.headers.get("Authorization", ""))
        if not tokens:
            raise RoomError("unauthorized", "expected the visitor's access token: 'Authorization: Bearer <token>' or "
                                            f"the cookie {cookie_name(room)}")
        out = await service.end_session(room, [t for t, _ in tokens], status)
        resp = _json(out)
        resp.headers["Set-Cookie"] = access_cookie(settings, room, "", 0)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def forward_auth(redirect: bool):
        async def check(request: web.Request) -> web.Response:
            room = request.match_info["room"]
            start = f"{p}/rooms/{room}/auth/redirect"
            raw = request.raw_path
            answer = public.forward_auth(
                room, cookies="; ".join(request.headers.getall("Cookie", [])),
                authorization=request.headers.get("Authorization", ""), headers=request.headers,
                tail=raw[len(start):] if redirect and raw.startswith(start) else "", redirect=redirect)
            status, headers = answer if isinstance(answer, tuple) else await answer
            return web.Response(status=status, headers=headers)

        return check

    def admin(fn):
        expected = service.admin_token.encode()

        async def check(request: web.Request) -> web.Response:
            got = bearer_token(request.headers.get("Authorization", ""))
            if got is None or not hmac.compare_digest(got, expected):
                resp = _error("unauthorized", "admin API: expected header 'Authorization: Bearer <admin token>'", 401)
                resp.headers["WWW-Authenticate"] = 'Bearer realm="eventweir-waitingroom"'
                return resp
            return await fn(request)

        return check

    async def list_rooms(request):
        return _json({"rooms": [service.room_info(r) for r in sorted(service.rooms)]})

    async def get_room(request):
        return _json(service.room_info(request.match_info["room"]))

    async def put_room(request):
        return _json(await service.put_room(request.match_info["room"], await _body(request, required=True)))

    async def delete_room(request):
        await service.delete_room(request.match_info["room"])
        return _json({"deleted": request.match_info["room"]})

    async def serving(request):
        body = await _body(request, required=True)
        return _json(await service.increment_serving(request.match_info["room"], body.get("increment")))

    async def pause(request):
        return _json(await service.set_paused(request.match_info["room"], True))

    async def resume(request):
        return _json(await service.set_paused(request.match_info["room"], False))

    async def counters(request):
        return _json(await service.counters(request.match_info["room"]))

    async def session(request):
        body = await _body(request, required=True)
        return _json(await service.update_session(request.match_info["room"], request.match_info["request_id"],
                                                  body.get("status")))

    async def reset(request):
        return _json(await service.reset(request.match_info["room"]))

    async def rotate(request):
        return _json(await service.rotate_keys())

    r = app.router
    if public_routes:
        r.add_post(f"{p}/rooms/{{room}}/join", _handler("join", join))
        r.add_get(f"{p}/rooms/{{room}}/status", _handler("status", status))
        r.add_post(f"{p}/rooms/{{room}}/token", _handler("token", token))
        r.add_get(f"{p}/rooms/{{room}}/challenge", _handler("challenge", challenge))
        r.add_get(f"{p}/static/{page.ALTCHA_WIDGET}", _handler("static", widget))
        r.add_get(f"{p}/rooms/{{room}}/jwks.json", _handler("jwks", jwks))
        r.add_get(f"{p}/.well-known/jwks.json", _handler("jwks", jwks))
        r.add_get(f"{p}/.well-known/openid-configuration", _handler("jwks", discovery))
        r.add_get(f"{p}/rooms/{{room}}/", _handler("page", waiting_page))
        r.add_get(f"{p}/rooms/{{room}}", _handler("page", waiting_page))
        r.add_post(f"{p}/rooms/{{room}}/enter", _handler("enter", enter))
        r.add_post(f"{p}/rooms/{{room}}/end", _handler("end", end))
        add_nojs_route(app, public, count_request)  # .../wait: the status without JavaScript
        r.add_route("*", f"{p}/rooms/{{room}}/auth", _handler("auth", forward_auth(redirect=False)))
        r.add_route("*", f"{p}/rooms/{{room}}/auth/redirect{{tail:(/.*)?}}", _handler("auth", forward_auth(redirect=True)))
    if not admin_routes:
        return
    r.add_get(f"{p}/admin/rooms", _handler("admin", admin(list_rooms)))
    r.add_get(f"{p}/admin/rooms/{{room}}", _handler("admin", admin(get_room)))
    r.add_put(f"{p}/admin/rooms/{{room}}", _handler("admin", admin(put_room)))
    r.add_delete(f"{p}/admin/rooms/{{room}}", _handler("admin", admin(delete_room)))
    r.add_post(f"{p}/admin/rooms/{{room}}/serving", _handler("admin", admin(serving)))
    r.add_post(f"{p}/admin/rooms/{{room}}/pause", _handler("admin", admin(pause)))
    r.add_post(f"{p}/admin/rooms/{{room}}/resume", _handler("admin", admin(resume)))
    r.add_post(f"{p}/admin/rooms/{{room}}/reset", _handler("admin", admin(reset)))
    r.add_get(f"{p}/admin/rooms/{{room}}/counters", _handler("admin", admin(counters)))
    r.add_post(f"{p}/admin/rooms/{{room}}/sessions/{{request_id}}", _handler("admin", admin(session)))
    r.add_post(f"{p}/admin/keys/rotate", _handler("admin", admin(rotate)))


def build_waitingroom_service(config: dict[str, Any], *, emit=None, observer=None) -> WaitingRoomService:
    """The service from the `waitingroom` config section; `await service.start()` loads/creates its rooms.

    Keys: admin_token (required), redis_url, key_prefix, token_alg (EdDSA|ES256|RS256), key_grace_s,
    tick_interval_s, rooms {id: settings}, account, region, redis_max_connections, redis_timeout_s, issuer, jwks_max_age_s,
    key_prepublish_s, signing_keys [PEM file path or inline PEM], key_encryption_key, challenge_key.
    """
    if not isinstance(config, dict):
        raise SettingsError("waitingroom", "an object", config)
    unknown = sorted(set(config) - _CONFIG_KEYS)
    if unknown:
        raise SettingsError(f"waitingroom.{unknown[0]}", f"one of {sorted(_CONFIG_KEYS)}", unknown[0])
    rooms = config.get("rooms") or {}
    if not isinstance(rooms, dict):
        raise SettingsError("waitingroom.rooms", "an object of room id -> settings", rooms)
    redis_url = config.get("redis_url", "redis://127.0.0.1:6379/0")
    if not isinstance(redis_url, str) or not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("waitingroom.redis_url", "a redis://, rediss:// or unix:// URL", redis_url)
    timeout_s = config.get("redis_timeout_s", 5.0)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= 300:
        raise SettingsError("waitingroom.redis_timeout_s", "seconds, more than 0 and at most 300", timeout_s)
    store = RedisRoomStore.from_url(redis_url, prefix=config.get("key_prefix", "eventweir:wr:"),
                                    max_connections=int(config.get("redis_max_connections", 32)), timeout_s=timeout_s)
    if observer is None:
        observer = m.PrometheusObserver()
    admin_token: Any = config.get("admin_token")  # WaitingRoomService checks it
    kek: Any = config.get("key_encryption_key")
    if kek is not None and (not isinstance(kek, str) or len(kek) < 32):
        raise SettingsError("waitingroom.key_encryption_key", "a secret of at least 32 characters", "<redacted>")
    challenge_key: Any = config.get("challenge_key")
    if challenge_key is not None and (not isinstance(challenge_key, str) or len(challenge_key) < 32):
        raise SettingsError("waitingroom.challenge_key", "a secret of at least 32 characters", "<redacted>")
    issuer: Any = config.get("issuer", ISSUER)
    if not isinstance(issuer, str) or not issuer or issuer.endswith("/"):
        raise SettingsError("waitingroom.issuer", "the tokens' iss: a URL such as https://shop.example.com/waitingroom "
                                                  "(no trailing slash)", issuer)
    service = WaitingRoomService(
        store, admin_token=admin_token, token_alg=config.get("token_alg", "EdDSA"),
        key_grace_s=config.get("key_grace_s"), tick_interval_s=float(config.get("tick_interval_s", 0.5)),
        emit=emit, observer=observer, account=config.get("account", "000000000000"), region=config.get("region", "local"),
        issuer=issuer, jwks_max_age_s=int(config.get("jwks_max_age_s", 60)),
        key_prepublish_s=float(config.get("key_prepublish_s", 300)),
        signing_keys=load_signing_keys(config.get("signing_keys") or []),
        key_encryption_key=None if kek is None else key_encryption_key(kek),
        challenge_key=None if challenge_key is None else challenge_key.encode(),
    )
    # validate the configured rooms now, so a bad room fails at start-up with its path
    from processors.waitingroom.settings import parse_room_settings

    for room_id, raw in rooms.items():
        parse_room_settings(room_id, raw, path=f"waitingroom.rooms.{room_id}")
    service.config_rooms = rooms
    return service


def load_signing_keys(entries: Any) -> list[SigningKey]:
    """`waitingroom.signing_keys`: each a PEM file (a mounted Kubernetes Secret) or the PEM itself (from ${VAR});
    the first signs, the others only verify. Errors name the entry, never its content."""
    if not isinstance(entries, list):
        raise SettingsError("waitingroom.signing_keys", "a list of PEM private-key files or PEM texts", "<redacted>")
    keys = []
    for i, entry in enumerate(entries):
        path = f"waitingroom.signing_keys[{i}]"
        if not isinstance(entry, str) or not entry:
            raise SettingsError(path, "a PEM file path or PEM text", "<redacted>")
        if entry.lstrip().startswith("-----BEGIN"):
            pem, shown = entry.encode(), "<inline PEM>"
        else:
            try:
                with open(entry, "rb") as f:
                    pem = f.read()
            except OSError as exc:
                raise SettingsError(path, f"a readable PEM file ({exc.strerror})", entry) from None
            shown = entry
        try:
            keys.append(SigningKey.from_pem(pem, signs=i == 0))
        except KeyStoreError as exc:
            raise SettingsError(path, str(exc), shown) from None
    if len({k.kid for k in keys}) != len(keys):
        raise SettingsError("waitingroom.signing_keys", "distinct keys", "the same key twice")
    return keys


def waitingroom_lifecycle(service: WaitingRoomService):
    """An aiohttp cleanup_ctx: start the service (rooms, keys, inlet) with the app, stop and close with it."""

    async def ctx(app: web.Application):
        warning = service.key_warning()
        if warning:
            log.warning(warning)
        await service.start()
        yield
        await service.stop()
        await service.store.close()

    return ctx
