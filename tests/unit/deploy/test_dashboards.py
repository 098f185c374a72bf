"""deploy/grafana: the committed dashboards are what generate.py writes, every panel is scoped by
the namespace and instance variables, and provisioning points at the dashboards folder."""
from __future__ import annotations

import importlib.util
import re

import yaml

from tests.observability import DASHBOARDS, DEPLOY, iter_panels, load_dashboards


def generator():
    spec = importlib.util.spec_from_file_location("grafana_generate", DEPLOY / "grafana" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_dashboards_are_the_generated_ones():
    rendered = generator().render()
    committed = {p.name: p.read_text() for p in DASHBOARDS.glob("*.json")}
    assert committed == rendered, "deploy/grafana/dashboards is stale: run python deploy/grafana/generate.py"


def test_template_variables_and_panel_scoping():
    for name, board in load_dashboards().items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert {"datasource", "namespace", "instance"} <= set(variables), name
        ids = [p["id"] for p in iter_panels(board["panels"])]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in iter_panels(board["panels"]):
            for target in panel.get("targets", []):
                expr = target["expr"]
                assert "$namespace" in expr, f"{name}: {panel['title']!r} ignores $namespace"
                # recording rules are per namespace; raw metrics must honour the instance filter too
                if re.search(r"\beventweir_\w+\{", expr) or "process_" in expr:
                    assert "$instance" in expr, f"{name}: {panel['title']!r} ignores $instance"


def test_worker_dashboard_covers_what_the_issue_lists():
    titles = {p["title"] for p in iter_panels(load_dashboards()["eventweir-worker.json"]["panels"])}
    for wanted in ("Records in per topic", "Records out per topic", "Consumer lag per partition",
                   "Batch processing time", "Rule matches per rule", "Deliveries per target",
                   "Dead letters by stage and error", "Delivery latency per target (p99)", "In flight per target",
                   "Target failures (S3, Timestream, InfluxDB, HTTP, Kafka)", "Event-loop lag", "Rebalances"):
        assert wanted in titles


def test_provisioning_files():
    dashboards = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "eventweir.yaml").read_text())
    assert dashboards["providers"][0]["type"] == "file" and dashboards["providers"][0]["options"]["path"]
    sources = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    assert sources["datasources"][0]["type"] == "prometheus"
