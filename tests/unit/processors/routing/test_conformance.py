"""Every AWS-recorded case in tests/data/conformance (synced from ../shared/conformance) must behave as AWS did."""
import json

import orjson

from processors.routing import (
    InvalidEventPatternException,
    RuleSet,
    compile_pattern,
    compile_target_input,
    validate_event,
)


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


def test_input_transformer_cases_deliver_aws_bodies(conformance_dir):
    cases = _cases(conformance_dir, "eventbridge-input-transformer-cases.json")
    assert cases
    for c in cases:
        ti = compile_target_input(input_transformer={
            "InputPathsMap": c["input_paths_map"], "InputTemplate": c["input_template"]})
        body = ti.render(c["event"], "rule", "arn:aws:events:us-east-1:1:rule/rule", "2026-01-01T00:00:00Z")
        want = c["expected"]
        if "not_delivered" in want:
            assert body is None, c["name"]
        elif "json" in want:
            assert orjson.loads(body) == want["json"], c["name"]
        else:
            assert body.decode() == want["text"], c["name"]
