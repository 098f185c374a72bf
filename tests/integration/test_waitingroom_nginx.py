"""The waiting room in front of a real site: Debian's nginx, with the README's config, gates a small origin
with `auth_request` to the room's forward-auth endpoint, and a visitor goes request -> room -> admitted
-> hand-off cookie -> back at the page they asked for; an expired or forged cookie is sent back to the room."""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from processors.waitingroom.handoff import cookie_name
from processors.waitingroom.tokens import ISSUER, SigningKey
from streams.devtools.broker import free_port, wait_for_port
from tests.waitingroom_support import redis_prefix, start_api  # noqa: F401

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(not Path(NGINX).exists(),
                                reason="Debian package nginx not installed (tests/setup/system-deps.sh installs it)")

README = Path(__file__).resolve().parents[2] / "README.md"
NGINX_MAIN = """
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
{site}
}}
"""


def readme_nginx_config(port: int, room_port: int, origin_port: int) -> str:
    """The README's copy-paste nginx config, pointed at this test's servers and without TLS."""
    section = README.read_text().split("### In front of a site", 1)[1]
    site = section.split("```nginx\n", 1)[1].split("```", 1)[0]
    for old, new in (("server eventweir-public:8081;", f"server 127.0.0.1:{room_port};"),
                     ("server shop-backend:8000;", f"server 127.0.0.1:{origin_port};"),
                     ("listen 443 ssl;", f"listen 127.0.0.1:{port};")):
        assert site.count(old) == 1, f"the README's nginx config no longer has {old!r}"
        site = site.replace(old, new)
    return site


async def start_origin(room_base: str = "") -> tuple[web.AppRunner, int]:
    """The protected site: says which page it served and to whom. Its checkout ends the visitor's session, as a
    shop's does: it posts the visitor's access token (from the cookie) to the room's end-of-session endpoint."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=f"origin {request.path_qs} for {request.headers.get('X-Waitingroom-Subject')}")

    async def checkout(request: web.Request) -> web.Response:
        token = request.cookies[cookie_name("sale")]
        async with aiohttp.ClientSession() as http, http.post(
                f"{room_base}/waitingroom/rooms/sale/end", headers={"Authorization": f"Bearer {token}"}) as r:
            return web.Response(status=r.status, text=await r.text(), content_type="application/json")

    app = web.Application()
    app.router.add_post("/checkout", checkout)
    app.router.add_get("/{tail:.*}", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def start_nginx(tmp: str, port: int, room_port: int, origin_port: int) -> subprocess.Popen:
    conf = Path(tmp) / "nginx.conf"
    conf.write_text(NGINX_MAIN.format(tmp=tmp, site=readme_nginx_config(port, room_port, origin_port)))
    proc = subprocess.Popen([NGINX, "-p", tmp, "-c", str(conf), "-e", f"{tmp}/error.log"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for_port("127.0.0.1", port, 10)
    except TimeoutError:
        proc.kill()
        raise AssertionError(f"nginx did not start: {proc.communicate()[1].decode()}") from None
    return proc


async def test_visitor_goes_through_the_room_and_back_to_the_page_behind_nginx(redis_prefix):
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    rooms = {"sale": {"inlet": {"policy": "max_active", "max_active": 100}, "refresh_interval_s": 0.2,
                      "origins": [site], "cookie_secure": False}}  # plain http here: the cookie cannot be Secure
    client, service = await start_api(redis_prefix, rooms, tick_interval_s=0.1)
    origin, origin_port = await start_origin()
    tmp = tempfile.mkdtemp(prefix="wr-nginx-")
    nginx = start_nginx(tmp, port, int(client.base.rsplit(":", 1)[1]), origin_port)
    # unsafe: the jar keeps cookies of an IP host (127.0.0.1), as a browser does
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        wanted = f"{site}/shop/item?id=7&size=m"
        r = await http.get(wanted, allow_redirects=False)
        assert r.status == 302, await r.text()
        room_url = r.headers["Location"]
        assert room_url.startswith(f"{site}/waitingroom/rooms/sale/?")
        return_to = parse_qs(urlsplit(room_url).query)["return_to"][0]
        assert return_to == wanted  # the page asked for, query and all

        r = await http.get(room_url)  # the room itself is not gated
        assert r.status == 200 and "Getting you a place in line" in await r.text()
        # as the page does: the join's HttpOnly queue cookie is what every poll and the hand-off carry
        joined = await (await http.post(f"{site}/waitingroom/rooms/sale/join", json={})).json()
        rid = joined["request_id"]
        started = time.monotonic()
        while True:
            status = await (await http.get(f"{site}/waitingroom/rooms/sale/status")).json()
            if status["state"] == "admitted":
                break
            assert time.monotonic() - started < 10, status
            await asyncio.sleep(0.1)
        waited = time.monotonic() - started

        # someone who knows the request id but not the queue cookie is sent back to the room, with no access cookie
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as thief:
            r = await thief.post(f"{site}/waitingroom/rooms/sale/enter", data={"request_id": rid, "return_to": return_to},
                                 allow_redirects=False)
            assert r.status == 303 and r.headers["Location"].startswith("/waitingroom/rooms/sale/")
            assert cookie_name("sale") not in r.cookies
        # the page's hand-off: a form post that sets the cookie and sends the browser back
        r = await http.post(f"{site}/waitingroom/rooms/sale/enter", data={"return_to": return_to}, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == wanted
        set_cookie = r.headers["Set-Cookie"]
        assert set_cookie.startswith(f"{cookie_name('sale')}=") and "HttpOnly" in set_cookie
        assert "SameSite=Lax" in set_cookie and "Path=/" in set_cookie and "Secure" not in set_cookie

        # back at the origin, through nginx, which now serves; a claim header the visitor sends is replaced
        r = await http.get(wanted, headers={"X-Waitingroom-Subject": "someone-else"}, allow_redirects=False)
        assert r.status == 200 and await r.text() == f"origin /shop/item?id=7&size=m for {rid}"
        started = time.monotonic()
        for _ in range(50):
            assert (await http.get(f"{site}/shop/other", allow_redirects=False)).status == 200
        per_request_ms = (time.monotonic() - started) * 1000 / 50
        token = http.cookie_jar.filter_cookies(URL(site))[cookie_name("sale")].value

        # an API client with the same token as a bearer token, no cookie
        async with aiohttp.ClientSession() as api:
            r = await api.get(f"{site}/shop/api", headers={"Authorization": f"Bearer {token}"}, allow_redirects=False)
            assert r.status == 200 and await r.text() == f"origin /shop/api for {rid}"

        # an expired cookie (the room's own key, past its exp) and forged ones go back to the room
        now = int(time.time())
        key = service.ring.active
        claims = {"iss": ISSUER, "aud": "sale", "sub": rid, "token_use": "access", "queue_position": 1,
                  "priority_class": "general", "iat": now - 700, "nbf": now - 700, "exp": now - 100}
        stranger = SigningKey(kid=key.kid, alg=key.alg, private_key=SigningKey.generate(key.alg, now).private_key,
                              created_s=now)
        head, payload, sig = token.split(".")
        other_payload = service.ring.sign({**claims, "sub": "someone-else", "exp": now + 600}).split(".")[1]
        for bad in (key.sign(claims), stranger.sign({**claims, "exp": now + 600}), f"{head}.{other_payload}.{sig}",
                    "not-a-token"):
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as visitor:
                visitor.cookie_jar.update_cookies({cookie_name("sale"): bad}, response_url=URL(site))
                r = await visitor.get(wanted, allow_redirects=False)
                assert r.status == 302 and r.headers["Location"] == room_url, bad
        print(f"\nnginx end to end: admitted after {waited:.2f}s; gated request through nginx {per_request_ms:.2f} ms")
    finally:
        await http.close()
        nginx.terminate()
        try:
            nginx.wait(10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()
        await origin.cleanup()
        await client.close()
        shutil.rmtree(tmp, ignore_errors=True)


async def test_an_active_visitor_keeps_access_by_browsing_and_the_origin_ends_the_session(redis_prefix):
    """Session renewal and end-of-session at the gate, through nginx: a visitor who keeps browsing has the access
    cookie renewed by forward-auth (nginx passes its Set-Cookie on) and holds the room's one slot past the first
    token's lifetime; the shop's checkout ends the session, after which the cookie is sent back to the room and
    the next waiter is let in."""
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    rooms = {"sale": {"inlet": {"policy": "max_active", "max_active": 1}, "session_duration_s": 4, "max_session_s": 60,
                      "refresh_interval_s": 0.2, "origins": [site], "cookie_secure": False}}
    client, service = await start_api(redis_prefix, rooms, tick_interval_s=0.1)
    origin, origin_port = await start_origin(client.base)
    tmp = tempfile.mkdtemp(prefix="wr-nginx-")
    nginx = start_nginx(tmp, port, int(client.base.rsplit(":", 1)[1]), origin_port)
    alice = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    bob = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        async def admitted(http: aiohttp.ClientSession, within_s: float) -> bool:
            deadline = time.monotonic() + within_s
            while time.monotonic() < deadline:
                status = await (await http.get(f"{site}/waitingroom/rooms/sale/status")).json()
                if status["state"] == "admitted":
                    return True
                await asyncio.sleep(0.1)
            return False

        await alice.post(f"{site}/waitingroom/rooms/sale/join", json={})
        assert await admitted(alice, 10)
        r = await alice.post(f"{site}/waitingroom/rooms/sale/enter", data={"return_to": f"{site}/"},
                             allow_redirects=False)
        assert r.status == 303
        first = alice.cookie_jar.filter_cookies(URL(site))[cookie_name("sale")].value
        first_exp = service.check_access("sale", first)["exp"]
        await bob.post(f"{site}/waitingroom/rooms/sale/join", json={})  # the slot is Alice's: Bob waits

        # Alice browses for twice the first token's lifetime; every page passes the gate
        renewals = 0
        started = time.monotonic()
        while time.monotonic() - started < 8:
            r = await alice.get(f"{site}/shop/page", allow_redirects=False)
            assert r.status == 200, (r.status, r.headers.get("Location"))
            renewals += "Set-Cookie" in r.headers
            await asyncio.sleep(0.5)
        assert time.time() > first_exp + 2 and renewals >= 2
        current = alice.cookie_jar.filter_cookies(URL(site))[cookie_name("sale")].value
        assert current != first and service.check_access("sale", current)["exp"] > time.time()
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as old:  # the first cookie lapsed
            old.cookie_jar.update_cookies({cookie_name("sale"): first}, response_url=URL(site))
            assert (await old.get(f"{site}/shop/page", allow_redirects=False)).status == 302
        # the slot stayed hers: Bob is still waiting
        status = await (await bob.get(f"{site}/waitingroom/rooms/sale/status")).json()
        assert status["state"] == "waiting", status

        # the shop's checkout ends her session: her cookie no longer passes, and Bob gets the slot at once
        r = await alice.post(f"{site}/checkout")
        assert r.status == 200, await r.text()
        assert (await r.json())["state"] == "completed"
        r = await alice.get(f"{site}/shop/page", allow_redirects=False)
        assert r.status == 302 and r.headers["Location"].startswith(f"{site}/waitingroom/rooms/sale/")
        ended = time.monotonic()
        assert await admitted(bob, 5)
        print(f"\nnginx renewal: {renewals} renewals in 8 s of browsing; next waiter admitted "
              f"{time.monotonic() - ended:.2f}s after end-of-session")
    finally:
        await alice.close()
        await bob.close()
        nginx.terminate()
        try:
            nginx.wait(10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()
        await origin.cleanup()
        await client.close()
        shutil.rmtree(tmp, ignore_errors=True)
