"""eventweir's fast paths: patches of aiokafka internals, each checking the aiokafka it patches
(fetch_records.py, produce_request.py; consumer_record.py is not a speed-up but the record shape
the processors read, so it always applies), and the routing engines' generated code.

One switch turns them off: EVENTWEIR_NO_FASTPATH=1 leaves aiokafka as shipped and routes with the
reference matcher. Slower, never different: use it to rule the fast paths in or out of a fault.
"""
from __future__ import annotations

import os


def enabled() -> bool:
    """False when EVENTWEIR_NO_FASTPATH is set to 1 (or true, yes, on)."""
    return os.environ.get("EVENTWEIR_NO_FASTPATH", "").strip().lower() not in ("1", "true", "yes", "on")


def routing_engine() -> str:
    """The RuleSet engine to ask for: "auto" (generated code, timed), or "reference" when switched off."""
    return "auto" if enabled() else "reference"
