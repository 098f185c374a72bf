"""Deletes on flattened Debezium topics (issue 21 item 3): with ExtractNewRecordState's defaults a
delete arrives only as a tombstone. `sources[].tombstones: delete` routes it as `<table>.deleted`
with the key; skipped tombstones are counted. On the real broker, through the worker."""
from __future__ import annotations

import orjson
import pytest
from prometheus_client import REGISTRY

from streams.config import parse_config
from tests.integration.kafka_helpers import create_topics, produce, read_all, unique, wait_for
from tests.integration.test_worker_e2e import start_worker, stop_worker

pytestmark = pytest.mark.broker


def config(bootstrap, sources, out, dlq):
    return parse_config({
        "kafka": {"bootstrap_servers": bootstrap, "group_id": unique("g")},
        "consumer": {"commit_interval_ms": 100, "fetch_timeout_ms": 50}, "http": {"host": "127.0.0.1", "port": 0},
        "dead_letter": {"topic": dlq}, "sources": sources,
        "rules": [{"name": "changes", "EventPattern": {"source": ["eventweir.cdc"]},
                   "targets": [{"id": "out", "type": "kafka", "topic": out}]}],
    }, environ={})


async def test_a_flattened_delete_is_routed_and_a_skipped_one_counted(bootstrap_servers):
    flat, skipping = unique("inventory.customers"), unique("inventory.orders")
    out, dlq = unique("out"), unique("dlq")
    await create_topics(bootstrap_servers, flat, skipping, out, dlq, partitions=1)
    cfg = config(bootstrap_servers, [{"topic": flat, "kind": "cdc", "tombstones": "delete"},
                                     {"topic": skipping, "kind": "cdc"}], out, dlq)
    key = orjson.dumps({"id": 1004})
    await produce(bootstrap_servers, flat, [{"id": 1004, "email": "anne@example.com"}, None], keys=[key, key])
    await produce(bootstrap_servers, skipping, [None, None], keys=[key, key])

    def skipped() -> float:
        return REGISTRY.get_sample_value("eventweir_tombstones_skipped_total", {"topic": skipping}) or 0.0

    before = skipped()
    worker, task, _ = await start_worker(cfg)
    try:
        events = [orjson.loads(r.value) for r in await read_all(bootstrap_servers, out, expect=2)]
        await wait_for(lambda: skipped() - before == 2, message="the skipped tombstones counted")
    finally:
        await stop_worker(worker, task)
    table = flat.rsplit(".", 1)[-1]
    # a flattened row says no more than that it changed; its delete, only that it is gone
    assert [e["detail-type"] for e in events] == [f"{table}.updated", f"{table}.deleted"]
    deleted = events[1]["detail"]
    assert deleted["key"] == {"id": 1004} and deleted["op"] == "d" and deleted["tombstone"] is True
    assert [r.value for r in await read_all(bootstrap_servers, dlq, idle=0.5)] == []


def test_delete_is_for_cdc_sources_only():
    with pytest.raises(Exception, match=r"sources\[0\]: tombstones: `delete` makes <table>\.deleted events of kind cdc"):
        parse_config({"sources": [{"topic": "t", "kind": "json", "tombstones": "delete"}]}, environ={})
