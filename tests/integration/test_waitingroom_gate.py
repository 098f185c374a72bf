"""The hand-off to the site and the forward-auth endpoint over HTTP, as each proxy calls it (real server,
real Redis): cookie attributes, no open redirect, and the 401 / 302 answers with the way back to the room."""
from __future__ import annotations

from urllib.parse import quote

from processors.waitingroom.handoff import cookie_name, queue_cookie_name
from tests.waitingroom_support import ADMIN, redis_prefix, start_api, visitor  # noqa: F401

SHOP = "https://shop.example.com"
ROOMS = {"sale": {"inlet": {"policy": "manual"}, "origins": [SHOP, "https://www.example.com:8443/start"],
                  "cookie_domain": ".Example.com", "session_duration_s": 900},
         "other": {"inlet": {"policy": "manual"}, "origins": [SHOP]},
         "plain": {"inlet": {"policy": "manual"}}}
BASE = "/waitingroom/rooms/sale"


async def admitted(client, room="sale") -> dict:
    joined = await (await client.post(f"/waitingroom/rooms/{room}/join", json={})).json()
    r = await client.post(f"/waitingroom/admin/rooms/{room}/serving", json={"increment": 1}, headers=ADMIN)
    assert (await r.json())["admitted"] == 1
    return joined


async def enter(client, joined: dict, return_to: str, room="sale"):
    """The page's form post: return_to, and the queue cookie the join set."""
    return await client.post(f"/waitingroom/rooms/{room}/enter", data={"return_to": return_to}, allow_redirects=False,
                             headers={"Cookie": f"{queue_cookie_name(room)}={joined['queue_token']}"})


async def test_hand_off_sets_the_cookie_and_never_redirects_off_the_rooms_origins(redis_prefix):
    client, _ = await start_api(redis_prefix, ROOMS)
    try:
        rid = await admitted(client)
        r = await enter(client, rid, f"{SHOP}/cart?id=1&x=%2F")
        assert r.status == 303 and r.headers["Location"] == f"{SHOP}/cart?id=1&x=%2F"
        cookie = r.cookies[cookie_name("sale")]
        assert cookie["domain"] == "example.com" and cookie["path"] == "/" and cookie["samesite"] == "Lax"
        assert cookie["secure"] and cookie["httponly"] and cookie["max-age"] == "900"
        # the JSON flow of API clients is unchanged: the same session's token, no cookie
        t = await client.post(f"{BASE}/token", headers=visitor(rid))
        assert (await t.json())["token_type"] == "Bearer" and "Set-Cookie" not in t.headers
        # an allowed second origin (other port and path), and everything else falls back to the first origin
        assert (await enter(client, rid, "https://WWW.example.com:8443/a")).headers["Location"] == \
            "https://WWW.example.com:8443/a"
        for evil in ("https://evil.example/", "https://shop.example.com.evil.example/", "//evil.example/x",
                     "https://shop.example.com@evil.example/", "https://evil.example\\@shop.example.com/",
                     "http://shop.example.com/", "https://shop.example.com:444/", "javascript:alert(1)",
                     "https://shop.example.com/\r\nSet-Cookie: x=1", "/relative", ""):
            r = await enter(client, rid, evil)
            assert r.status == 303 and r.headers["Location"] == SHOP, evil
    finally:
        await client.close()


async def test_hand_off_before_admission_goes_back_to_the_room(redis_prefix):
    client, _ = await start_api(redis_prefix, ROOMS)
    try:
        rid = await (await client.post(f"{BASE}/join", json={})).json()
        r = await enter(client, rid, f"{SHOP}/cart")
        assert r.status == 303 and r.headers["Location"] == f"{BASE}/?return_to={quote(SHOP + '/cart', safe='')}"
        assert cookie_name("sale") not in r.cookies
        # a room without origins has no hand-off: its page keeps showing the token state instead
        rid = await admitted(client, "plain")
        r = await enter(client, rid, f"{SHOP}/cart", room="plain")
        assert r.status == 400 and "no origins" in (await r.json())["message"]
        assert 'data-handoff="0"' in await (await client.get("/waitingroom/rooms/plain/")).text()
        assert 'data-handoff="1"' in await (await client.get(f"{BASE}/")).text()
    finally:
        await client.close()


async def test_forward_auth_as_each_proxy_calls_it(redis_prefix):
    client, _ = await start_api(redis_prefix, ROOMS)
    try:
        rid = await admitted(client)
        token = (await enter(client, rid, SHOP)).cookies[cookie_name("sale")].value
        client.session.cookie_jar.clear()
        ok = {"Cookie": f"theme=dark; {cookie_name('sale')}={token}"}
        # nginx / ingress-nginx: 200 with the claims, or 401 with the room (and the page to come back to)
        r = await client.get(f"{BASE}/auth", headers=ok)
        assert r.status == 200 and r.headers["X-Waitingroom-Subject"] == rid["request_id"]
        assert r.headers["X-Waitingroom-Room"] == "sale" and r.headers["X-Waitingroom-Class"] == "general"
        assert int(r.headers["X-Waitingroom-Expires"]) > 0 and r.headers["Cache-Control"] == "no-store"
        assert (await client.post(f"{BASE}/auth", headers={"Authorization": f"Bearer {token}"})).status == 200
        r = await client.get(f"{BASE}/auth", headers={"X-Original-URL": f"{SHOP}/p?q=1"})
        assert r.status == 401 and r.headers["Location"] == f"{BASE}/?return_to={quote(SHOP + '/p?q=1', safe='')}"
        assert r.headers["X-Waitingroom-Error"] == "missing"
        r = await client.get(f"{BASE}/auth", headers={"X-Original-URL": "https://evil.example/p"})
        assert r.status == 401 and r.headers["Location"] == f"{BASE}/"  # not an origin: no return_to
        # a token of another room, a tampered one, and a site's own Authorization header do not pass
        other = (await enter(client, await admitted(client, "other"), SHOP, room="other")).cookies[cookie_name("other")]
        for headers, reason in (({"Authorization": f"Bearer {other.value}"}, "audience"),
                                ({"Cookie": f"{cookie_name('sale')}={token[:-4]}AAAA"}, "signature"),
                                ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing")):
            r = await client.get(f"{BASE}/auth", headers=headers)
            assert r.status == 401 and r.headers["X-Waitingroom-Error"] == reason, headers
        # Traefik forwardAuth: X-Forwarded-*, and a 302 it hands to the browser
        traefik = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example.com", "X-Forwarded-Uri": "/p?q=1"}
        r = await client.get(f"{BASE}/auth/redirect", headers=traefik, allow_redirects=False)
        assert r.status == 302 and r.headers["Location"] == f"{BASE}/?return_to={quote(SHOP + '/p?q=1', safe='')}"
        assert (await client.get(f"{BASE}/auth/redirect", headers={**traefik, **ok}, allow_redirects=False)).status == 200
        # Envoy ext_authz: path_prefix + the original path, on the original Host
        envoy = {"Host": "shop.example.com", "X-Forwarded-Proto": "https"}
        r = await client.get(f"{BASE}/auth/redirect/p/x?q=1", headers=envoy, allow_redirects=False)
        assert r.status == 302 and r.headers["Location"] == f"{BASE}/?return_to={quote(SHOP + '/p/x?q=1', safe='')}"
        assert (await client.get(f"{BASE}/auth/redirect/p/x", headers={**envoy, **ok}, allow_redirects=False)).status == 200
        assert (await client.get("/waitingroom/rooms/nope/auth", headers=ok)).status == 404
    finally:
        await client.close()


async def test_origin_settings_are_checked(redis_prefix):
    client, _ = await start_api(redis_prefix, {})
    try:
        for settings, path in (({"origins": ["shop.example.com"]}, "room.origins[0]"),
                               ({"origins": [SHOP, "https://x.example/?a=1"]}, "room.origins[1]"),
                               ({"origins": "https://shop.example.com"}, "room.origins"),
                               ({"cookie_domain": "example.com/x"}, "room.cookie_domain"),
                               ({"cookie_secure": "no"}, "room.cookie_secure")):
            r = await client.put("/waitingroom/admin/rooms/r", json=settings, headers=ADMIN)
            assert r.status == 400 and (await r.json())["path"] == path, settings
        r = await client.put("/waitingroom/admin/rooms/r", json={"origins": [SHOP], "cookie_domain": "example.com",
                                                                 "cookie_secure": False}, headers=ADMIN)
        got = (await r.json())["settings"]
        assert got["origins"] == [SHOP] and got["cookie_domain"] == "example.com" and got["cookie_secure"] is False
    finally:
        await client.close()


async def test_without_javascript_the_status_page_refreshes_itself_and_hands_off(redis_prefix):
    """A browser without scripts: .../wait joins, keeps the place by refreshing (meta refresh), survives a store
    outage with a page that retries, and once admitted offers the hand-off as a plain form."""
    import html
    import re
    from urllib.parse import parse_qs

    from processors.waitingroom.resp import RespConnection

    rooms = {"sale": {"inlet": {"policy": "manual"}, "origins": [SHOP], "cookie_secure": False, "refresh_interval_s": 3}}
    client, service = await start_api(redis_prefix, rooms)
    try:
        await client.post(f"{BASE}/join", json={})  # someone is ahead
        wait = f"{BASE}/wait?return_to={quote(SHOP + '/cart', safe='')}"
        # the scripted page sends a browser without JavaScript there, with the return_to it came with
        scripted = await (await client.get(f"{BASE}/?return_to={quote(SHOP + '/cart', safe='')}")).text()
        url = re.search(r'<noscript><meta http-equiv="refresh" content="0; url=([^"]+)"></noscript>', scripted)
        assert url and url.group(1).startswith("wait?")
        assert parse_qs(html.unescape(url.group(1)).partition("?")[2]) == {"return_to": [SHOP + "/cart"]}
        first = await client.get(wait)
        page = await first.text()
        assert first.status == 200 and first.headers["Cache-Control"] == "no-store"
        assert f'<meta http-equiv="refresh" content="3; url={BASE}/wait?return_to=https%3A%2F%2Fshop.example.com%2Fcart">' \
            in page
        assert re.search(r'class="big">2<', page) and "<dd>1</dd>" in page  # position 2, one ahead
        cookie = first.cookies[queue_cookie_name("sale")]
        assert cookie["path"] == f"{BASE}/" and cookie["httponly"]
        browser = {"Cookie": f"{cookie.key}={cookie.value}"}  # what the browser sends back (aiohttp's jar skips IPs)
        again = await (await client.get(wait, headers=browser)).text()  # a refresh: the cookie keeps the place
        assert re.search(r'class="big">2<', again)
        assert (await (await client.get("/waitingroom/admin/rooms/sale/counters", headers=ADMIN)).json())["waiting"] == 2
        # the store is unreachable: a page that says so and tries again, never an internal error
        fast = service.store.fast
        service.store.fast = RespConnection("redis://127.0.0.1:1/0")
        down = await client.get(wait, headers=browser)
        text = await down.text()
        assert down.status == 503 and down.headers["Retry-After"] == "5" and 'http-equiv="refresh" content="5;' in text
        assert "briefly unavailable" in text and "Errno" not in text
        service.store.fast = fast
        await client.post("/waitingroom/admin/rooms/sale/serving", json={"increment": 2}, headers=ADMIN)
        turn = await (await client.get(wait, headers=browser)).text()
        assert "http-equiv" not in turn and f'action="{BASE}/enter"' in turn
        assert '<input type="hidden" name="return_to" value="https://shop.example.com/cart">' in turn
        r = await client.post(f"{BASE}/enter", data={"return_to": SHOP + "/cart"}, allow_redirects=False, headers=browser)
        assert r.status == 303 and r.headers["Location"] == SHOP + "/cart" and cookie_name("sale") in r.cookies
    finally:
        await client.close()


async def test_without_javascript_a_closed_place_is_joined_again_on_refresh(redis_prefix):
    import asyncio

    rooms = {"sale": {"inlet": {"policy": "manual"}, "heartbeat_s": 1, "cookie_secure": False}}
    client, _ = await start_api(redis_prefix, rooms, tick_interval_s=0.1)
    try:
        first = await client.get(f"{BASE}/wait")
        cookie = first.cookies[queue_cookie_name("sale")]
        browser = {"Cookie": f"{cookie.key}={cookie.value}"}
        other = await (await client.post(f"{BASE}/join", json={})).json()
        for _ in range(20):  # the tab was closed for 2 s; someone else kept polling
            await asyncio.sleep(0.1)
            await client.get(f"{BASE}/status", headers=visitor(other))
        back = await client.get(f"{BASE}/wait", headers=browser)
        assert back.status == 200 and 'class="big">3<' in await back.text()  # a place again, at the back
        counters = await (await client.get("/waitingroom/admin/rooms/sale/counters", headers=ADMIN)).json()
        assert counters["waiting"] == 2 and counters["expired_positions"] == 1
    finally:
        await client.close()


async def test_forward_auth_renews_the_cookie_not_a_bearer_token_and_end_clears_it(redis_prefix):
    import asyncio

    rooms = {"sale": {**ROOMS["sale"], "session_duration_s": 4, "max_session_s": 60}}
    client, _ = await start_api(redis_prefix, rooms)
    try:
        joined = await admitted(client)
        token = (await enter(client, joined, SHOP)).cookies[cookie_name("sale")].value
        r = await client.get(f"{BASE}/auth", headers={"Cookie": f"{cookie_name('sale')}={token}"})
        assert r.status == 200 and "Set-Cookie" not in r.headers  # fresh: nothing to renew
        await asyncio.sleep(2.2)  # past half its life (exp is in whole seconds: 3-4 s from the hand-off)
        r = await client.get(f"{BASE}/auth", headers={"Authorization": f"Bearer {token}"})
        assert r.status == 200 and "Set-Cookie" not in r.headers  # an API client's token is not renewed
        r = await client.get(f"{BASE}/auth", headers={"Cookie": f"{cookie_name('sale')}={token}"})
        assert r.status == 200, r.headers
        renewed = r.cookies[cookie_name("sale")]
        assert renewed.value != token and renewed["domain"] == "example.com" and renewed["path"] == "/"
        assert renewed["secure"] and renewed["httponly"] and renewed["samesite"] == "Lax"
        assert 3 <= int(renewed["max-age"]) <= 4
        # the visitor's own "leave": a post with the cookie ends the session and clears the cookie
        r = await client.post(f"{BASE}/end", headers={"Cookie": f"{cookie_name('sale')}={renewed.value}"}, json={})
        assert r.status == 200 and (await r.json())["state"] == "completed"
        assert r.cookies[cookie_name("sale")].value == "" and r.cookies[cookie_name("sale")]["max-age"] == "0"
        for old in (token, renewed.value):
            r = await client.get(f"{BASE}/auth", headers={"Cookie": f"{cookie_name('sale')}={old}"})
            assert r.status == 401 and r.headers["X-Waitingroom-Error"] in ("ended", "expired")
        r = await client.post(f"{BASE}/end", headers={"Authorization": f"Bearer {renewed.value}"})
        assert r.status == 401 and (await r.json())["error"] == "unauthorized"
        assert (await client.post(f"{BASE}/end")).status == 401
    finally:
        await client.close()
