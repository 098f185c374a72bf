"""Real servers for the suite, started once per run on free ports.

KAFKA_BOOTSTRAP_SERVERS points the suite at an external broker instead of Tansu.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.devtools.broker import free_port, start_tansu, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT / "tests" / "data" / "conformance"  # vendored; synced from ../shared/conformance


@pytest.fixture(scope="session")
def bootstrap_servers():
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    broker = start_tansu()
    yield broker.bootstrap_servers
    broker.stop()


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto server speaking the S3 (and Timestream) APIs on a free port."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    wait_for_port("127.0.0.1", port, 30)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def conformance_dir():
    return CONFORMANCE


@pytest.fixture(scope="session")
def influxdb_url(tmp_path_factory):
    """Debian's InfluxDB 1.x server (`influxd`) on free ports with a throw-away data directory."""
    import shutil
    import urllib.request

    binary = shutil.which("influxd")
    if binary is None:
        pytest.skip("influxd not found: install Debian's `influxdb` package (tests/setup/system-deps.sh does)")
    root = tmp_path_factory.mktemp("influxdb")
    port, rpc = free_port(), free_port()
    conf = root / "influxdb.conf"
    conf.write_text(
        f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
        f'[meta]\n  dir = "{root}/meta"\n'
        f'[data]\n  dir = "{root}/data"\n  wal-dir = "{root}/wal"\n  query-log-enabled = false\n'
        f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
    )
    proc = subprocess.Popen([binary, "-config", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_for_port("127.0.0.1", port, 30)
    for _ in range(100):  # the port opens before the server answers
        try:
            urllib.request.urlopen(url + "/ping", timeout=1)
            break
        except OSError:
            import time

            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)
