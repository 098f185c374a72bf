"""The waiting room without JavaScript: GET .../rooms/{room}/wait renders the visitor's status on the server and
refreshes itself with `<meta http-equiv="refresh">`.

The first visit joins (the queue cookie is set as for the page's own join), except in a room with bot protection,
whose challenge needs a script: there the page says so and asks for JavaScript; each refresh is the heartbeat
that keeps the place; a place that has closed (expired) is joined again, as the page does; once admitted,
a button posts the hand-off form to .../enter (a form needs no script). When the store is unreachable the
answer is a 503 page that refreshes after `Retry-After`, so the visitor never sees an internal error.
Kept apart from page.py (the scripted page): this one has no state in the browser but the cookie.
"""
from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from aiohttp import web

from processors.waitingroom.service import RoomError

if TYPE_CHECKING:
    from streams.http.waitingroom.api import PublicAPI

RETRY_S = 5  # the unavailable page's refresh: no script to back off, so not too eager

_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
{refresh}<title>Waiting room</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}}
.big{{font-size:3rem;font-weight:700;margin:.2rem 0}} dt{{font-weight:600}}</style></head>
<body><main>
"""
_TAIL = "</main></body></html>\n"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    return f"{max(1, round(seconds))} s" if seconds < 60 else f"{round(seconds / 60)} min"


def _page(body: str, refresh_s: float | None = None, url: str = "") -> str:
    refresh = f'<meta http-equiv="refresh" content="{max(1, round(refresh_s))}; url={escape(url)}">\n' if refresh_s else ""
    return _HEAD.format(refresh=refresh) + body + _TAIL


def render(status: dict[str, Any], *, self_url: str, enter_url: str | None, return_to: str | None) -> str:
    """The page for one status answer (service.status's JSON)."""
    state = status["state"]
    if state in ("admitted", "active"):
        if enter_url is None:
            return _page("<h1>It is your turn</h1><p>Your access has been granted.</p>")
        hidden = f'<input type="hidden" name="return_to" value="{escape(return_to)}">' if return_to else ""
        return _page(f'<h1>It is your turn</h1><form method="post" action="{escape(enter_url)}">{hidden}'
                     '<button type="submit">Continue to the site</button></form>')
    if status.get("sold_out"):
        return _page("<h1>Sold out</h1><p>There is nothing left to queue for.</p>")
    if state != "waiting":
        return _page(f"<h1>Your place has closed</h1><p>State: {escape(state)}.</p>"
                     f'<p><a href="{escape(self_url)}">Queue again</a></p>')
    note = "<p>The queue is paused; you keep your place.</p>" if status.get("paused") else ""
    return _page(
        "<h1>You are in the queue</h1><p>Keep this page open: it refreshes by itself, and you keep your place "
        f'while it does.</p>{note}<p>Your position</p><p class="big">{status["position"]}</p>'
        f'<dl><dt>People ahead of you</dt><dd>{status["people_ahead"]}</dd>'
        f'<dt>Estimated wait</dt><dd>{_eta(status.get("eta_s"))}</dd></dl>',
        status["refresh_interval_s"], self_url)


def add_nojs_route(app: web.Application, public: PublicAPI, count: Any = None) -> None:
    """GET {prefix}/rooms/{room}/wait[?return_to=...]: the status page for browsers without JavaScript."""
    service = public.service

    async def wait(request: web.Request) -> web.Response:
        resp = await answer(request)
        if count is not None:
            count("page", resp.status)
        return resp

    async def answer(request: web.Request) -> web.Response:
        room = request.match_info["room"]
        return_to = request.query.get("return_to")
        self_url = f"{public.prefix}/rooms/{room}/wait" + (f"?return_to={quote(return_to, safe='')}" if return_to else "")
        headers = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}
        try:
            settings = service.room_settings(room)
        except RoomError:
            return web.Response(status=404, text=_page("<h1>No such waiting room</h1>"), content_type="text/html",
                                headers=headers)
        cookies = "; ".join(request.headers.getall("Cookie", []))
        try:
            try:
                rid: str | None = public.visitor(room, cookies, "")
            except RoomError:
                rid = None  # a first visit (or a cookie that no longer verifies): join
            status = await service.status(room, rid) if rid is not None else None
            if status is None or status.get("rejoin"):
                body, join_headers = await public.join(room, b"{}", cookies)
                headers.update(join_headers)  # the queue cookie: the place, for the refreshes to come
                status = await service.status(room, orjson.loads(body)["request_id"])
        except RoomError as exc:  # closed, sold out, bot protection: said in words, no refresh
            words = {"closed": "The waiting room is not accepting visitors now.",
                     "sold_out": "Sold out: there is nothing left to queue for.",
                     # the proof of work is done by a script: without one there is no server-side way to tell a
                     # person from a bot here, so the visitor is told what would let them in
                     "challenge_required": "This waiting room first checks that visitors are people, not bots, with a "
                                           "small puzzle that the browser solves by itself. That needs JavaScript: "
                                           "please turn it on for this site and reload the page."}.get(exc.code,
                                                                                                      exc.message)
            return web.Response(status=200, text=_page(f"<h1>Waiting room</h1><p>{escape(words)}</p>"),
                                content_type="text/html", headers=headers)
        except OSError:
            headers["Retry-After"] = str(RETRY_S)
            return web.Response(status=503, text=_page(
                "<h1>The waiting room is briefly unavailable</h1><p>This page tries again by itself in a few seconds; "
                "if you had a place, you keep it.</p>", RETRY_S, self_url),
                content_type="text/html", headers=headers)
        enter_url = f"{public.prefix}/rooms/{room}/enter" if settings.origins else None
        return web.Response(text=render(status, self_url=self_url, enter_url=enter_url, return_to=return_to),
                            content_type="text/html", headers=headers)

    app.router.add_get(f"{public.prefix}/rooms/{{room}}/wait", wait)
