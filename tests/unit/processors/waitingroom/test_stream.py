"""The stream side: a batch of join/complete events becomes replies keyed by request id and bus events."""
from __future__ import annotations

import orjson

from processors.core import Event, SourceRecord
from processors.waitingroom.stream import EventOutbox, handle_waitingroom_batch
from tests.waitingroom_support import make_service, redis_prefix, store  # noqa: F401


def batch(bodies, start=0):
    return [Event(SourceRecord("wr.joins", 0, start + i, 0, None, orjson.dumps(b)), b) for i, b in enumerate(bodies)]


async def test_joins_are_answered_keyed_by_request_id_and_replays_are_idempotent(store):
    outbox = EventOutbox()
    svc = await make_service(store, {"sale": {"inlet": {"policy": "manual"}}}, emit=outbox.append)
    bodies = [{"action": "join", "room": "sale", "request_id": f"r{i}"} for i in range(30)]
    bodies.insert(5, {"action": "join", "room": "sale"})  # no request id: dead-lettered
    bodies.insert(9, {"action": "teleport", "room": "sale", "request_id": "x"})
    failures = []
    out = await handle_waitingroom_batch(svc, batch(bodies), failures, reply_target="wr.replies",
                                         bus_target="bus", outbox=outbox)
    replies = [d for d in out if d.target == "wr.replies"]
    bus = [d for d in out if d.target == "bus"]
    assert [f.error for f in failures] == ["invalid_request", "invalid_request"]
    assert "request_id" in failures[0].message and "action" in failures[1].message
    assert len(replies) == 30
    positions = {d.key.decode(): orjson.loads(d.payload)["position"] for d in replies}
    assert sorted(positions.values()) == list(range(1, 31))
    assert all(orjson.loads(d.payload)["request_id"] == d.key.decode() for d in replies)
    assert len(bus) == 30 and {orjson.loads(d.payload)["detail-type"] for d in bus} == {"Queue Joined"}
    env = orjson.loads(bus[0].payload)
    assert env["source"] == "eventweir.waitingroom" and set(env) >= {"version", "id", "time", "region", "resources", "detail"}
    # the same batch replayed after a crash: same positions, no new bus events
    failures2 = []
    again = await handle_waitingroom_batch(svc, batch(bodies), failures2, reply_target="wr.replies",
                                           bus_target="bus", outbox=outbox)
    assert {d.key.decode(): orjson.loads(d.payload)["position"] for d in again if d.target == "wr.replies"} == positions
    assert [d for d in again if d.target == "bus"] == []


async def test_completions_free_slots_and_refusals_are_replies(store):
    outbox = EventOutbox()
    svc = await make_service(store, {"sale": {"inlet": {"policy": "max_active", "max_active": 1}, "inventory": 3}},
                             emit=outbox.append)
    failures = []
    await handle_waitingroom_batch(svc, batch([{"room": "sale", "request_id": f"r{i}"} for i in range(3)]), failures,
                                   reply_target="replies")
    await svc.tick("sale")
    envelope = {"version": "0", "detail-type": "Checkout Completed", "source": "shop",
                "detail": {"action": "complete", "room": "sale", "request_id": "r0"}}
    out = await handle_waitingroom_batch(svc, batch([envelope, {"action": "complete", "room": "sale", "request_id": "r2"}]),
                                         failures, reply_target="replies", bus_target="bus", outbox=outbox)
    assert orjson.loads(out[0].payload)["state"] == "completed"
    assert orjson.loads(out[1].payload)["error"] == "conflict"  # still waiting: cannot complete
    assert [r for r, _, _ in (await svc.tick("sale")).admitted] == ["r1"]
    types = [orjson.loads(d.payload)["detail-type"] for d in out if d.target == "bus"]
    assert "Session Updated" in types and "Queue Admitted" in types
    assert failures == []
