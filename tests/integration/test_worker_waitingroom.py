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
                        "rooms": {"sale": {"inlet": {"policy": "manual"}}}},
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
    positions = {}
    for m in got:
        reply = orjson.loads(m.value)
        assert m.key == reply["request_id"].encode()
        positions.setdefault(reply["request_id"], set()).add(reply["position"])
    assert all(len(p) == 1 for p in positions.values()), "a replayed join keeps its position"
    assert sorted(p.pop() for p in positions.values()) == list(range(1, 41)), "positions are gapless"
    assert dict(dead[0].headers)["eventweir-error"] == b"invalid_request"

    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{info['port']}/waitingroom"
        async with http.get(f"{base}/rooms/sale/status", params={"request_id": "r-0"}) as r:
            status = await r.json()
        assert status["position"] == 1 and status["serving_counter"] == 0
        async with http.post(f"{base}/admin/rooms/sale/serving", json={"increment": 1}) as r:
            assert r.status == 401  # admin needs the bearer token
        async with http.post(f"{base}/admin/rooms/sale/serving", json={"increment": 1},
                             headers={"Authorization": "Bearer admin-token-for-tests-0123"}) as r:
            assert r.status == 200
        async with http.post(f"{base}/rooms/sale/token", json={"request_id": "r-0"}) as r:
            assert r.status == 200 and (await r.json())["access_token"]
    worker.request_stop()
    await asyncio.wait_for(task, 30)
    import redis.asyncio as redis

    client = redis.Redis()
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()
