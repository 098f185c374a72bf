"""PII masking in a real worker: no clear email, user id or IP reaches the lake, the output topic,
the dead-letter topic or the logs, whichever way an event goes (delivered, rejected by the schema,
not JSON, failing after masking, failing at a target)."""
from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import logging

import orjson
import pytest

from streams.config import parse_config
from streams.devtools.broker import free_port
from streams.runtime.worker import Worker
from streams.service import run_worker
from tests.integration.kafka_helpers import create_topics, produce, read_all, unique, wait_for
from tests.integration.test_s3_sink import jsonl, lake_objects, new_bucket

pytestmark = pytest.mark.broker
KEY = "0123456789abcdef-pii-key-for-tests"


def click(i: int, **changes) -> dict:
    event = {"event_id": f"e{i}", "event_name": "purchase" if i % 10 == 0 else "page_view",
             "anonymous_id": f"anon-{i:04d}-cookie", "user_id": f"user{i:04d}@example.com", "platform": "web",
             "timestamp": f"2026-11-22T13:{i % 60:02d}:07Z",
             "ip": f"198.51.{i // 250}.{i % 250 + 1}" if i % 2 else f"2001:db8:77:{i:x}:1:2:3:{i + 1:x}",
             "properties": {"email": f"buyer{i:04d}@mail.example", "cart": [{"sku": "s1", "email": f"gift{i:04d}@x.example"}]}}
    event.update(changes)
    return event


async def test_no_masked_value_reaches_the_lake_the_output_topic_the_dead_letters_or_the_logs(
        bootstrap_servers, s3_endpoint, tmp_path, caplog):
    src, out, dlq, group = unique("clicks"), unique("out"), unique("dlq"), unique("g")
    await create_topics(bootstrap_servers, src, out, dlq, partitions=2)
    bucket = new_bucket(s3_endpoint)
    good = [click(i) for i in range(120)]
    invalid = [click(1000 + i, platform="fax") for i in range(5)]  # rejected by the schema, before masking
    bot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    late_failures = [click(2000 + i, user_agent=bot) for i in range(5)]  # dead-lettered by enrichment, after masking
    not_json = [b'{"user_id": "user9999@example.com", "ip": "203.0.113.99",']  # cannot be parsed, so not masked
    everything = good + invalid + late_failures
    await produce(bootstrap_servers, src, [*everything, *not_json])

    key_file = tmp_path / "pii-key"
    key_file.write_text(KEY + "\n")
    config = parse_config({
        "kafka": {"bootstrap_servers": bootstrap_servers, "group_id": group},
        "consumer": {"commit_interval_ms": 100, "fetch_timeout_ms": 50},
        "http": {"host": "127.0.0.1", "port": 0},
        "dead_letter": {"topic": dlq},
        "routing": {"http_allow_networks": ["127.0.0.0/8"]},
        "sources": [{"topic": src, "kind": "clickstream", "mask": {
            "hmac_secret": "${PII_HMAC_KEY}",  # from PII_HMAC_KEY_FILE
            "fields": {"properties.email": {"method": "hmac", "length": 16}, "properties.cart.email": "redact"}},
            "enrich": [{"type": "user_agent", "drop_bots": True}]}],
        "rules": [
            {"name": "lake", "targets": [{"id": "s3", "type": "s3", "bucket": bucket, "endpoint_url": s3_endpoint,
                                          "region": "us-east-1", "flush_size": 40, "flush_interval_s": 1}]},
            {"name": "copy", "targets": [{"id": "out", "type": "kafka", "topic": out}]},
            {"name": "debug", "targets": [{"id": "log", "type": "log"}]},
            {"name": "purchases", "event_pattern": {"detail": {"event_name": ["purchase"]}},
             "targets": [{"id": "down", "type": "http", "url": f"http://127.0.0.1:{free_port()}/",
                          "retry_policy": {"MaximumRetryAttempts": 0}}]},
        ],
    }, environ={"PII_HMAC_KEY_FILE": str(key_file)})

    caplog.set_level(logging.DEBUG)
    worker = Worker(config)
    task = asyncio.create_task(run_worker(config, worker))
    purchases = sum(1 for e in good if e["event_name"] == "purchase")
    expect_dead = len(invalid) + len(late_failures) + len(not_json) + purchases
    try:
        copied = await read_all(bootstrap_servers, out, expect=len(good), timeout=60)
        dead = await read_all(bootstrap_servers, dlq, expect=expect_dead, timeout=60)

        def lake_records():
            return [r for key, body in lake_objects(s3_endpoint, bucket).items() for r in jsonl(body, key)]
        await wait_for(lambda: len(lake_records()) >= len(good), timeout=60, message="the lake")
        objects = lake_objects(s3_endpoint, bucket)
    finally:
        worker.request_stop()
        assert await asyncio.wait_for(task, 30) == 0

    # everything arrived where it should, masked
    assert len(copied) == len(good) and len(dead) == expect_dead
    lake = [r for key, body in objects.items() for r in jsonl(body, key)]
    assert sorted(r["id"] for r in lake) == sorted(e["event_id"] for e in good)
    first = next(r["detail"] for r in lake if r["id"] == "e1")
    assert first["user_id"] == hmac.new(KEY.encode(), b"user0001@example.com", hashlib.sha256).hexdigest()
    assert first["ip"] == "198.51.0.0" and first["properties"]["cart"] == [{"sku": "s1", "email": "[REDACTED]"}]
    assert len(first["properties"]["email"]) == 16
    assert next(r["detail"]["ip"] for r in lake if r["id"] == "e2") == "2001:db8:77::"
    by_stage: dict[str, int] = {}
    for m in dead:
        headers = dict(m.headers)
        stage = headers["eventweir-stage"].decode()
        by_stage[stage] = by_stage.get(stage, 0) + 1
        assert headers["eventweir-masked"] in (b"mask", b"withhold")
        if stage == "decode":
            assert m.value is None  # not JSON: withheld
        else:
            assert orjson.loads(m.value)["user_id"] != "" and m.value.count(b"@example.com") == 0
    assert by_stage == {"decode": 1, "validate": len(invalid), "enrich": len(late_failures), "deliver": purchases}

    # and no clear value anywhere: lake objects, output topic, dead letters (values and headers), logs
    clear = [e[f] for e in everything for f in ("user_id", "anonymous_id", "ip")]
    clear += [e["properties"]["email"] for e in everything] + [e["properties"]["cart"][0]["email"] for e in everything]
    clear += ["user9999@example.com", "203.0.113.99", KEY]
    lake_text = [gzip.decompress(body) if key.endswith(".gz") else body for key, body in objects.items()]
    seen = b"\n".join([*lake_text, *(m.value for m in copied),
                       *(m.value or b"" for m in dead), *(v for m in dead for _, v in m.headers)]).decode()
    logs = caplog.text
    assert "e1" in seen and "debug/log" in logs  # the search reads what was written
    leaked = [value for value in clear if value in seen or value in logs]
    assert leaked == []
