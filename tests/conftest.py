"""Real servers for the suite, started once per run on free ports.

KAFKA_BOOTSTRAP_SERVERS points the suite at an external broker instead of Tansu.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.broker import free_port, start_tansu, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT.parent / "shared" / "conformance"


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
    if not CONFORMANCE.is_dir():
        pytest.skip(f"conformance data not found at {CONFORMANCE} (it lives in the workplace's shared/ folder)")
    return CONFORMANCE
