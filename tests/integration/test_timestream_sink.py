"""The timestream target against moto's Timestream API (in-process server, so what it stored can be read)."""
from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import boto3
import orjson
import pytest
from aiohttp import web

from streams.targets.timestream import TimestreamSettings, TimestreamTarget
from tests.integration.sink_helpers import DeadLetterRecorder, deliveries


@pytest.fixture(scope="module")
def timestream():
    import os

    from moto.server import ThreadedMotoServer
    from moto.timestreamwrite.models import timestreamwrite_backends

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"

    def table():
        db, name = f"db{uuid.uuid4().hex[:6]}", "readings"
        client = boto3.client("timestream-write", endpoint_url=endpoint, region_name="us-east-1")
        client.create_database(DatabaseName=db)
        client.create_table(DatabaseName=db, TableName=name)
        stored = timestreamwrite_backends["123456789012"]["us-east-1"].databases[db].tables[name].records
        return db, name, stored

    yield endpoint, table
    server.stop()


def now_iso(offset_s: float = 0) -> str:
    return datetime.fromtimestamp(time.time() + offset_s, UTC).isoformat().replace("+00:00", "Z")


def reading(i: int, site: str = "paris", **detail) -> dict:
    d = {"device_id": f"dev-{i}", "temp": 20.5 + i, "count": i, "ok": True, "version": 3}
    d.update(detail)
    return {"time": now_iso(-60), "source": "iot", "detail": d, "site": site}


MAPPING = dict(
    region="us-east-1",
    dimensions={"site": "$.site", "source": "$.source"},
    measures=[{"name": "temp", "path": "$.detail.temp", "type": "DOUBLE"},
              {"name": "count", "path": "$.detail.count", "type": "BIGINT"},
              {"name": "ok", "path": "$.detail.ok", "type": "BOOLEAN"}],
    version_path="$.detail.version",
)


async def run(settings, events):
    dead = DeadLetterRecorder()
    target = TimestreamTarget("r/ts", settings, 10_000, dead)
    await target.start()
    items, ticket = deliveries("r/ts", events)
    target.submit(items)
    ticket.release()
    assert await target.flush(20)
    await target.close()
    return dead, ticket


async def test_multi_records_with_common_attributes_in_requests_of_100(timestream):
    endpoint, table = timestream
    db, name, stored = table()
    settings = TimestreamSettings(database=db, table=name, endpoint_url=endpoint, **MAPPING)
    events = [reading(i) for i in range(250)]
    dead, ticket = await run(settings, events)
    assert ticket.pending == 0 and not dead.failures
    assert len(stored) == 250
    record = next(r for r in stored if r["MeasureValues"][1]["Value"] == "7")
    # every event shares the dimensions and measure name: they went in CommonAttributes
    assert "Dimensions" not in record and "MeasureName" not in record
    assert record["MeasureValues"] == [{"Name": "temp", "Value": "27.5", "Type": "DOUBLE"},
                                       {"Name": "count", "Value": "7", "Type": "BIGINT"},
                                       {"Name": "ok", "Value": "true", "Type": "BOOLEAN"}]
    assert record["Version"] == 3
    assert abs(int(record["Time"]) - (time.time() - 60) * 1000) < 60_000


async def test_single_measure_mode_and_differing_dimensions(timestream):
    endpoint, table = timestream
    db, name, stored = table()
    settings = TimestreamSettings(database=db, table=name, endpoint_url=endpoint, measure_mode="single",
                                  **{k: v for k, v in MAPPING.items() if k != "version_path"})
    dead, ticket = await run(settings, [reading(0, site="paris"), reading(1, site="lyon")])
    assert ticket.pending == 0 and not dead.failures
    assert len(stored) == 6  # three measures each
    assert {(r["MeasureName"], r["MeasureValue"]) for r in stored} >= {("temp", "20.5"), ("count", "1")}
    assert {d["Value"] for r in stored for d in r["Dimensions"] if d["Name"] == "site"} == {"paris", "lyon"}


async def test_limit_violations_are_dead_lettered_before_sending(timestream):
    endpoint, table = timestream
    db, name, stored = table()
    settings = TimestreamSettings(database=db, table=name, endpoint_url=endpoint, max_age_s=3600, **MAPPING)
    events = [reading(i) for i in range(8)]
    events[1]["time"] = now_iso(20 * 60)  # more than 15 minutes ahead
    events[2]["site"] = "x" * 3000  # dimension value over 2 KB
    events[3]["detail"]["temp"] = "hot"  # not a DOUBLE
    events[4]["detail"]["count"] = 2**63  # does not fit BIGINT
    events[5]["time"] = now_iso(-2 * 3600)  # older than the memory store retention
    events[6]["detail"] = {"version": 1}  # no measures at all
    dead, ticket = await run(settings, events)
    assert ticket.pending == 0
    assert dead.errors == {i: "TimestreamLimit" for i in range(1, 7)}
    messages = {f.record.offset: f.message for f in dead.failures}
    assert "15 minutes in the future" in messages[1] and "2048 bytes" in messages[2]
    assert "expected a number" in messages[3] and "BIGINT" in messages[4] and "retention" in messages[5]
    assert len(stored) == 2


async def test_rejected_records_map_back_to_their_events_with_reason_and_existing_version():
    """moto never rejects records, so a small HTTP server answers with RejectedRecordsException."""
    requests = []

    async def handler(request: web.Request):
        body = orjson.loads(await request.read())
        requests.append(body)
        rejected = [{"RecordIndex": i, "Reason": "A record with a higher version exists", "ExistingVersion": 9}
                    for i, _ in enumerate(body["Records"]) if i % 4 == 1]
        return web.json_response({"__type": "RejectedRecordsException", "message": "rejected",
                                  "RejectedRecords": rejected}, status=400)

    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        settings = TimestreamSettings(database="db", table="t", endpoint_url=f"http://127.0.0.1:{port}", **MAPPING)
        dead, ticket = await run(settings, [reading(i) for i in range(8)])
    finally:
        await runner.cleanup()
    assert ticket.pending == 0
    assert len(requests) == 1 and requests[0]["CommonAttributes"]["TimeUnit"] == "MILLISECONDS"
    assert dead.errors == {1: "TimestreamRejected", 5: "TimestreamRejected"}
    assert dead.failures[0].message == "A record with a higher version exists (ExistingVersion 9)"


async def test_throttling_is_retried_with_backoff_until_accepted():
    calls = []

    async def handler(request: web.Request):
        calls.append(orjson.loads(await request.read()))
        if len(calls) <= 2:
            return web.json_response({"__type": "ThrottlingException", "message": "slow down"}, status=400)
        return web.json_response({"RecordsIngested": {"Total": len(calls[-1]["Records"])}})

    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        settings = TimestreamSettings(database="db", table="t", endpoint_url=f"http://127.0.0.1:{port}",
                                      retry_initial_s=0.05, **MAPPING)
        dead, ticket = await run(settings, [reading(i) for i in range(5)])
    finally:
        await runner.cleanup()
    assert ticket.pending == 0 and not dead.failures
    assert len(calls) == 3 and calls[0] == calls[2]  # the same request, resent
