"""deploy/prometheus/rules.yaml: promtool accepts it, each alert fires on the situation it names
(and stays quiet on its healthy twin), each has a runbook line and a README section."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.observability import DEPLOY, RULES, load_rules

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(not PROMTOOL, reason="promtool missing: run tests/setup/system-deps.sh (Debian's prometheus)")

NS = 'namespace="prod", instance="w-0"'
# alert -> (input series, eval time, expected extra labels or None for "no alert", $value as rendered)
CASES = {
    "EventweirDeadLetters": [
        ([(f'eventweir_dead_letters_total{{{NS}, stage="decode", error="invalid_json"}}', "0 0 3 5 5")], "3m",
         {"stage": "decode", "error": "invalid_json"}, None),
        ([(f'eventweir_dead_letters_total{{{NS}, stage="decode", error="invalid_json"}}', "4x10")], "8m", None, None),
    ],
    "EventweirConsumerLagGrowing": [
        ([(f'eventweir_consumer_lag{{{NS}, topic="t", partition="0"}}', "20000+1000x40")], "25m", {}, None),
        ([(f'eventweir_consumer_lag{{{NS}, topic="t", partition="0"}}', "50000x40")], "25m", None, None),
        ([(f'eventweir_consumer_lag{{{NS}, topic="t", partition="0"}}', "100+10x40")], "25m", None, None),
    ],
    "EventweirSinkFailing": [
        ([(f'eventweir_target_deliveries_total{{{NS}, target="lake", outcome="failed"}}', "0+10x20")], "12m",
         {"target": "lake"}, None),
        ([(f'eventweir_target_deliveries_total{{{NS}, target="lake", outcome="delivered"}}', "0+10x20")], "12m", None, None),
    ],
    "EventweirNoProgress": [
        ([(f'eventweir_records_consumed_total{{{NS}, topic="t"}}', "100x30"),
          (f'eventweir_consumer_lag{{{NS}, topic="t", partition="0"}}', "500x30")], "25m", {}, None),
        ([(f'eventweir_records_consumed_total{{{NS}, topic="t"}}', "100+50x30"),
          (f'eventweir_consumer_lag{{{NS}, topic="t", partition="0"}}', "500x30")], "25m", None, None),
    ],
    "EventweirRebalanceStorm": [
        ([(f'eventweir_rebalances_total{{{NS}, kind="assigned"}}', "0+1x30"), (f"eventweir_ready{{{NS}}}", "1x30")],
         "25m", {}, None),
        ([(f'eventweir_rebalances_total{{{NS}, kind="assigned"}}', "3x30"), (f"eventweir_ready{{{NS}}}", "1x30")],
         "25m", None, None),
    ],
    "EventweirWaitingRoomStalled": [
        ([(f'eventweir_waitingroom_waiting{{{NS}, room="launch"}}', "40x30"),
          (f'eventweir_waitingroom_admitted_total{{{NS}, room="launch"}}', "5x30")], "25m", {"room": "launch"}, "40"),
        ([(f'eventweir_waitingroom_waiting{{{NS}, room="launch"}}', "40x30"),
          (f'eventweir_waitingroom_admitted_total{{{NS}, room="launch"}}', "5+5x30")], "25m", None, None),
    ],
    "EventweirEventLoopLag": [
        ([(f"eventweir_event_loop_lag_seconds{{{NS}}}", "0.8x20")], "15m", {"instance": "w-0"}, None),
        ([(f"eventweir_event_loop_lag_seconds{{{NS}}}", "0.01x20")], "15m", None, None),
    ],
}


def alerts() -> dict[str, dict]:
    return {r["alert"]: r for r in load_rules() if "alert" in r}


def render(template: str, labels: dict, value: str | None) -> str:
    out = re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels[m.group(1)], template)
    if "$value" in out:
        assert value is not None, f"give the expected $value for {template!r}"
        out = re.sub(r"\{\{\s*\$value\s*\}\}", value, out)
    return out


def promtool(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_promtool_check_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in result.stdout


def test_every_alert_is_tested_has_a_runbook_line_and_a_readme_section():
    readme = (DEPLOY / "README.md").read_text()
    assert set(CASES) == set(alerts()), "each alert needs a firing case here"
    for name, rule in alerts().items():
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"] and notes["runbook"], name
        assert rule["labels"]["severity"] in {"warning", "critical"}
        anchor = notes["runbook_url"].split("#")[1]
        assert notes["runbook_url"].startswith("deploy/README.md#") and anchor == name.lower()
        assert re.search(rf"^#+ .*`?{name}`?", readme, re.M), f"deploy/README.md has no section for {name}"


def test_alerts_fire_on_their_situation_and_not_on_the_healthy_twin(tmp_path):
    tests = []
    for name, cases in CASES.items():
        rule = alerts()[name]
        for series, at, labels, value in cases:
            expected = []
            if labels is not None:
                all_labels = {"namespace": "prod", **labels, **rule["labels"]}
                expected = [{"exp_labels": all_labels,
                             "exp_annotations": {k: render(v, all_labels, value) for k, v in rule["annotations"].items()}}]
            tests.append({"interval": "1m", "name": f"{name} at {at}",
                          "input_series": [{"series": s, "values": v} for s, v in series],
                          "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": expected}]})
    # the HPA's hold metric: the number of ready workers while lag grows, 0 when it does not
    lag = lambda values: {"series": 'eventweir_consumer_lag{namespace="prod", topic="t", partition="0"}', "values": values}  # noqa: E731
    # w-2 is running but not ready (catching up): it counts as a replica all the same
    ready = [{"series": f'eventweir_ready{{namespace="prod", instance="w-{i}"}}', "values": v}
             for i, v in enumerate(["1x20", "1x20", "0x20"])]
    for values, want in (("100+100x20", 3), ("100x20", 0)):
        tests.append({"interval": "1m", "input_series": [lag(values), *ready], "promql_expr_test": [
            {"expr": "eventweir:scale_down_hold:replicas", "eval_time": "10m",
             "exp_samples": [{"labels": 'eventweir:scale_down_hold:replicas{namespace="prod"}', "value": want}]}]})
    spec = tmp_path / "rules_test.yaml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}))
    result = promtool("test", "rules", str(spec))
    assert result.returncode == 0, result.stdout + result.stderr
