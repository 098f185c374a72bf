"""The generated engines as code a person can debug: their source lines show in tracebacks, and
the engine a rule set uses is named in an attribute and in one log line."""
import logging
import traceback

import pytest

from processors.routing import RuleSet, compile_pattern, conditions
from processors.routing.kinds import Kind

RULES = {"r": {"kind": ["k"], "v": [{"cidr": "10.0.0.0/8"}]}, "s": {"kind": ["k"], "n": [{"numeric": [">", 1]}]}}


def _failing_on(bad, pred):
    """`pred`, except that it raises on the value `bad`."""
    def failing(value):
        if value == bad:
            raise RuntimeError(f"predicate failed on {value!r}")
        return pred(value)
    return failing


@pytest.mark.parametrize("engine", ["index", "bitmask"])
def test_a_traceback_through_generated_code_shows_the_generated_lines(engine, monkeypatch):
    build = conditions.build_predicate
    def failing_cidr(kind, arg):
        return _failing_on("10.6.6.6", build(kind, arg)) if kind is Kind.CIDR else build(kind, arg)
    monkeypatch.setattr(conditions, "build_predicate", failing_cidr)
    rs = RuleSet(RULES, engine=engine, compile_after=1)
    assert rs.matching({"kind": "k", "v": "10.1.2.3", "n": 2}) == ["r", "s"]
    with pytest.raises(RuntimeError) as info:
        rs.matching({"kind": "k", "v": "10.6.6.6", "n": 2})
    frames = traceback.extract_tb(info.value.__traceback__)
    generated = [f for f in frames if f.filename.startswith("<eventweir-")]
    assert generated, [f.filename for f in frames]
    assert all(f.line for f in generated), [(f.filename, f.lineno, f.line) for f in generated]
    # the innermost generated frame is the line that called the condition's predicate
    assert "predicate_" in generated[-1].line
    assert generated[-1].line in "".join(traceback.format_exception(info.value))


@pytest.mark.parametrize("engine", ["index", "bitmask"])
def test_the_engine_asked_for_is_set_and_logged_once(engine, caplog):
    with caplog.at_level(logging.INFO, logger="processors.routing.ruleset"):
        rs = RuleSet(RULES, engine=engine)
        assert rs.matching({"kind": "k", "v": "10.1.2.3"}) == ["r"]
    assert rs.engine == engine
    logged = [r for r in caplog.records if r.name == "processors.routing.ruleset"]
    assert len(logged) == 1 and f"engine {engine}" in logged[0].getMessage()


def test_the_engine_a_trial_picks_is_set_and_logged_once_with_its_timings(monkeypatch, caplog):
    monkeypatch.setattr(RuleSet, "TRIAL_EVERY", 2)
    monkeypatch.setattr(RuleSet, "TRIAL_WARMUP", 5)
    monkeypatch.setattr(RuleSet, "TRIAL_TIMED", 20)
    compiled = {n: compile_pattern(p) for n, p in RULES.items()}
    with caplog.at_level(logging.INFO, logger="processors.routing.ruleset"):
        rs = RuleSet(RULES)
        assert rs.engine == "choosing" and rs.trial_medians_ns is None
        for i in range(200):
            ev = {"kind": "k", "v": f"10.0.0.{i % 7}" if i % 3 else "192.168.0.1", "n": i % 4}
            assert rs.matching(ev) == [n for n, p in compiled.items() if p.matches(ev)]
    assert rs.engine in ("index", "bitmask")
    assert rs.trial_medians_ns is not None and all(t > 0 for t in rs.trial_medians_ns)
    logged = [r.getMessage() for r in caplog.records if r.name == "processors.routing.ruleset"]
    assert len(logged) == 1, logged
    assert f"engine {rs.engine}" in logged[0] and "timing trial" in logged[0] and "index" in logged[0]


def test_a_rule_set_past_the_bit_mask_limit_logs_why_it_runs_the_index_engine(caplog):
    from processors.routing.engines.bitmask import MAX_CLAUSES

    with caplog.at_level(logging.INFO, logger="processors.routing.ruleset"):
        rs = RuleSet({f"r{i}": {"id": [f"v{i}"]} for i in range(MAX_CLAUSES + 1)})
    assert rs.engine == "index"
    logged = [r.getMessage() for r in caplog.records if r.name == "processors.routing.ruleset"]
    assert len(logged) == 1 and f"more than {MAX_CLAUSES} clauses" in logged[0]


def test_the_reference_engine_generates_no_code_and_agrees_with_the_fast_ones():
    # EVENTWEIR_NO_FASTPATH=1 routes with it: slower, never different
    from processors.routing import RuleSet

    rules = {"hot": {"detail": {"t": [{"numeric": [">", 30]}]}}, "eu": {"region": [{"prefix": "eu-"}]},
             "any": {"source": [{"exists": True}]}}
    events = [{"source": "s", "region": "eu-west-1", "detail": {"t": 31}}, {"region": "us-east-1", "detail": {"t": 3}},
              {"detail": {"t": [1, 40]}}]
    reference = RuleSet(rules, engine="reference")
    assert reference.engine == "reference" and reference.source == ""
    for engine in ("index", "bitmask"):
        fast = RuleSet(rules, engine=engine)
        assert [fast.matching(e) for e in events] == [reference.matching(e) for e in events]
    assert [reference.matching(e) for e in events] == [["hot", "eu", "any"], [], ["hot"]]
