"""The vendored AWS-recorded cases (tests/data/conformance) are the workplace's shared copy, unchanged."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
VENDORED = ROOT / "tests" / "data" / "conformance"
SHARED = ROOT.parent / "shared" / "conformance"


def test_the_vendored_cases_are_there_for_a_clone_alone():
    cases = sorted(p.name for p in VENDORED.glob("*.json"))
    assert cases == ["eventbridge-input-transformer-cases.json", "eventbridge-input-transformer-localstack-cases.json",
                     "eventbridge-pattern-cases.json"]


@pytest.mark.skipif(not SHARED.is_dir(), reason="no shared/conformance beside this clone to compare with")
def test_the_vendored_cases_match_the_shared_source():
    for source in sorted(SHARED.glob("*.json")):
        copy = VENDORED / source.name
        assert copy.is_file() and copy.read_bytes() == source.read_bytes(), (
            f"{copy} differs from {source}: run `make sync-conformance`")
