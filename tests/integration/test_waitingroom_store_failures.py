"""The waiting room when Redis fails in the ways it does in production: hung (connections open, no answers)
and gone (the server killed). Every answer is a 503 with the store-unavailable JSON and a retry hint, never a
hang or a 500, and the room serves again once Redis does."""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import pytest

from streams.devtools.broker import free_port, wait_for_port
from tests.waitingroom_support import ADMIN, RedisOutage, redis_prefix, start_api, visitor  # noqa: F401

ROOM = {"inlet": {"policy": "manual"}}


async def assert_unavailable(resp) -> None:
    assert resp.status == 503, (resp.status, await resp.text())
    body = await resp.json()
    assert body["error"] == "unavailable" and body["retry_after_s"] >= 1 and resp.headers["Retry-After"]


async def test_a_hung_redis_answers_503_within_the_timeout_instead_of_hanging_polls(redis_prefix):
    relay = RedisOutage()
    await relay.up()
    client, _ = await start_api(redis_prefix, {"sale": ROOM}, redis_url=relay.url, redis_timeout_s=0.5,
                                tick_interval_s=0.1)
    try:
        joined = await (await client.post("/waitingroom/rooms/sale/join", json={})).json()
        assert (await client.get("/waitingroom/rooms/sale/status", headers=visitor(joined))).status == 200
        relay.stall()
        for method, path, kw in (("GET", "/waitingroom/rooms/sale/status", {"headers": visitor(joined)}),
                                 ("POST", "/waitingroom/rooms/sale/join", {"json": {}}),
                                 ("GET", "/waitingroom/admin/rooms/sale/counters", {"headers": ADMIN}),
                                 ("POST", "/waitingroom/admin/rooms/sale/pause", {"headers": ADMIN})):
            started = time.monotonic()
            await assert_unavailable(await client.request(method, path, timeout=10, **kw))
            assert time.monotonic() - started < 3, f"{method} {path} waited {time.monotonic() - started:.1f}s"
        relay.stall(False)
        status = await client.get("/waitingroom/rooms/sale/status", headers=visitor(joined))
        assert status.status == 200 and (await status.json())["state"] == "waiting"  # the place was kept
    finally:
        await client.close()
        await relay.down()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
async def test_admin_calls_answer_503_when_redis_is_gone(redis_prefix):
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port("127.0.0.1", port, 10)
    client, _ = await start_api(redis_prefix, {"sale": ROOM}, redis_url=f"redis://127.0.0.1:{port}/0",
                                redis_timeout_s=1)
    try:
        assert (await client.post("/waitingroom/admin/rooms/sale/pause", headers=ADMIN)).status == 200
        redis.kill()
        redis.wait()
        await asyncio.sleep(0.1)
        for method, path, kw in (("PUT", "/waitingroom/admin/rooms/sale", {"json": ROOM}),
                                 ("POST", "/waitingroom/admin/rooms/sale/resume", {}),
                                 ("POST", "/waitingroom/admin/rooms/sale/reset", {}),
                                 ("DELETE", "/waitingroom/admin/rooms/sale", {}),
                                 ("POST", "/waitingroom/admin/keys/rotate", {}),
                                 ("GET", "/waitingroom/admin/rooms/sale/counters", {}),
                                 ("POST", "/waitingroom/admin/rooms/sale/serving", {"json": {"increment": 1}})):
            await assert_unavailable(await client.request(method, path, headers=ADMIN, timeout=10, **kw))
        assert (await client.post("/waitingroom/rooms/sale/join", json={})).status == 503
    finally:
        if redis.poll() is None:
            redis.kill()
            redis.wait()
        await client.close()
