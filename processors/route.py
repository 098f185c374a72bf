"""Deprecated: the router moved to processors/routing/router.py. This module re-exports it so
that `from processors.route import Router, Route, RouteTarget, parse_key_path, extract_key` keeps
working for one release; import from `processors.routing.router` (or `processors.routing`)."""
from __future__ import annotations

import warnings

from processors.routing.router import STAGE, Route, Router, RouteTarget, extract_key, ingestion_time, parse_key_path

warnings.warn("processors.route is deprecated: import from processors.routing.router",
              DeprecationWarning, stacklevel=2)

__all__ = ["STAGE", "Route", "RouteTarget", "Router", "extract_key", "ingestion_time", "parse_key_path"]
