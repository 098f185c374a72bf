"""The worker on the real broker: outputs, committed offsets, poison records, health endpoints.

Every test runs on both runtimes (native, and faust-streaming via streams.runtime.faust) with the
same assertions: the runtimes share the pipeline, targets, dead letters and metrics.
"""
from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from streams.config import parse_config
from streams.runtime.worker import Worker
from streams.service import run_worker
from tests.integration.kafka_helpers import committed_offsets, create_topics, produce, read_all, unique, wait_for

pytestmark = pytest.mark.broker


@pytest.fixture(params=["native", "faust"])
def runtime(request, tmp_path, monkeypatch):
    if request.param == "faust":
        pytest.importorskip("faust", reason="faust-streaming is the `faust` extra")
        monkeypatch.chdir(tmp_path)  # faust keeps a `<app id>-data` folder in the working directory
    return request.param


def make_worker(runtime: str, config):
    if runtime == "faust":
        from streams.runtime.faust import FaustWorker

        return FaustWorker(config)
    return Worker(config)


def config_for(bootstrap, source, outputs: dict, dlq, group, **extra):
    data = {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": group},
        "consumer": {"commit_interval_ms": 100, "fetch_timeout_ms": 50},
        "http": {"host": "127.0.0.1", "port": 0},
        "dead_letter": {"topic": dlq},
        "sources": [{"topic": source}],
        "rules": [
            {"name": name, "targets": [{"id": "out", "type": "kafka", "topic": topic}]}
            for name, topic in outputs.items()
        ],
    }
    # the test endpoints listen on loopback, which http targets may only call when listed
    data["routing"] = {"http_allow_networks": ["127.0.0.0/8"], **extra.pop("routing", {})}
    data.update(extra)
    return parse_config(data, environ={})


async def start_worker(config, runtime: str = "native") -> tuple[Worker, asyncio.Task, dict]:
    worker = make_worker(runtime, config)
    info = {}
    task = asyncio.create_task(run_worker(config, worker, on_started=lambda w, port: info.update(port=port)))
    await wait_for(lambda: worker.joined, message="the worker to join its group")
    return worker, task, info


async def stop_worker(worker, task):
    worker.request_stop()
    assert await asyncio.wait_for(task, 30) == 0


async def test_events_flow_to_every_rule_and_offsets_are_committed(bootstrap_servers, runtime):
    src, out_a, out_b, dlq, group = unique("in"), unique("a"), unique("b"), unique("dlq"), unique("g")
    await create_topics(bootstrap_servers, src, out_a, out_b, dlq)
    events = [{"n": i, "device": f"d{i % 7}"} for i in range(500)]
    await produce(bootstrap_servers, src, events, keys=[f"d{i % 7}".encode() for i in range(500)])

    worker, task, _ = await start_worker(config_for(bootstrap_servers, src, {"to-a": out_a, "to-b": out_b}, dlq, group), runtime)
    got_a = await read_all(bootstrap_servers, out_a, expect=500)
    got_b = await read_all(bootstrap_servers, out_b, expect=500)
    await wait_for(lambda: sum(o or 0 for o in worker.stats.committed.values()) == 500, message="commits")
    await stop_worker(worker, task)

    assert sorted(orjson.loads(m.value)["n"] for m in got_a) == list(range(500))
    assert sorted(orjson.loads(m.value)["n"] for m in got_b) == list(range(500))
    # the input key is kept, so per-key order holds on the output topic too
    by_key: dict[bytes, list[int]] = {}
    for m in got_a:
        by_key.setdefault(m.key, []).append(orjson.loads(m.value)["n"])
    assert all(ns == sorted(ns) for ns in by_key.values())
    committed = await committed_offsets(bootstrap_servers, group, src)
    assert sum(committed.values()) == 500
    assert worker.stats.matched == {"to-a": 500, "to-b": 500}


async def test_poison_records_are_dead_lettered_with_reason_and_good_ones_flow(bootstrap_servers, runtime):
    src, out, dlq, group = unique("in"), unique("out"), unique("dlq"), unique("g")
    await create_topics(bootstrap_servers, src, out, dlq, partitions=1)
    values = []
    for i in range(30):
        values.append(orjson.dumps({"n": i}))
        if i % 10 == 3:
            values.append(b"\xff\xfe not utf8")
        if i % 10 == 6:
            values.append(b'{"n": 1,')
        if i % 10 == 8:
            values.append(b"[1, 2]")
    await produce(bootstrap_servers, src, values)

    worker, task, _ = await start_worker(config_for(bootstrap_servers, src, {"all": out}, dlq, group), runtime)
    good = await read_all(bootstrap_servers, out, expect=30)
    dead = await read_all(bootstrap_servers, dlq, expect=9)
    await stop_worker(worker, task)

    assert sorted(orjson.loads(m.value)["n"] for m in good) == list(range(30))
    assert len(dead) == 9
    reasons = {}
    for m in dead:
        headers = {k: v.decode() for k, v in m.headers}
        assert headers["eventweir-stage"] == "decode"
        assert headers["eventweir-source-topic"] == src
        assert values[int(headers["eventweir-source-offset"])] == m.value  # the original bytes, untouched
        reasons[headers["eventweir-error"]] = reasons.get(headers["eventweir-error"], 0) + 1
        assert headers["eventweir-message"]
    assert reasons == {"invalid_json": 3, "not_object": 3, "not_utf8": 3}
    committed = await committed_offsets(bootstrap_servers, group, src)
    assert committed[0] == len(values)


async def test_health_readiness_and_metrics_endpoints(bootstrap_servers, runtime):
    src, out, dlq, group = unique("in"), unique("out"), unique("dlq"), unique("g")
    await create_topics(bootstrap_servers, src, out, dlq)
    worker, task, info = await start_worker(config_for(bootstrap_servers, src, {"all": out}, dlq, group), runtime)
    await produce(bootstrap_servers, src, [{"n": i} for i in range(20)])
    await read_all(bootstrap_servers, out, expect=20)
    base = f"http://127.0.0.1:{info['port']}"
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/healthz") as r:
            assert r.status == 200
        await wait_for(lambda: worker.ready[0], message="readiness")
        async with http.get(base + "/readyz") as r:
            assert r.status == 200 and (await r.json())["ready"] is True
        async with http.get(base + "/metrics") as r:
            text = await r.text()
    assert f'eventweir_records_consumed_total{{topic="{src}"}} 20.0' in text
    assert 'eventweir_rule_matches_total{rule="all"}' in text
    await stop_worker(worker, task)
