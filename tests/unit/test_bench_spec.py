"""The benchmark is fair only if every contender computes the same thing: the peers' Python
predicates must match exactly the events eventweir's EventBridge patterns match."""
import importlib.util
import sys
from pathlib import Path

import orjson

from processors.routing import RuleSet

PEERS = Path(__file__).resolve().parents[1] / "bench" / "peers"


def load_spec():
    sys.path.insert(0, str(PEERS))
    spec_ = importlib.util.spec_from_file_location("bench_spec", PEERS / "spec.py")
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)
    return module


def test_predicates_agree_with_the_patterns_on_generated_traffic():
    spec = load_spec()
    ruleset = RuleSet({name: pattern for name, _, pattern, _ in spec.RULES})
    data = spec.dataset(6000, seed=3)
    hits = {name: 0 for name, *_ in spec.RULES}
    for kind, records in data.items():
        for _, value in records:
            body = orjson.loads(value)
            by_pattern = set(ruleset.matching(body))
            by_predicate = {name for name, k, _, pred in spec.RULES if k == kind and pred(body)}
            assert by_pattern == by_predicate, (kind, body, by_pattern, by_predicate)
            for name in by_pattern:
                hits[name] += 1
    # the data exercises the rules: all but the never-matching firmware rule match something
    assert [name for name, n in hits.items() if n == 0] == ["iot-old-firmware"]
    assert len(spec.reference_rows()) == 10_000
