"""A worker whose rule set reads records only as far as its rules read (engines/partial.py), on the
real broker: plain targets get the records' own bytes and keys, a key path decodes the events
that reach it, bad records are dead letters, and the metric says which decoder read how many."""
from __future__ import annotations

import orjson
import pytest
from prometheus_client import REGISTRY

from processors.routing import RuleSet
from tests.integration.kafka_helpers import create_topics, produce, read_all, unique, wait_for
from tests.integration.test_worker_e2e import config_for, start_worker, stop_worker

pytestmark = pytest.mark.broker

HOT = {"detail": {"kind": ["hot"]}}


def routed(engine: str, decoder: str) -> float:
    return REGISTRY.get_sample_value("eventweir_routed_events_total", {"engine": engine, "decoder": decoder}) or 0.0


async def test_records_are_routed_on_their_bytes_once_the_partial_decoder_is_chosen(bootstrap_servers, monkeypatch):
    # short trials, and the partial ways win them (on real traffic they win by their timings)
    for name, value in (("TRIAL_EVERY", 1), ("TRIAL_WARMUP", 5), ("TRIAL_TIMED", 20), ("PARTIAL_EVERY", 1),
                        ("PARTIAL_WARMUP", 5), ("PARTIAL_TIMED", 20), ("PARTIAL_MARGIN", 100.0)):
        monkeypatch.setattr(RuleSet, name, value)
    src, hot, keyed, dlq, group = unique("pr-in"), unique("pr-hot"), unique("pr-keyed"), unique("pr-dlq"), unique("pr-g")
    await create_topics(bootstrap_servers, src, hot, keyed, dlq)
    # odd spacing and key order: a re-serialised event would differ from its record's bytes
    values = [b'{ "pad": "%s", "detail": {"n": %d,  "kind": "%s"}}' % (b"x" * (i % 40), i, b"hot" if i % 2 else b"cold")
              for i in range(600)]
    beyond = b'{"detail": {"kind": "hot", "n": 7}, "q": 1e400}'  # valid JSON; orjson cannot hold 1e400
    values += [beyond, b"{not json"]
    await produce(bootstrap_servers, src, values, keys=[b"k%d" % i for i in range(len(values))])
    before = {d: routed("index", d) + routed("bitmask", d) for d in ("msgspec", "orjson")}

    config = config_for(bootstrap_servers, src, {}, dlq, group, rules=[
        {"name": "hot", "event_pattern": HOT, "targets": [{"id": "out", "type": "kafka", "topic": hot}]},
        {"name": "keyed", "event_pattern": HOT,
         "targets": [{"id": "out", "type": "kafka", "topic": keyed, "key": "$.detail.n"}]}])
    worker, task, _ = await start_worker(config)
    got_hot = await read_all(bootstrap_servers, hot, expect=301)
    got_keyed = await read_all(bootstrap_servers, keyed, expect=300)
    dead = await read_all(bootstrap_servers, dlq, expect=2)
    await wait_for(lambda: sum(o or 0 for o in worker.stats.committed.values()) == len(values), message="commits")
    ruleset = worker.pipeline.router.ruleset
    decoder = ruleset.decoder
    await stop_worker(worker, task)

    assert decoder in ("partial-index", "partial-bitmask")
    hot_values = [v for v in values[:600] if b'"hot"' in v] + [beyond]
    assert sorted(m.value for m in got_hot) == sorted(hot_values)  # the records' own bytes
    assert {m.key for m in got_hot} == {b"k%d" % i for i in range(1, 600, 2)} | {b"k600"}
    assert sorted(int(m.key) for m in got_keyed) == list(range(1, 600, 2))
    assert all(orjson.loads(m.value)["detail"]["n"] == int(m.key) for m in got_keyed)
    reasons = {}
    for m in dead:
        headers = {k: v.decode() for k, v in m.headers}
        reasons[m.value] = (headers["eventweir-stage"], headers["eventweir-error"], headers["eventweir-message"])
    assert reasons[b"{not json"][:2] == ("decode", "invalid_json")
    assert reasons[beyond][:2] == ("transform", "TransformFailed")
    assert "beyond the double range" in reasons[beyond][2]
    after = {d: routed("index", d) + routed("bitmask", d) for d in ("msgspec", "orjson")}
    assert after["msgspec"] - before["msgspec"] > 300  # most of the events after the short trials
    assert after["msgspec"] + after["orjson"] - before["msgspec"] - before["orjson"] == 601
