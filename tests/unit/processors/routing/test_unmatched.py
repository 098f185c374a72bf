"""A bus's events that no rule matched go to its unmatched target, whichever way the router routes them."""
from __future__ import annotations

import orjson
import pytest

from processors.core import SourceRecord
from processors.pipeline import Pipeline
from processors.routing.router import UNMATCHED_PREFIX, Route, Router, RouteTarget

UNMATCHED = UNMATCHED_PREFIX + "orders"
EVENTS = [{"source": "shop", "n": 0}, {"source": "other", "n": 1}, {"source": "shop", "n": 2}, {"source": "x", "n": 3}]


class Touch:
    """A stage that changes nothing: the pipeline then routes decoded events (Router.route), not records."""

    def process(self, events, failures):
        return events


def run(routes: list[Route], stages: list, plain: bool):
    router = Router(routes, unmatched=UNMATCHED)
    pipeline = Pipeline({"in": stages}, router)
    records = [SourceRecord("in", 0, i, 0, b"k%d" % i, orjson.dumps(e)) for i, e in enumerate(EVENTS)]
    result = pipeline.run({"in": records}, plain=plain)
    unmatched = [d for d in result.deliveries if d.target == UNMATCHED]
    return [orjson.loads(d.payload)["n"] for d in unmatched], [d.key for d in unmatched], result.matched


SHOP = Route("shop", (RouteTarget("shop/k"),), {"source": ["shop"]})
SHAPED = Route("shaped", (RouteTarget("shaped/k", render=lambda body, *_: b"{}"),), {"source": ["shop"]})


@pytest.mark.parametrize("plain", [True, False])
@pytest.mark.parametrize("stages", [[], [Touch()]], ids=["records", "events"])
@pytest.mark.parametrize("routes", [[SHOP], [SHAPED], [SHOP, SHAPED]], ids=["plain", "transformed", "both"])
def test_only_the_events_no_rule_matched(routes, stages, plain):
    numbers, keys, matched = run(routes, stages, plain)
    assert numbers == [1, 3] and keys == [b"k1", b"k3"]  # as they came, in order
    assert matched[UNMATCHED] == 2


@pytest.mark.parametrize("stages", [[], [Touch()]], ids=["records", "events"])
def test_with_no_rule_every_event_is_unmatched(stages):
    numbers, _, matched = run([], stages, plain=True)
    assert numbers == [0, 1, 2, 3] and matched == {UNMATCHED: 4}


@pytest.mark.parametrize("stages", [[], [Touch()]], ids=["records", "events"])
def test_a_rule_without_a_pattern_leaves_nothing_unmatched(stages):
    numbers, _, matched = run([Route("all", (RouteTarget("all/k"),)), SHOP], stages, plain=True)
    assert numbers == [] and UNMATCHED not in matched


def test_without_an_unmatched_target_nothing_is_added():
    pipeline = Pipeline({"in": []}, Router([SHOP]))
    records = [SourceRecord("in", 0, i, 0, None, orjson.dumps(e)) for i, e in enumerate(EVENTS)]
    result = pipeline.run({"in": records}, plain=True)
    assert not result.deliveries and set(result.matched) == {"shop"}
