"""The influxdb target against Debian's InfluxDB 1.x server (v1 API), and the v2 request shape."""
from __future__ import annotations

import uuid

import aiohttp
from aiohttp import web

from streams.targets.influxdb.target import InfluxSettings, InfluxTarget
from tests.integration.sink_helpers import DeadLetterRecorder, deliveries


async def influx_query(url: str, db: str, q: str) -> list[dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/query", params={"db": db, "q": q, "epoch": "ns"}) as r:
            body = await r.json()
    series = body["results"][0].get("series", [])
    return [dict(zip(s["columns"], row), **s.get("tags", {})) for s in series for row in s["values"]]


async def create_db(url: str) -> str:
    db = f"t{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/query", params={"q": f"CREATE DATABASE {db}"}) as r:
            assert r.status == 200
    return db


def reading(i: int, **over) -> dict:
    e = {"time": f"2026-11-22T13:00:{i:02d}.123456Z", "source": "iot",
         "detail": {"device_id": f"dev {i % 2},x=1", "temp": 20.5 + i, "count": i, "label": f'say "hi" {i}\\',
                    "ok": i % 2 == 0}}
    e["detail"].update(over)
    return e


SETTINGS = dict(
    api="v1", measurement="my readings", tags={"device": "$.detail.device_id", "source": "$.source"},
    fields={"temp": {"path": "$.detail.temp", "type": "float"}, "count": {"path": "$.detail.count", "type": "integer"},
            "label": "$.detail.label", "ok": "$.detail.ok"},
)


async def run(settings: InfluxSettings, events):
    dead = DeadLetterRecorder()
    target = InfluxTarget("r/influx", settings, 10_000, dead)
    await target.start()
    items, ticket = deliveries("r/influx", events)
    target.submit(items)
    ticket.release()
    assert await target.flush(20)
    await target.close()
    return dead, ticket


async def test_points_land_with_escaping_types_and_nanosecond_times(influxdb_url):
    db = await create_db(influxdb_url)
    settings = InfluxSettings(url=influxdb_url, database=db, batch_lines=7, **SETTINGS)
    dead, ticket = await run(settings, [reading(i) for i in range(20)])
    assert ticket.pending == 0 and not dead.failures
    rows = await influx_query(influxdb_url, db, 'SELECT * FROM "my readings" ORDER BY time')
    assert len(rows) == 20
    first = rows[0]
    assert first["time"] == 1795352400123456000  # 2026-11-22T13:00:00.123456Z in ns
    assert first["device"] == "dev 0,x=1" and first["source"] == "iot"
    assert first["temp"] == 20.5 and first["count"] == 0 and first["ok"] is True
    assert first["label"] == 'say "hi" 0\\'
    fields = await influx_query(influxdb_url, db, 'SHOW FIELD KEYS FROM "my readings"')
    assert {f["fieldKey"]: f["fieldType"] for f in fields} == {
        "temp": "float", "count": "integer", "label": "string", "ok": "boolean"}


async def test_partial_write_dead_letters_only_the_conflicting_lines(influxdb_url):
    db = await create_db(influxdb_url)
    settings = InfluxSettings(url=influxdb_url, database=db, batch_lines=100,
                              **dict(SETTINGS, fields={"temp": "$.detail.temp"}))
    await run(settings, [reading(0)])  # temp is a float field from now on
    events = [reading(i) for i in range(1, 11)]
    for i in (3, 7):
        events[i]["detail"]["temp"] = 40  # an integer: a field type conflict in InfluxDB
    events[5]["detail"]["temp"] = None  # no field at all: refused before sending
    dead, ticket = await run(settings, events)
    assert ticket.pending == 0
    assert dead.errors == {3: "InfluxPartialWrite", 7: "InfluxPartialWrite", 5: "InvalidPoint"}
    assert "field type conflict" in next(f.message for f in dead.failures if f.record.offset == 3)
    rows = await influx_query(influxdb_url, db, 'SELECT temp FROM "my readings"')
    assert len(rows) == 1 + 7


async def test_unreachable_database_is_dead_lettered_with_the_reason(influxdb_url):
    settings = InfluxSettings(url=influxdb_url, database="no_such_db", **SETTINGS)
    dead, ticket = await run(settings, [reading(i) for i in range(3)])
    assert ticket.pending == 0
    assert set(dead.errors.values()) == {"Influx404"}
    assert "database not found" in dead.failures[0].message


async def test_v2_request_shape():
    seen = []

    async def write(request: web.Request):
        seen.append((request.path, dict(request.query), dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/api/v2/write", write)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        settings = InfluxSettings(url=f"http://127.0.0.1:{port}", api="v2", org="acme", bucket="telemetry",
                                  token="s3cr3t", **{k: v for k, v in SETTINGS.items() if k != "api"})
        dead, ticket = await run(settings, [reading(i) for i in range(3)])
    finally:
        await runner.cleanup()
    assert ticket.pending == 0 and not dead.failures
    path, query, headers, body = seen[0]
    assert path == "/api/v2/write"
    assert query == {"org": "acme", "bucket": "telemetry", "precision": "ns"}
    assert headers["Authorization"] == "Token s3cr3t" and headers["Content-Encoding"] == "gzip"
    # aiohttp inflates the gzip body for the handler (so it was valid gzip on the wire)
    lines = body.decode().split("\n")
    assert lines[0] == ('my\\ readings,device=dev\\ 0\\,x\\=1,source=iot temp=20.5,count=0i,'
                        'label="say \\"hi\\" 0\\\\",ok=true 1795352400123456000')
    assert len(lines) == 3


async def test_server_errors_are_retried_until_the_write_is_accepted():
    statuses = [503, 429, 204]
    bodies = []

    async def write(request: web.Request):
        bodies.append(await request.read())
        return web.Response(status=statuses[len(bodies) - 1], text="busy" if len(bodies) < 3 else "")

    app = web.Application()
    app.router.add_post("/write", write)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        settings = InfluxSettings(url=f"http://127.0.0.1:{port}", database="db", retry_initial_s=0.05, **SETTINGS)
        dead, ticket = await run(settings, [reading(i) for i in range(4)])
    finally:
        await runner.cleanup()
    assert ticket.pending == 0 and not dead.failures
    assert len(bodies) == 3 and bodies[0] == bodies[2]
