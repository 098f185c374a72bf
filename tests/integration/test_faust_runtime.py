"""The faust-streaming runtime as users meet it: `eventweir run --runtime faust`, and
`EventweirProcessor` inside a faust app of their own. (The shared end-to-end assertions for
both runtimes are in test_worker_e2e.py.)"""
from __future__ import annotations

import asyncio
import os
import signal
import sys

import orjson
import pytest

from tests.integration.kafka_helpers import committed_offsets, create_topics, produce, read_all, unique, wait_for

faust = pytest.importorskip("faust", reason="faust-streaming is the `faust` extra")
pytestmark = pytest.mark.broker
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _faust_data_in_tmp(tmp_path, monkeypatch):
    """faust keeps a `<app id>-data` folder in the working directory: not in the repository."""
    monkeypatch.chdir(tmp_path)


async def test_cli_runs_the_config_on_faust_and_commits_on_sigterm(bootstrap_servers, tmp_path):
    src, hot, dlq, group = unique("in"), unique("hot"), unique("dlq"), unique("g")
    config = tmp_path / "config.yaml"
    config.write_text(f"""
kafka: {{bootstrap_servers: "{bootstrap_servers}", group_id: {group}}}
consumer: {{commit_interval_ms: 100, fetch_timeout_ms: 50}}
http: {{host: 127.0.0.1, port: 0}}
dead_letter: {{topic: {dlq}}}
sources: [{{topic: {src}}}]
rules:
  - name: hot
    EventPattern: {{temperature: [{{numeric: [">", 30]}}]}}
    targets: [{{id: out, type: kafka, topic: {hot}}}]
""")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streams.cli", "run", "--runtime", "faust", "-c", str(config), "--create-topics",
        "--partitions", "2", cwd=tmp_path, env={**os.environ, "PYTHONPATH": ROOT},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_for(lambda: _topic_exists(bootstrap_servers, src), timeout=30, message="--create-topics")
        await produce(bootstrap_servers, src, [{"n": i, "temperature": 20 + i % 20} for i in range(200)])
        got = await read_all(bootstrap_servers, hot, expect=90, timeout=60)
        assert sorted(orjson.loads(m.value)["n"] for m in got) == [i for i in range(200) if 20 + i % 20 > 30]
        await asyncio.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    committed = await committed_offsets(bootstrap_servers, group, src)
    assert sum(o or 0 for o in committed.values()) == 200  # the final commit on SIGTERM covers everything


async def _topic_exists(bootstrap, topic) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return topic in await admin.list_topics()
    finally:
        await admin.close()


async def test_eventweir_processor_routes_and_enriches_inside_a_users_faust_agent(bootstrap_servers):
    from processors.enrich import ReferenceJoin, ReferenceTable
    from streams.config import parse_config
    from streams.runtime.faust import EventweirProcessor, make_app

    src, alerts, dlq, group = unique("in"), unique("alerts"), unique("dlq"), unique("g")
    await create_topics(bootstrap_servers, src, alerts, dlq, partitions=2)
    devices = ReferenceTable("site", {"d1": {"site": "ams", "owner": "ops"}, "d2": {"site": "rtm", "owner": "lab"}})
    processor = EventweirProcessor.from_rules(
        {"hot": {"pattern": {"temperature": [{"numeric": [">", 30]}]}, "topic": alerts}},
        stages={src: [ReferenceJoin(devices, "device_id", ["site"], into="site")]},
        dead_letter_topic=dlq)
    app = make_app(parse_config({"kafka": {"bootstrap_servers": bootstrap_servers, "group_id": group},
                                 "sources": [{"topic": src}]}, environ={}))
    seen = []

    @app.agent(app.topic(src, key_serializer="raw", value_serializer="raw"))
    async def route(stream):
        async for events in stream.take_events(100, within=0.1):
            result = await processor.process(app, events)
            seen.append(len(result.deliveries))

    values = [orjson.dumps({"device_id": f"d{1 + i % 2}", "temperature": 25 + i % 10}) for i in range(40)]
    values.insert(5, b"{not json")
    await produce(bootstrap_servers, src, values)
    await app.start()
    try:
        got = await read_all(bootstrap_servers, alerts, expect=16, timeout=60)
        dead = await read_all(bootstrap_servers, dlq, expect=1, timeout=30)
    finally:
        await app.stop()
    bodies = [orjson.loads(m.value) for m in got]
    assert len(bodies) == 16 and all(b["temperature"] > 30 for b in bodies)
    assert {(b["device_id"], b["site"]["site"]) for b in bodies} == {("d1", "ams"), ("d2", "rtm")}
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert dead[0].value == b"{not json"
    assert headers["eventweir-error"] == "invalid_json" and headers["eventweir-source-topic"] == src


def test_from_rules_rejects_a_rule_without_a_topic():
    from streams.runtime.faust import EventweirProcessor

    with pytest.raises(ValueError, match=r"rules\[hot\]: expected .*'topic'"):
        EventweirProcessor.from_rules({"hot": {"pattern": {"a": [1]}}})


def test_stateful_enrichment_is_refused_on_faust_with_what_to_do():
    from streams.config import ConfigError, parse_config
    from streams.runtime.faust import FaustWorker

    config = parse_config({"kafka": {"bootstrap_servers": "127.0.0.1:9", "group_id": "g"}, "dead_letter": {"topic": "d"},
                           "sources": [{"topic": "clicks", "kind": "clickstream", "enrich": [
                               {"type": "user_agent"}, {"type": "sessions"}]}]}, environ={})
    with pytest.raises(ConfigError, match=r"sources\[0\]\.enrich\[1\] \(sessions\): .*run without --runtime faust"):
        FaustWorker(config)


async def test_a_failing_agent_stops_the_worker_with_the_cause_instead_of_hanging(bootstrap_servers):
    """A bug outside the stages (they dead-letter what they choke on) kills faust's agent. The
    worker must then exit with the cause, so that its supervisor restarts it, rather than stay
    up consuming nothing."""
    from streams.config import parse_config
    from streams.runtime.faust import FaustWorker

    src, dlq, group = unique("in"), unique("dlq"), unique("g")
    await create_topics(bootstrap_servers, src, dlq, partitions=1)
    config = parse_config({"kafka": {"bootstrap_servers": bootstrap_servers, "group_id": group},
                           "consumer": {"fetch_timeout_ms": 50}, "dead_letter": {"topic": dlq},
                           "sources": [{"topic": src}], "rules": []}, environ={})

    class BrokenPipeline:
        tables: dict = {}

        def run(self, records_by_topic):
            raise ZeroDivisionError("a bug in the pipeline")

    worker = FaustWorker(config, pipeline=BrokenPipeline())
    await produce(bootstrap_servers, src, [{"n": 1}])
    with pytest.raises(RuntimeError, match="faust agent stopped") as err:
        await asyncio.wait_for(worker.run(), 60)
    assert isinstance(err.value.__cause__, ZeroDivisionError)


def test_lag_does_not_make_the_faust_worker_unready_unless_a_limit_is_set():
    """ready_max_lag is off by default; with lag known, /readyz (and the final offsets update
    at shutdown) used to fail comparing the lag with None."""
    from aiokafka import TopicPartition

    from streams.config import parse_config
    from streams.runtime.faust import FaustWorker

    def worker(runtime):
        w = FaustWorker(parse_config({"kafka": {"bootstrap_servers": "127.0.0.1:1", "group_id": unique("g")},
                                      "sources": [{"topic": "t"}], "runtime": runtime}, environ={}))
        w.joined = True
        w.stats.lag = {TopicPartition("t", 0): 500}
        return w

    assert worker({}).ready[0] is True
    ready, why = worker({"ready_max_lag": 100}).ready
    assert not ready and "500 records behind" in why
