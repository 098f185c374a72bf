"""The AWS-recorded conformance cases, vendored under tests/data/conformance so that a clone of the
repo alone runs them (../shared/conformance stays the source they are synced from)."""
from __future__ import annotations

from pathlib import Path

import pytest

VENDORED = Path(__file__).resolve().parents[2] / "data" / "conformance"


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    """Overrides tests/conftest.py's fixture: the vendored copy, which is always present."""
    assert VENDORED.is_dir(), f"conformance data missing at {VENDORED}"
    return VENDORED
