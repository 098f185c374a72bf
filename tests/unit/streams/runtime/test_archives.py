"""Archives and replays as routing: which rule sees a replayed event, decided on real routers."""
from __future__ import annotations

import json

import orjson

from streams.config import parse_config
from streams.runtime.archives import StoredArchive, StoredReplay, stamp, with_archives
from streams.runtime.topology import build_router

EVENT = {"version": "0", "id": "1", "detail-type": "d", "source": "shop", "account": "000000000000",
         "time": "2026-01-01T00:00:00Z", "region": "local", "resources": [], "detail": {"n": 1}}


def config(rules):
    return parse_config({"sources": [{"topic": "bus", "kind": "envelope"}], "buses": [{"name": "orders"}],
                         "rules": rules}, environ={})


def rule(name, pattern=None, bus=None):
    return {"name": name, "targets": [{"id": "l", "type": "log"}],
            **({"EventPattern": pattern} if pattern is not None else {}), **({"EventBusName": bus} if bus else {})}


def replay(name, rules=(), bus="default"):
    return StoredReplay(name, "a", bus, tuple(rules), (), 0.0, 1.0, "", "RUNNING", 0.0)


def matching(cfg, archives, replays, event, bus=None):
    router = build_router(cfg, with_archives(cfg, list(cfg.rules), archives, replays), bus)
    return sorted(r.rule for r in router.matching(event))


def test_replayed_events_reach_the_rules_their_replay_names_and_never_the_archive():
    cfg = config([rule("first", {"source": ["shop"]}), rule("second", {"source": ["shop"]}), rule("catch-all"),
                  rule("mine", {"replay-name": [{"exists": True}]}), rule("on-orders", {"source": ["shop"]}, "orders")])
    archives = {"a": StoredArchive("a", "default", "t", {"source": ["shop"]}, 1, "", 0.0)}
    replays = {"r1": replay("r1", ["first"]), "r2": replay("r2")}
    assert matching(cfg, archives, replays, EVENT) == ["Events-Archive-a", "catch-all", "first", "second"]
    assert matching(cfg, archives, replays, {**EVENT, "replay-name": "r1"}) == ["first", "mine"]
    assert matching(cfg, archives, replays, {**EVENT, "replay-name": "r2"}) == ["catch-all", "first", "mine", "second"]
    assert matching(cfg, archives, replays, {**EVENT, "replay-name": "unknown"}) == ["mine"]
    # another bus without archive or replay is routed as before
    assert matching(cfg, archives, replays, {**EVENT, "replay-name": "r1"}, "orders") == ["on-orders"]


def test_a_bus_without_archives_or_replays_keeps_its_rules_as_written():
    cfg = config([rule("catch-all")])
    assert with_archives(cfg, list(cfg.rules), {}, {}) == list(cfg.rules)


def test_replay_name_sits_after_region_as_aws_delivers_it():
    out = orjson.loads(stamp(orjson.dumps(EVENT), "fix-1"))
    assert list(out) == ["version", "id", "detail-type", "source", "account", "time", "region", "replay-name",
                         "resources", "detail"]
    assert out["replay-name"] == "fix-1"
    assert orjson.loads(stamp(orjson.dumps(out), "again"))["replay-name"] == "again"  # replayed twice: the last name
    # whatever the writer's spacing and key order, and whatever the strings hold
    for event in ({**EVENT, "source": 'say "region":"x"', "region": 'a\\"b'}, {"detail": {"region": "x"}, **EVENT},
                  {"region": "x"}, {"detail": {}, "source": "s"}):
        for raw in (orjson.dumps(event), json.dumps(event).encode(), json.dumps(event, indent=1).encode()):
            stamped = orjson.loads(stamp(raw, "r"))
            assert stamped == {**event, "replay-name": "r"}
            keys = list(stamped)
            assert keys.index("replay-name") == (keys.index("region") + 1 if "region" in keys else len(keys) - 1)


def test_a_replay_survives_the_control_topic_round_trip():
    stored = StoredReplay("r", "a", "default", ("first",), ("arn:x",), 1.5, 2.5, "d", "RUNNING", 1.0,
                          positions={0: 7, 2: 3}, done=(1,), owner="w", lease_until=9.0)
    assert StoredReplay.from_json(stored.to_json()) == stored
