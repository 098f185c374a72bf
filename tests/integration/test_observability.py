"""Dashboards and alert rules against a running worker's /metrics.

A worker runs on the real broker and processes good and poison records, so its labelled metrics
have samples; every module of `streams.metrics` is imported first, so families declared elsewhere
(waiting room, sinks) are exported too, with their HELP/TYPE lines. The check then lists, by name
and place, every dashboard/rule name the worker does not export and every exported family that has
no panel and is not in deploy/grafana/unpanelled.txt.
"""
from __future__ import annotations

import importlib
import pkgutil

import aiohttp
import pytest

import streams.metrics
from tests.integration.kafka_helpers import create_topics, produce, read_all, unique, wait_for
from tests.integration.test_worker_e2e import config_for, start_worker, stop_worker
from tests.observability import compare, exported_families

pytestmark = pytest.mark.broker


def import_metric_modules() -> list[str]:
    """Every module of streams.metrics, the one place metrics are declared."""
    names = ["streams.metrics"] + [m.name for m in pkgutil.walk_packages(streams.metrics.__path__, "streams.metrics.")]
    for name in names:
        importlib.import_module(name)
    return names


@pytest.fixture(scope="module")
async def scrape(bootstrap_servers):
    assert "streams.metrics" in import_metric_modules()
    src, out, dlq, group = unique("obs-in"), unique("obs-out"), unique("obs-dlq"), unique("obs-g")
    await create_topics(bootstrap_servers, src, out, dlq)
    worker, task, info = await start_worker(config_for(bootstrap_servers, src, {"all": out}, dlq, group))
    await produce(bootstrap_servers, src, [{"n": i} for i in range(50)] + [b"{not json", b"[1]"])
    await read_all(bootstrap_servers, out, expect=50)
    await read_all(bootstrap_servers, dlq, expect=2)
    # lag and committed offsets are refreshed on the commit tick
    await wait_for(lambda: sum(o or 0 for o in worker.stats.committed.values()) == 52, message="commits")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{info['port']}/metrics") as r:
            assert r.status == 200
            text = await r.text()
    await stop_worker(worker, task)
    return text


async def test_running_worker_exports_what_it_did(scrape):
    families = exported_families(scrape)
    # the scrape is from a worker that really worked: the core families carry samples, not just HELP lines
    for sample in ("eventweir_records_consumed_total", "eventweir_records_produced_total",
                   "eventweir_dead_letters_total", "eventweir_rule_matches_total", "eventweir_consumer_lag",
                   "eventweir_committed_offset", "eventweir_batch_processing_seconds_bucket",
                   "eventweir_routed_events_total"):
        assert f"\n{sample}{{" in scrape or f"\n{sample} " in scrape, f"{sample} has no sample in the scrape"
    assert "eventweir_waitingroom_waiting" in families  # declared in streams.metrics.waitingroom, HELP/TYPE only


async def test_dashboards_and_rules_match_the_worker_metrics(scrape):
    problems = compare(scrape)
    assert not problems, "dashboards/rules and /metrics disagree:\n  " + "\n  ".join(problems)
