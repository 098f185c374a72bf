"""The waiting room inside the worker: joins from a topic answered on a reply topic, the HTTP API
on the worker's port, and idempotent positions when the same join is replayed."""
from __future__ import annotations

import asyncio
import uuid

import aiohttp
import orjson
import pytest

from streams.config import parse_config
from streams.runtime.worker import Worker
from streams.service import build_waitingroom, run_worker
from tests.integration.kafka_helpers import create_topics, produce, read_all, unique

pytestmark = pytest.mark.broker


async def test_joins_from_kafka_get_gapless_positions_and_the_http_api_sees_them(bootstrap_servers):
    joins, replies, dlq, group = unique("joins"), unique("replies"), unique("dlq"), unique("g")
    await create_topics(bootstrap_servers, joins, replies, dlq, partitions=1)
    prefix = f"test:wr:{uuid.uuid4().hex[:8]}:"
    config = parse_config({
        "kafka": {"bootstrap_servers": bootstrap_servers, "group_id": group},
        "consumer": {"commit_interval_ms": 100, "fetch_timeout_ms": 50},
        "http": {"host": "127.0.0.1", "port": 0},
        "dead_letter": {"topic": dlq},
        "waitingroom": {"admin_token": "admin-token-for-tests-0123", "key_prefix": prefix,
                        "rooms": {"sale": {"inlet": {"policy": "manual"}, "bot_protection": False}}},
        "sources": [{"topic": joins}],
        "rules": [{"name": "joins", "event_pattern": {"action": ["join"]},
                   "targets": [{"id": "room", "type": "waitingroom", "reply_topic": replies}]}],
    }, environ={})
    requests = [{"action": "join", "room": "sale", "request_id": f"r-{i}"} for i in range(40)]
    requests.insert(5, {"action": "join", "room": "sale"})  # no request id: dead-lettered
    requests.append({"action": "join", "room": "sale", "request_id": "r-3"})  # a retried join
    await produce(bootstrap_servers, joins, requests)

    worker = Worker(config, waitingroom=build_waitingroom(config))
    info = {}
    task = asyncio.create_task(run_worker(config, worker, on_started=lambda w, port: info.update(port=port)))
    got = await read_all(bootstrap_servers, replies, expect=41, timeout=30)
    dead = await read_all(bootstrap_servers, dlq, expect=1, timeout=10)
    positions, queue_tokens = {}, {}
    for m in got:
        reply = orjson.loads(m.value)
        assert m.key == reply["request_id"].encode()
        queue_tokens[reply["request_id"]] = reply["queue_token"]  # the producer hands it to its visitor
        positions.setdefault(reply["request_id"], set()).add(reply["position"])
    assert all(len(p) == 1 for p in positions.values()), "a replayed join keeps its position"
    assert sorted(p.pop() for p in positions.values()) == list(range(1, 41)), "positions are gapless"
    assert dict(dead[0].headers)["eventweir-error"] == b"invalid_request"

    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{info['port']}/waitingroom"
        r0 = {"Authorization": f"Bearer {queue_tokens['r-0']}"}
        async with http.get(f"{base}/rooms/sale/status", params={"request_id": "r-0"}) as r:
            assert r.status == 401  # the request id alone is no credential
        async with http.get(f"{base}/rooms/sale/status", headers=r0) as r:
            status = await r.json()
        assert status["position"] == 1 and status["serving_counter"] == 0
        async with http.post(f"{base}/admin/rooms/sale/serving", json={"increment": 1}) as r:
            assert r.status == 401  # admin needs the bearer token
        async with http.post(f"{base}/admin/rooms/sale/serving", json={"increment": 1},
                             headers={"Authorization": "Bearer admin-token-for-tests-0123"}) as r:
            assert r.status == 200
        async with http.post(f"{base}/rooms/sale/token", headers=r0) as r:
            assert r.status == 200 and (await r.json())["access_token"]
    worker.request_stop()
    await asyncio.wait_for(task, 30)
    import redis.asyncio as redis

    client = redis.Redis()
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_the_public_listener_serves_the_public_routes_and_nothing_else(bootstrap_servers):
    # issue 21 item 13: the page and the join API face the internet; /metrics, the EventBridge API
    # and the admin API must not be reachable there
    import aiohttp

    src, dlq = unique("src"), unique("dlq")
    await create_topics(bootstrap_servers, src, dlq, partitions=1)
    admin = {"Authorization": "Bearer admin-token-for-tests-0123"}
    config = parse_config({
        "kafka": {"bootstrap_servers": bootstrap_servers, "group_id": unique("g")},
        "http": {"host": "127.0.0.1", "port": 0, "public": {"host": "127.0.0.1", "port": 0}},
        "dead_letter": {"topic": dlq}, "sources": [{"topic": src}],
        "waitingroom": {"admin_token": "admin-token-for-tests-0123", "key_prefix": f"test:wr:{uuid.uuid4().hex[:8]}:",
                        "rooms": {"sale": {"inlet": {"policy": "manual"}, "bot_protection": False}}},
        "api": {"allow_anonymous": True},
    }, environ={})
    worker = Worker(config, waitingroom=build_waitingroom(config))
    ports: dict = {}
    task = asyncio.create_task(run_worker(config, worker, on_started=lambda w, port: ports.update(private=port),
                                          on_public=lambda port: ports.update(public=port)))
    try:
        for _ in range(200):
            if len(ports) == 2:
                break
            await asyncio.sleep(0.05)
        public, private = f"http://127.0.0.1:{ports['public']}", f"http://127.0.0.1:{ports['private']}"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{public}/waitingroom/rooms/sale/join", json={}) as resp:
                assert resp.status == 200 and (await resp.json())["position"] == 1
            async with http.get(f"{public}/waitingroom/rooms/sale/") as resp:
                assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]
            for method, path, headers in (("GET", "/metrics", {}), ("GET", "/waitingroom/admin/rooms", admin),
                                          ("POST", "/", {"X-Amz-Target": "AWSEvents.ListRules"})):
                async with http.request(method, f"{public}{path}", headers=headers, data=b"{}") as resp:
                    assert resp.status == 404, f"{method} {path} answered {resp.status} on the public listener"
            async with http.get(f"{private}/metrics") as resp:
                assert resp.status == 200
            async with http.get(f"{private}/waitingroom/admin/rooms", headers=admin) as resp:
                assert resp.status == 200
            async with http.post(f"{private}/waitingroom/rooms/sale/join", json={}) as resp:
                assert resp.status == 404, "the public routes are not on the private listener"
            # forward-auth, which the proxy in front of the site calls, is public (and only public) too
            async with http.get(f"{public}/waitingroom/rooms/sale/auth", allow_redirects=False) as resp:
                assert resp.status == 401 and resp.headers["Location"] == "/waitingroom/rooms/sale/"
            async with http.get(f"{private}/waitingroom/rooms/sale/auth") as resp:
                assert resp.status == 404
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 30)
