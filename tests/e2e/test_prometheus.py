"""Debian's Prometheus scrapes a running `eventweir demo`, loads deploy/prometheus/rules.yaml, and
the worker dashboard's expressions return data through Prometheus' HTTP API."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import orjson
import pytest
import yaml

from streams.devtools.broker import free_port, wait_for_port
from tests.observability import ROOT, RULES, iter_panels, load_dashboards, load_rules

PROMETHEUS = shutil.which("prometheus")
pytestmark = [pytest.mark.broker,
              pytest.mark.skipif(not PROMETHEUS, reason="prometheus missing: run tests/setup/system-deps.sh")]

# panels of the worker dashboard that a demo worker must fill, but for those that only show failures
EMPTY_IN_THE_DEMO = {"Target failures (S3, Timestream, InfluxDB, HTTP, Kafka)", "Sink errors and back-off",
                     "Records rejected by sinks",
                     # nobody calls the demo's API or changes its rules while Prometheus watches
                     "Rule reloads from the control topic", "API calls by operation", "PutEvents entries",
                     # the demo has no external HTTP service to look rows up in (it joins a table instead)
                     "Lookups by outcome", "Lookup cache hit ratio", "Lookup request latency",
                     # the demo configures no `windows` or `sequence` stage
                     "Window records left out", "Sequence records by outcome",
                     # the demo's buses set no unmatched_topic, and nobody starts a replay
                     "Unmatched events per bus", "Replays",
                     # the demo's room is joined from a Kafka topic (trusted producers): nobody solves a challenge
                     "Bot-protection challenges by outcome"}
VARIABLES = {"$namespace": "e2e", "$instance": ".*", "$room": ".*", "$__rate_interval": "30s"}


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def api(port: int, path: str, **params) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as r:
        body = orjson.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def demo(bootstrap_servers, tmp_path_factory):
    port = free_port()
    folder = tmp_path_factory.mktemp("demo")
    log = folder / "demo.log"
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap_servers)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "demo", "--rate", "300", "--port", str(port),
                                 "--lake", str(folder / "lake")],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port("127.0.0.1", port, 60)
        yield port
    finally:
        stop(proc)
        print(log.read_text()[-2000:])


@pytest.fixture(scope="module")
def prometheus(demo, tmp_path_factory):
    work = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        # the namespace label is what the ServiceMonitor gives every series in a cluster
        "scrape_configs": [{"job_name": "eventweir", "static_configs": [
            {"targets": [f"127.0.0.1:{demo}"], "labels": {"namespace": "e2e"}}]}],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
                             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                             "--log.level=warn"], stdout=subprocess.DEVNULL, stderr=open(work / "log", "wb"),
                            start_new_session=True)
    try:
        wait_for_port("127.0.0.1", port, 30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the port opens before the TSDB is ready (503 until then)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        yield port
    finally:
        stop(proc)


def poll(check, timeout: float, what: str):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = check()
        if not last:
            return
        time.sleep(1)
    pytest.fail(f"{what} after {timeout:.0f}s:\n  " + "\n  ".join(last))


def test_prometheus_scrapes_the_worker(prometheus):
    def target_down():
        targets = api(prometheus, "targets")["activeTargets"]
        return [f"{t['scrapeUrl']}: {t['health']} {t['lastError']}" for t in targets if t["health"] != "up"] or \
            ([] if targets else ["no targets"])
    poll(target_down, 60, "the scrape target is not up")
    poll(lambda: [] if api(prometheus, "query", query='eventweir_records_consumed_total{namespace="e2e"}')["result"]
         else ["no eventweir_records_consumed_total samples"], 90, "no consumption samples")


def test_worker_dashboard_expressions_return_data(prometheus):
    board = load_dashboards()["eventweir-worker.json"]
    panels = [(p["title"], substitute(t["expr"])) for p in iter_panels(board["panels"]) for t in p.get("targets", [])]

    def empty_panels():
        missing = []
        for title, expr in panels:
            result = api(prometheus, "query", query=expr)["result"]  # an invalid expression fails here
            if title not in EMPTY_IN_THE_DEMO and not result:
                missing.append(f"{title}: {expr}")
        return missing
    poll(empty_panels, 120, "dashboard panels without data")


def test_rules_load_and_evaluate_without_errors(prometheus):
    names = {r.get("record") or r.get("alert") for r in load_rules()}

    def unhealthy():
        groups = api(prometheus, "rules")["groups"]
        loaded = {r["name"]: r for g in groups for r in g["rules"]}
        problems = [f"{n}: not loaded" for n in sorted(names - set(loaded))]
        problems += [f"{n}: {r['health']} {r.get('lastError', '')}" for n, r in loaded.items() if r["health"] != "ok"]
        # recording rules over the worker's own metrics have samples (the waiting room is not in the demo)
        for rule in load_rules():
            if "record" in rule and not api(prometheus, "query", query=rule["record"])["result"]:
                problems.append(f"{rule['record']}: no samples")
        return problems
    poll(unhealthy, 60, "rules not healthy")
