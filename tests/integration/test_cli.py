"""The CLI as a user runs it: publish with validation, and a worker refusing a bad config."""
from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from tests.integration.kafka_helpers import create_topics, read_all, unique

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*args, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, input=input,
                          capture_output=True, timeout=120)


@pytest.mark.broker
async def test_publish_validates_against_the_schema_and_reports_rejected_lines(bootstrap_servers, tmp_path):
    topic = unique("iot")
    await create_topics(bootstrap_servers, topic, partitions=2)
    good = [{"device_id": f"sensor-{i}", "timestamp": 1732530000000 + i, "measurements": {"temperature": 20.5}}
            for i in range(50)]
    lines = [orjson.dumps(g) for g in good]
    lines.insert(10, b'{"device_id": "sensor-x", "measurements": {"temperature": 1}}')  # line 11: no timestamp
    lines.insert(20, b"not json")  # line 21
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    done = cli("publish", "--topic", topic, "--schema", "iot", "--key", "$.device_id",
               "--bootstrap-servers", bootstrap_servers, str(path))
    err = done.stderr.decode()
    assert done.returncode == 1, err  # something was rejected: a script can tell
    assert "line 11: schema_invalid" in err and "timestamp" in err
    assert "line 21: invalid_json" in err
    assert "published 50 records" in err and "rejected 2" in err

    got = await read_all(bootstrap_servers, topic, expect=50)
    assert sorted(orjson.loads(m.value)["device_id"] for m in got) == sorted(g["device_id"] for g in good)
    assert all(m.key == orjson.loads(m.value)["device_id"].encode() for m in got)


def test_worker_refuses_a_bad_config_naming_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("sources:\n  - topic: in\n    kind: telemetry\nconsumer:\n  max_batch_records: lots\n")
    done = cli("run", "-c", str(path))
    err = done.stderr.decode()
    assert done.returncode == 2
    assert "sources[0].kind" in err and "'iot'" in err
    assert "consumer.max_batch_records" in err and "'lots'" in err


def test_worker_explains_an_unreachable_broker(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("kafka:\n  bootstrap_servers: 127.0.0.1:1\nsources:\n  - topic: in\nhttp:\n  port: 0\n")
    done = cli("run", "-c", str(path))
    assert done.returncode == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in done.stderr.decode()
