"""Every AWS-recorded case in tests/data/conformance must behave as AWS did: the files synced from
../shared/conformance, and the LocalStack input transformer cases kept here."""
import json
from pathlib import Path

import orjson
import pytest

from processors.routing import (
    InvalidEventPatternException,
    RuleSet,
    compile_pattern,
    compile_target_input,
    validate_event,
)

# read at import: its cases are the parameters of a test
_LOCALSTACK = json.loads((Path(__file__).resolve().parents[4] / "tests" / "data" / "conformance"
                          / "eventbridge-input-transformer-localstack-cases.json").read_text())


def _cases(conformance_dir, name):
    return json.loads((conformance_dir / name).read_text())["cases"]


def test_pattern_cases_all_behave_as_on_aws(conformance_dir):
    cases = _cases(conformance_dir, "eventbridge-pattern-cases.json")
    assert len(cases) == 155
    failures = []
    for c in cases:
        try:
            validate_event(c["event"])
            got = compile_pattern(c["event_pattern"]).matches(c["event"])
        except InvalidEventPatternException as e:
            got = ("invalid", e.message)
        want = ("invalid", c["error_message"]) if c["expected"] == "invalid" else c["expected"]
        if got != want:
            failures.append((c["name"], want, got))
    assert not failures


def test_pattern_cases_through_a_ruleset_agree(conformance_dir):
    """The indexed rule set gives the same answers as the single-pattern matcher."""
    cases = [c for c in _cases(conformance_dir, "eventbridge-pattern-cases.json")
             if c["expected"] != "invalid"]
    rules = {c["name"]: c["event_pattern"] for c in cases}
    rs = RuleSet(rules)
    compiled = {n: compile_pattern(p) for n, p in rules.items()}
    for c in cases:
        got = rs.matching(c["event"])
        assert (c["name"] in got) == c["expected"], c["name"]
        assert got == [n for n, p in compiled.items() if p.matches(c["event"])], c["name"]


def _delivers_as_aws_did(c: dict, rule_name: str, rule_arn: str, ingestion_time: str) -> None:
    ti = compile_target_input(input_transformer={
        "InputPathsMap": c.get("input_paths_map", {}), "InputTemplate": c["input_template"]}, target_id="t")
    body = ti.render(c["event"], rule_name, rule_arn, ingestion_time)
    want = c["expected"]
    if "not_delivered" in want:
        assert body is None, c["name"]
    elif "json" in want:
        assert body is not None and orjson.loads(body) == want["json"], c["name"]
    else:
        assert body is not None and body.decode() == want["text"], c["name"]


def test_input_transformer_cases_deliver_aws_bodies(conformance_dir):
    cases = _cases(conformance_dir, "eventbridge-input-transformer-cases.json")
    assert cases
    for c in cases:
        _delivers_as_aws_did(c, "rule", "arn:aws:events:us-east-1:1:rule/rule", "2026-01-01T00:00:00Z")


@pytest.mark.parametrize("case", _LOCALSTACK["cases"], ids=lambda c: c["name"])
def test_localstack_input_transformer_cases_deliver_aws_bodies(case):
    """tests/data/conformance/eventbridge-input-transformer-localstack-cases.json: the cases the shared
    file does not hold (PutTargets' errors are checked through the API: tests/integration/test_eventbridge_api.py)."""
    w = _LOCALSTACK["render_with"]
    _delivers_as_aws_did(case, w["rule_name"], w["rule_arn"], w["ingestion_time"])
