"""The waiting page in a real headless Chromium (driven over the DevTools protocol), as a visitor sees it:
every state in the visitor's language, the numbers moving as the room admits people, the hand-off to the
site, and never an internal error or raw JSON. Each test saves screenshots of what it saw under its tmp dir."""
from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from tests.waitingroom_support import ADMIN, redis_prefix, start_api  # noqa: F401

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Debian package chromium not installed (tests/setup/system-deps.sh)")
# what a visitor must never see: error internals, Redis, JSON
INTERNALS = ("{", "}", "Error", "Traceback", "redis", "Redis", "store unavailable", "request_id", "null", "undefined")


class Page:
    """Just enough of the DevTools protocol: call a method, evaluate an expression, wait for text."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params):
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        # one deadline for the answer: the page's polling keeps Network events coming, so a timeout per
        # message alone would wait forever for an answer that never comes
        async with asyncio.timeout(30):
            while True:
                msg = await self.ws.receive_json()
                if msg.get("id") == self.next_id:
                    return msg.get("result", {})

    async def eval(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def text(self, element_id: str = "wr-live") -> str | None:
        return await self.eval(f"(document.getElementById({element_id!r}) || {{}}).innerText")

    async def goto(self, url: str) -> None:
        await self.eval("window.wr_old_page = 1")
        await self.call("Page.navigate", url=url)
        for _ in range(300):
            if await self.eval("window.wr_old_page") is None and await self.eval("document.readyState") == "complete":
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{url} did not load")

    async def wait_for(self, *expected: str, timeout: float = 30.0) -> str:
        """The live region's text once it contains every one of `expected`."""
        deadline = asyncio.get_running_loop().time() + timeout
        value = None
        while asyncio.get_running_loop().time() < deadline:
            value = await self.text()
            if value is not None and all(e in value for e in expected):
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"the page shows {value!r}, expected {expected!r}")

    async def seen(self) -> str:
        """All the text on the page (title included), checked for anything internal."""
        text = await self.eval("document.title + '\\n' + document.body.innerText")
        for bad in INTERNALS:
            assert bad not in text, f"the visitor sees {bad!r}: {text!r}"
        return text

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


@asynccontextmanager
async def chromium(language: str = "en"):
    """A headless Chromium on about:blank whose requests say `Accept-Language: <language>`."""
    profile = tempfile.mkdtemp(prefix="wr-chromium-")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
         "--hide-scrollbars", f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        for _ in range(600):
            if port_file.exists() and port_file.read_text().strip():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("Chromium did not open its DevTools port")
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            # aiohttp's default deadline is pytest's whole 300 s: a Chromium that stops answering must fail here
            listing = await http.get(f"http://127.0.0.1:{port}/json/list", timeout=aiohttp.ClientTimeout(total=30))
            targets = await listing.json()
            target = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                await page.call("Network.enable")
                await page.call("Network.setExtraHTTPHeaders", headers={"Accept-Language": language})
                await page.call("Emulation.setDeviceMetricsOverride", width=720, height=720, deviceScaleFactor=1,
                                mobile=False)
                yield page
    finally:
        # the whole process group (its own session): a helper process left behind would hold a keep-alive
        # connection open, and the server's shutdown would wait for it
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def test_waiting_in_german_place_and_people_ahead_both_count_down_to_admission(redis_prefix, tmp_path):
    client, service = await start_api(redis_prefix, {"sale": {"inlet": {"policy": "manual"}, "refresh_interval_s": 0.3,
                                                              "display_name": "Winterschlussverkauf"}})
    try:
        for _ in range(3):  # three people are already queued
            await client.post("/waitingroom/rooms/sale/join", json={})
        async with chromium("de-DE,de;q=0.9,en;q=0.5") as page:
            await page.goto(client.make_url("/waitingroom/rooms/sale/"))
            text = await page.wait_for("Sie sind in der Warteschlange", "Personen vor Ihnen\n3")
            assert "4\nIhr Platz in der Warteschlange" in text
            assert "Aktuell an der Reihe\n0" in text  # one class, served in order: the counter means something
            assert await page.eval("document.documentElement.lang") == "de"
            assert await page.eval("document.title") == "Winterschlussverkauf \u00b7 Warteraum"
            assert await page.eval("document.getElementById('wr-live').getAttribute('aria-live')") == "polite"
            await page.seen()
            await page.screenshot(tmp_path / "waiting-de.png")
            # the place is the HttpOnly queue cookie: a reload keeps it, and the page's scripts cannot read it
            assert "eventweir_wrq_" not in await page.eval("document.cookie")
            await page.goto(client.make_url("/waitingroom/rooms/sale/"))
            await page.wait_for("Personen vor Ihnen\n3")
            await client.post("/waitingroom/admin/rooms/sale/serving", json={"increment": 2}, headers=ADMIN)
            text = await page.wait_for("Personen vor Ihnen\n1", "Aktuell an der Reihe\n2")
            assert await page.eval("document.querySelector('.place .n').textContent") == "2"  # was stuck at 4
            await client.post("/waitingroom/admin/rooms/sale/serving", json={"increment": 2}, headers=ADMIN)
            await page.wait_for("Sie sind an der Reihe", "Sie k\u00f6nnen jetzt fortfahren.")
            await page.seen()
            await page.screenshot(tmp_path / "admitted-de.png")
            # a room without origins: the page's token is a real access token for this room, for the site's scripts
            for _ in range(100):
                token = await page.eval("sessionStorage.getItem('eventweir-waitingroom:sale:token')")
                if token:
                    break
                await asyncio.sleep(0.05)
            assert service.verify_access_token(token, "sale")["queue_position"] == 4
    finally:
        await client.close()


async def test_pre_queue_in_french_counts_down_to_the_start(redis_prefix, tmp_path):
    start = int(time.time()) + 3600
    client, _ = await start_api(redis_prefix, {"launch": {"inlet": {"policy": "fixed_rate", "rate": 60, "interval_s": 60},
                                                          "schedule": {"start": start}, "refresh_interval_s": 0.5}})
    try:
        async with chromium("fr-FR,fr") as page:
            await page.goto(client.make_url("/waitingroom/rooms/launch/"))
            text = await page.wait_for("Cela n\u2019a pas encore commenc\u00e9", "Attente estim\u00e9e")
            # an hour to the start plus a second of queue, not "1 s": 60 or 61 minutes
            assert "Attente estim\u00e9e\n1 h 0 min" in text or "Attente estim\u00e9e\n1 h 1 min" in text, text
            assert "D\u00e9but\n" in text and "Num\u00e9ro servi" not in text
            assert await page.eval("document.documentElement.lang") == "fr"
            await page.seen()
            await page.screenshot(tmp_path / "prequeue-fr.png")
    finally:
        await client.close()


async def test_admitted_visitor_is_handed_back_to_the_page_they_asked_for(redis_prefix, tmp_path):
    from aiohttp import web

    from processors.waitingroom.handoff import cookie_name
    from streams.devtools.broker import free_port

    seen: list[str | None] = []

    async def landing(request: web.Request) -> web.Response:
        seen.append(request.cookies.get(cookie_name("sale")))
        return web.Response(text=f"the shop: {request.path_qs}")

    origin_app = web.Application()
    origin_app.router.add_get("/{tail:.*}", landing)
    runner = web.AppRunner(origin_app, access_log=None)
    await runner.setup()
    origin_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", origin_port).start()
    shop = f"http://127.0.0.1:{origin_port}"
    client, service = await start_api(redis_prefix, {"sale": {"inlet": {"policy": "manual"}, "refresh_interval_s": 0.3,
                                                              "origins": [shop], "cookie_secure": False}})
    try:
        wanted = f"{shop}/item?id=7"
        async with chromium("es") as page:
            await page.goto(client.make_url("/waitingroom/rooms/sale/") + "?return_to=" + quote(wanted, safe=""))
            await page.wait_for("Est\u00e1 en la fila")
            await client.post("/waitingroom/admin/rooms/sale/serving", json={"increment": 1}, headers=ADMIN)
            deadline = asyncio.get_running_loop().time() + 30
            while await page.eval("location.href") != wanted:
                assert asyncio.get_running_loop().time() < deadline, await page.eval("location.href")
                await asyncio.sleep(0.1)
            assert await page.eval("document.body.textContent") == "the shop: /item?id=7"
            await page.screenshot(tmp_path / "redirected.png")
            # the shop got the access token in the cookie, which the page's scripts cannot read
            assert seen and seen[-1] and service.check_access("sale", seen[-1])["token_use"] == "access"
            assert cookie_name("sale") not in (await page.eval("document.cookie"))
    finally:
        await client.close()
        await runner.cleanup()


async def test_expired_place_in_spanish_and_joining_again_at_the_back(redis_prefix, tmp_path):
    # the page polls every 3 s and a place lasts 1 s without a poll: the first poll after joining finds it expired
    client, _ = await start_api(redis_prefix, {"sale": {"inlet": {"policy": "manual"}, "refresh_interval_s": 3,
                                                        "heartbeat_s": 1}})
    try:
        async with chromium("es-ES") as page:
            await page.goto(client.make_url("/waitingroom/rooms/sale/"))
            await page.wait_for("Su lugar ha caducado", "Volver a la fila", timeout=20)
            await page.seen()
            await page.screenshot(tmp_path / "expired-es.png")
            await client.post("/waitingroom/rooms/sale/join", json={})  # someone else joined meanwhile
            await page.eval("document.querySelector('[data-wr-action=rejoin]').click()")
            text = await page.wait_for("Est\u00e1 en la fila", "Personas delante de usted\n1")
            assert "Su lugar en la fila" in text
    finally:
        await client.close()


async def test_paused_in_japanese_keeps_the_place_and_gives_no_eta(redis_prefix, tmp_path):
    client, _ = await start_api(redis_prefix, {"sale": {"inlet": {"policy": "fixed_rate", "rate": 1, "interval_s": 60},
                                                        "paused": True, "refresh_interval_s": 0.5}})
    try:
        async with chromium("ja,en;q=0.8") as page:
            await page.goto(client.make_url("/waitingroom/rooms/sale/"))
            # a generous wait: the first page in Japanese on a machine can wait for the font cache
            text = await page.wait_for("\u73fe\u5728\u4e00\u6642\u505c\u6b62\u4e2d\u3067\u3059",
                                       "\u524d\u306b\u3044\u308b\u4eba\u6570\n0", timeout=120)
            assert "\u63a8\u5b9a\u5f85\u3061\u6642\u9593\n\u307e\u3060\u308f\u304b\u308a\u307e\u305b\u3093" in text
            assert await page.eval("document.documentElement.lang") == "ja"
            await page.seen()
            await page.screenshot(tmp_path / "paused-ja.png")
    finally:
        await client.close()


async def test_sold_out_and_closed_rooms_say_so_instead_of_queueing(redis_prefix, tmp_path):
    now = int(time.time())
    client, _ = await start_api(redis_prefix, {
        "drop": {"inlet": {"policy": "manual"}, "inventory": 1, "refresh_interval_s": 0.3},
        "ended": {"inlet": {"policy": "manual"}, "schedule": {"start": now - 7200, "end": now - 60}}})
    try:
        await client.post("/waitingroom/rooms/drop/join", json={})
        await client.post("/waitingroom/admin/rooms/drop/serving", json={"increment": 1}, headers=ADMIN)
        async with chromium("en-GB") as page:
            await page.goto(client.make_url("/waitingroom/rooms/drop/"))
            await page.wait_for("Sold out", "Thank you for waiting.")
            await page.seen()
            await page.screenshot(tmp_path / "sold-out-en.png")
            await page.goto(client.make_url("/waitingroom/rooms/ended/"))
            await page.wait_for("The waiting room is closed", "No more visitors are being let in.")
            await page.seen()
            await page.screenshot(tmp_path / "closed-en.png")
    finally:
        await client.close()


async def test_store_down_says_so_in_words_and_the_page_recovers_with_the_same_place(redis_prefix, tmp_path):
    from processors.waitingroom.redis_store import RedisRoomStore
    from streams.devtools.broker import free_port

    client, service = await start_api(redis_prefix, {"sale": {"inlet": {"policy": "manual"}, "refresh_interval_s": 0.3}})
    dead = RedisRoomStore.from_url(f"redis://127.0.0.1:{free_port()}/0", redis_prefix)  # nothing listens there
    try:
        await client.post("/waitingroom/rooms/sale/join", json={})
        async with chromium("de") as page:
            await page.goto(client.make_url("/waitingroom/rooms/sale/"))
            await page.wait_for("Personen vor Ihnen\n1")
            live, service.store = service.store, dead
            try:
                await page.wait_for("Es gibt ein Problem", "Sie behalten Ihren Platz")
                await page.seen()
                await page.screenshot(tmp_path / "store-down-de.png")
            finally:
                service.store = live
            await page.wait_for("Sie sind in der Warteschlange", "Personen vor Ihnen\n1", timeout=40)
    finally:
        await dead.close()
        await client.close()


async def test_unknown_room_is_a_page_in_the_visitors_language(redis_prefix, tmp_path):
    client, _ = await start_api(redis_prefix, {"sale": {"inlet": {"policy": "manual"}}})
    try:
        async with chromium("ja") as page:
            await page.goto(client.make_url("/waitingroom/rooms/no-such-room/"))
            await page.wait_for("\u3053\u3053\u306b\u5f85\u5408\u5ba4\u306f\u3042\u308a\u307e\u305b\u3093")
            await page.seen()
            await page.screenshot(tmp_path / "unknown-room-ja.png")
    finally:
        await client.close()


async def test_a_protected_room_solves_its_challenge_in_the_browser_then_gives_a_place(redis_prefix, tmp_path):
    """A real solve: the vendored ALTCHA widget fetches a challenge, finds its number in Chromium's workers, and the
    page joins with it; a second visitor (an API client, unsolved) is refused, so the place was earned."""
    from prometheus_client import REGISTRY

    def accepted() -> float:
        return REGISTRY.get_sample_value("eventweir_waitingroom_challenges_total",
                                         {"room": "guarded", "outcome": "accepted"}) or 0

    client, _ = await start_api(redis_prefix, {"guarded": {"inlet": {"policy": "manual"}, "refresh_interval_s": 0.3,
                                                           "bot_protection": True, "display_name": "Launch"}})
    before = accepted()
    try:
        assert (await client.post("/waitingroom/rooms/guarded/join", json={})).status == 403
        async with chromium("fr-FR,fr;q=0.9") as page:
            await page.goto(client.make_url("/waitingroom/rooms/guarded/"))
            text = await page.wait_for("Vous \u00eates dans la file", "Personnes devant vous\n0", timeout=60)
            assert "1\nVotre place dans la file" in text
            await page.seen()
            await page.screenshot(tmp_path / "protected-waiting-fr.png")
            assert accepted() == before + 1
            # a reload is the same visitor (the queue cookie): no new challenge, the same place
            await page.goto(client.make_url("/waitingroom/rooms/guarded/"))
            await page.wait_for("Personnes devant vous\n0")
            counters = await (await client.get("/waitingroom/admin/rooms/guarded/counters", headers=ADMIN)).json()
            assert counters["waiting"] == 1 and accepted() == before + 1
            await client.post("/waitingroom/admin/rooms/guarded/serving", json={"increment": 1}, headers=ADMIN)
            await page.wait_for("C\u2019est votre tour")
    finally:
        await client.close()


async def test_while_the_browser_solves_the_page_says_so_in_the_visitors_language(redis_prefix, tmp_path):
    from streams.http.waitingroom.page import TEXTS

    # the highest cost: the solve outlasts the test, so what the visitor reads meanwhile can be seen
    slow = {"inlet": {"policy": "manual"}, "bot_protection": {"altcha": {"max_number": 10_000_000}}}
    client, _ = await start_api(redis_prefix, {"slow": slow})
    try:
        async with chromium("ja") as page:
            await page.goto(client.make_url("/waitingroom/rooms/slow/"))
            await page.wait_for(TEXTS["ja"]["joining_title"], TEXTS["ja"]["challenge_body"])
            await asyncio.sleep(1)
            assert await page.eval("document.getElementById('wr-live').getAttribute('data-state')") == "joining"
            await page.seen()
            await page.screenshot(tmp_path / "solving-ja.png")
        counters = await (await client.get("/waitingroom/admin/rooms/slow/counters", headers=ADMIN)).json()
        assert counters["waiting"] == 0  # nobody joined without a solution
    finally:
        await client.close()


async def test_a_protected_rooms_visitor_who_expired_rejoins_without_a_new_challenge(redis_prefix, tmp_path):
    from prometheus_client import REGISTRY

    def count(outcome: str) -> float:
        return REGISTRY.get_sample_value("eventweir_waitingroom_challenges_total",
                                         {"room": "guarded", "outcome": outcome}) or 0

    client, _ = await start_api(redis_prefix, {"guarded": {"inlet": {"policy": "manual"}, "refresh_interval_s": 3,
                                                           "heartbeat_s": 1, "bot_protection": True}})
    before = {o: count(o) for o in ("issued", "accepted", "missing")}
    try:
        async with chromium("es-ES") as page:
            await page.goto(client.make_url("/waitingroom/rooms/guarded/"))
            await page.wait_for("Su lugar ha caducado", "Volver a la fila", timeout=30)
            await page.eval("document.querySelector('[data-wr-action=rejoin]').click()")
            await page.wait_for("Est\u00e1 en la fila", "Personas delante de usted\n0")
        # one challenge solved, for the first join; the rejoin was the holder's (the queue cookie)
        assert {o: count(o) - before[o] for o in before} == {"issued": 1, "accepted": 1, "missing": 0}
    finally:
        await client.close()
