"""EVENTWEIR_NO_FASTPATH=1: every aiokafka patch stays off and routing generates no code."""
from __future__ import annotations

import subprocess
import sys

SCRIPT = """
from aiokafka.consumer import fetcher
from streams.kafka.fastpath import fetch_records
from streams.config import parse_config
from streams.runtime.topology import build_router
shipped = fetcher.FetchResult
print(fetch_records.install(), fetcher.FetchResult is shipped)
config = parse_config({"sources": [{"topic": "in"}], "rules": [
    {"name": "hot", "EventPattern": {"detail": {"t": [{"numeric": [">", 30]}]}}, "targets": [{"id": "l", "type": "log"}]}]},
    environ={})
print(build_router(config).ruleset.engine)
"""


def run(env_value):
    env = {"PATH": "/usr/bin:/bin", "EVENTWEIR_NO_FASTPATH": env_value}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True)
    return out.stdout.split()


def test_the_switch_turns_every_fast_path_off():
    assert run("1") == ["False", "True", "reference"]


def test_without_the_switch_the_fast_paths_are_on():
    installed, untouched, engine = run("")
    assert (installed, untouched) == ("True", "False") and engine in ("choosing", "index", "bitmask")
