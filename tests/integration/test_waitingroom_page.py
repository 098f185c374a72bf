"""The waiting page in a real headless Chromium (driven over the DevTools protocol): it joins, shows
its position and people ahead, and the numbers advance as the room admits people, up to admission."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from tests.waitingroom_support import ADMIN, redis_prefix, start_api  # noqa: F401

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Debian package chromium not installed (tests/setup/system-deps.sh)")


class Page:
    """Just enough of the DevTools protocol: evaluate an expression in the page."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    async def eval(self, expression: str):
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": "Runtime.evaluate",
                                 "params": {"expression": expression, "returnByValue": True}})
        while True:
            msg = await self.ws.receive_json(timeout=30)
            if msg.get("id") == self.next_id:
                return msg["result"]["result"].get("value")

    async def text(self, element_id: str) -> str | None:
        return await self.eval(f"(document.getElementById({element_id!r}) || {{}}).textContent")

    async def wait_for(self, element_id: str, expected: str, timeout: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        value = None
        while asyncio.get_running_loop().time() < deadline:
            value = await self.text(element_id)
            if value == expected:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"#{element_id} shows {value!r}, expected {expected!r}")


async def open_in_chromium(url: str, profile: str):
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    port_file = Path(profile) / "DevToolsActivePort"
    for _ in range(600):
        if port_file.exists() and port_file.read_text().strip():
            break
        await asyncio.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError("Chromium did not open its DevTools port")
    port = int(port_file.read_text().split()[0])
    return proc, port


async def test_page_shows_a_position_that_advances(redis_prefix):
    client, service = await start_api(redis_prefix, {"sale": {"inlet": {"policy": "manual"}, "refresh_interval_s": 0.3}})
    profile = tempfile.mkdtemp(prefix="wr-chromium-")
    proc = None
    try:
        for _ in range(3):  # three people are already queued
            await client.post("/waitingroom/rooms/sale/join", json={})
        proc, port = await open_in_chromium(str(client.make_url("/waitingroom/rooms/sale/")), profile)
        async with aiohttp.ClientSession() as http:
            targets = await (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
            target = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                await page.wait_for("position", "4")
                await page.wait_for("ahead", "3")
                assert await page.text("state") == "waiting"
                # the place is the HttpOnly queue cookie: a reload keeps it, and the page's scripts cannot read it
                assert "eventweir_wrq_" not in await page.eval("document.cookie")
                await page.eval("window.before_reload = 1; location.reload()")
                while await page.eval("window.before_reload") == 1:
                    await asyncio.sleep(0.05)
                await page.wait_for("state", "waiting")
                assert await page.text("position") == "4"
                await client.post("/waitingroom/admin/rooms/sale/serving", json={"increment": 2}, headers=ADMIN)
                await page.wait_for("ahead", "1")
                await page.wait_for("serving", "2")
                assert await page.text("position") == "4"
                await client.post("/waitingroom/admin/rooms/sale/serving", json={"increment": 2}, headers=ADMIN)
                await page.wait_for("token-state", "Access granted.")
                assert await page.text("state") == "admitted"
                # the page's token is a real access token for this room
                token = await page.eval("sessionStorage.getItem('eventweir-waitingroom:sale:token')")
                assert service.verify_access_token(token, "sale")["queue_position"] == 4
                counters = await (await client.get("/waitingroom/admin/rooms/sale/counters", headers=ADMIN)).json()
                assert counters["admitted_total"] == 4 and counters["waiting"] == 0 and counters["last_position"] == 4
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
        await client.close()


async def test_page_hands_an_admitted_visitor_back_to_the_page_they_asked_for(redis_prefix):
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
    profile = tempfile.mkdtemp(prefix="wr-chromium-")
    proc = None
    try:
        wanted = f"{shop}/item?id=7"
        url = client.make_url("/waitingroom/rooms/sale/") + "?return_to=" + quote(wanted, safe="")
        proc, port = await open_in_chromium(url, profile)
        async with aiohttp.ClientSession() as http:
            targets = await (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
            target = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                await page.wait_for("state", "waiting")
                await client.post("/waitingroom/admin/rooms/sale/serving", json={"increment": 1}, headers=ADMIN)
                deadline = asyncio.get_running_loop().time() + 30
                while await page.eval("location.href") != wanted:
                    assert asyncio.get_running_loop().time() < deadline, await page.eval("location.href")
                    await asyncio.sleep(0.1)
                assert await page.eval("document.body.textContent") == "the shop: /item?id=7"
                # the shop got the access token in the cookie, which the page's scripts cannot read
                assert seen and seen[-1] and service.check_access("sale", seen[-1])["token_use"] == "access"
                assert cookie_name("sale") not in (await page.eval("document.cookie"))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
        await client.close()
        await runner.cleanup()
