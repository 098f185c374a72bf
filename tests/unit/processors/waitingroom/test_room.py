"""Room behaviour against a real Redis: joins, ordering, inlet policies, expiry, sessions, restart."""
from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from processors.waitingroom.service import RoomError
from processors.waitingroom.tokens import TokenError
from tests.waitingroom_support import REDIS_URL, FakeClock, make_service, redis_prefix, store  # noqa: F401

MANUAL = {"inlet": {"policy": "manual"}}


async def test_duplicate_concurrent_joins_get_one_position(store):
    svc = await make_service(store, {"sale": MANUAL})
    # 10 request ids, each joined 8 times at once: a retried or replayed join returns the same position
    results = await asyncio.gather(*(svc.join("sale", f"req-{i % 10}") for i in range(80)))
    by_rid: dict[str, set[int]] = {}
    for r in results:
        by_rid.setdefault(r["request_id"], set()).add(r["position"])
    assert all(len(p) == 1 for p in by_rid.values()), by_rid
    assert sorted(p.pop() for p in by_rid.values()) == list(range(1, 11))
    assert sum(1 for r in results if not r["duplicate"]) == 10
    counters = await svc.counters("sale")
    assert counters["waiting"] == 10 and counters["last_position"] == 10


async def test_fifo_order_and_no_gaps_with_50_concurrent_clients(store):
    svc = await make_service(store, {"sale": MANUAL})

    async def client(i: int):
        await asyncio.sleep((i % 7) * 0.001)
        return await svc.join("sale", f"c{i}")

    joined = await asyncio.gather(*(client(i) for i in range(50)))
    positions = sorted(j["position"] for j in joined)
    assert positions == list(range(1, 51))
    # admission follows the positions exactly
    order = sorted(joined, key=lambda j: j["position"])
    for step in range(5):
        await svc.increment_serving("sale", 10)
        for j in order[: (step + 1) * 10]:
            assert (await svc.status("sale", j["request_id"]))["state"] == "admitted"
        for j in order[(step + 1) * 10:]:
            assert (await svc.status("sale", j["request_id"]))["state"] == "waiting"
    assert (await svc.counters("sale"))["serving_counter"] == 50


async def test_status_reports_people_ahead_and_eta(store):
    clock = FakeClock()
    svc = await make_service(store, {"sale": {"inlet": {"policy": "fixed_rate", "rate": 2, "interval_s": 1}}}, clock)
    ids = [(await svc.join("sale", f"u{i}"))["request_id"] for i in range(10)]
    s = await svc.status("sale", ids[9])
    assert s["people_ahead"] == 9 and s["position"] == 10
    assert s["eta_s"] == pytest.approx(10 / 2.0)  # configured rate until one is measured
    await svc.tick("sale")  # the first tick starts the inlet's clock
    for _ in range(3):
        clock.advance(1)
        await svc.tick("sale")
    s = await svc.status("sale", ids[9])
    assert s["people_ahead"] == 3 and s["serving_counter"] == 6
    assert s["eta_s"] == pytest.approx(4 / 2.0, rel=0.01)


async def test_fixed_rate_inlet_admits_n_per_interval(store):
    clock = FakeClock()
    svc = await make_service(store, {"sale": {"inlet": {"policy": "fixed_rate", "rate": 30, "interval_s": 60}}}, clock)
    for i in range(100):
        await svc.join("sale", f"u{i}")
    await svc.tick("sale")  # first tick only starts the clock of the inlet
    total = 0
    for _ in range(20):  # 2 minutes in 6 s steps
        clock.advance(6)
        total += len((await svc.tick("sale")).admitted)
    assert total == 60


async def test_max_active_inlet_refills_freed_slots(store):
    svc = await make_service(store, {"sale": {"inlet": {"policy": "max_active", "max_active": 3}}})
    joined = [await svc.join("sale", f"u{i}") for i in range(6)]
    ids = [j["request_id"] for j in joined]
    # nobody waits while there is room: the first three are admitted by their join, the rest queue
    assert [j["state"] for j in joined] == ["admitted"] * 3 + ["waiting"] * 3
    assert len((await svc.tick("sale")).admitted) == 0  # full
    await svc.access_token("sale", ids[0])
    await svc.update_session("sale", ids[0], "completed")
    await svc.update_session("sale", ids[1], "abandoned")
    res = await svc.tick("sale")
    assert [rid for rid, _, _ in res.admitted] == ids[3:5]
    assert (await svc.counters("sale"))["active_tokens"] == 3


async def test_pause_resume_and_manual_increment(store):
    clock = FakeClock()
    svc = await make_service(store, {"sale": {"inlet": {"policy": "fixed_rate", "rate": 10, "interval_s": 1}}}, clock)
    for i in range(40):
        await svc.join("sale", f"u{i}")
    await svc.tick("sale")
    await svc.set_paused("sale", True)
    clock.advance(2)
    assert (await svc.tick("sale")).admitted == []
    # the admin can still admit by hand while paused
    assert (await svc.increment_serving("sale", 4))["admitted"] == 4
    await svc.set_paused("sale", False)
    clock.advance(1)
    assert len((await svc.tick("sale")).admitted) == 10  # no credit piled up during the pause


async def test_schedule_window_prequeue_and_close(store):
    clock = FakeClock(1_800_000_000)
    room = {"inlet": {"policy": "max_active", "max_active": 100},
            "schedule": {"start": 1_800_000_100, "end": "2027-06-01T00:00:00Z"}}
    svc = await make_service(store, {"sale": room}, clock)
    rid = (await svc.join("sale", "early"))["request_id"]
    assert (await svc.tick("sale")).admitted == []  # before the start: pre-queue only
    assert (await svc.status("sale", rid))["phase"] == "pre"
    clock.advance(100)
    assert [a[0] for a in (await svc.tick("sale")).admitted] == ["early"]
    clock.t = 1_800_000_000 + 10**8  # after the end
    with pytest.raises(RoomError) as err:
        await svc.join("sale", "late")
    assert err.value.code == "closed"


async def test_inventory_caps_admissions_then_sold_out(store):
    svc = await make_service(store, {"sale": {"inlet": {"policy": "max_active", "max_active": 100}, "inventory": 5,
                                              "paused": True}})
    ids = [(await svc.join("sale", f"u{i}"))["request_id"] for i in range(8)]
    await svc.set_paused("sale", False)
    assert len((await svc.tick("sale")).admitted) == 5
    assert len((await svc.increment_serving("sale", 10)).keys()) and (await svc.counters("sale"))["admitted_total"] == 5
    assert (await svc.status("sale", ids[6]))["sold_out"] is True
    with pytest.raises(RoomError) as err:
        await svc.join("sale", "after")
    assert err.value.code == "sold_out"


async def test_priority_classes_and_exempt_bypass_need_a_signed_claim(store):
    secret = "s" * 40
    svc = await make_service(store, {"sale": {**MANUAL, "priority_classes": ["vip", "general"], "claim_secret": secret}})
    vip = jwt.encode({"aud": "sale", "class": "vip", "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    organiser = jwt.encode({"aud": "sale", "exempt": True, "jti": "org-1", "exp": int(time.time()) + 60}, secret,
                           algorithm="HS256")
    forged = jwt.encode({"aud": "sale", "class": "vip", "exp": int(time.time()) + 60}, "x" * 40, algorithm="HS256")
    await svc.join("sale", "g1")
    await svc.join("sale", "g2")
    await svc.join("sale", "v1", vip)
    await svc.join("sale", "g3")
    await svc.join("sale", "v2", vip)
    with pytest.raises(RoomError) as err:
        await svc.join("sale", "cheat", forged)
    assert err.value.code == "forbidden"
    assert (await svc.status("sale", "g1"))["people_ahead"] == 2  # both VIPs are ahead
    res = await svc.increment_serving("sale", 3)
    assert res["admitted"] == 3
    states = {r: (await svc.status("sale", r))["state"] for r in ("v1", "v2", "g1", "g2", "g3")}
    assert states == {"v1": "admitted", "v2": "admitted", "g1": "admitted", "g2": "waiting", "g3": "waiting"}
    boss = await svc.join("sale", "boss", organiser)
    assert boss["state"] == "admitted" and boss["position"] == 0
    assert (await svc.access_token("sale", "boss"))["access_token"]


async def test_an_exemption_lets_one_visitor_in_once(store):
    secret = "s" * 40
    svc = await make_service(store, {"sale": {**MANUAL, "claim_secret": secret}})

    def claim(**c):
        return jwt.encode({"aud": "sale", "exp": int(time.time()) + 60, **c}, secret, algorithm="HS256")

    shared = claim(exempt=True, jti="staff-7")
    first = await svc.join("sale", "v0", shared)
    assert first["state"] == "admitted"
    assert (await svc.join("sale", "v0", shared))["state"] == "admitted"  # the same visitor's retry: the same answer
    for i in range(1, 5):  # four more visitors with the same claim: refused, not admitted
        with pytest.raises(RoomError) as err:
            await svc.join("sale", f"v{i}", shared)
        assert err.value.code == "forbidden" and "used" in err.value.message
    for reusable in (claim(exempt=True), claim(exempt=True, jti="staff-8", exp=int(svc.clock()) + 86_400)):
        with pytest.raises(RoomError) as err:  # without a jti, or long-lived: refused outright
            await svc.join("sale", "v9", reusable)
        assert err.value.code == "forbidden"
    assert (await svc.counters("sale"))["exempt"] == 1


async def test_random_method_shuffles_the_prequeue_once(store):
    clock = FakeClock(1_800_000_000)
    room = {"queueing_method": "random", "inlet": {"policy": "manual"}, "schedule": {"start": 1_800_000_010}}
    svc = await make_service(store, {"lottery": room}, clock)
    for i in range(40):
        await svc.join("lottery", f"p{i}")
    clock.advance(10)
    await svc.join("lottery", "after-start")
    await svc.tick("lottery")
    positions = {f"p{i}": (await svc.status("lottery", f"p{i}"))["position"] for i in range(40)}
    assert sorted(positions.values()) == list(range(1, 41))  # a permutation: no gaps, no duplicates
    assert [positions[f"p{i}"] for i in range(40)] != list(range(1, 41))
    assert (await svc.status("lottery", "after-start"))["position"] == 41  # joined after the start: FIFO
    await svc.tick("lottery")  # a second tick (or worker) does not reshuffle
    assert {k: (await svc.status("lottery", k))["position"] for k in positions} == positions


async def test_passthrough_and_reject(store):
    svc = await make_service(store, {"open": {"queueing_method": "passthrough"}, "shut": {"queueing_method": "reject"}})
    j = await svc.join("open", "a")
    assert j["state"] == "admitted" and (await svc.access_token("open", "a"))["access_token"]
    with pytest.raises(RoomError) as err:
        await svc.join("shut", "a")
    assert err.value.code == "closed"


async def test_passthrough_prequeue_goes_in_at_the_start(store):
    clock = FakeClock(1_800_000_000)
    svc = await make_service(store, {"drop": {"queueing_method": "passthrough", "schedule": {"start": 1_800_000_060}}}, clock)
    assert (await svc.join("drop", "early"))["state"] == "waiting"
    await svc.tick("drop")
    assert (await svc.status("drop", "early"))["state"] == "waiting"
    clock.advance(60)
    await svc.tick("drop")
    assert (await svc.status("drop", "early"))["state"] == "admitted"
    assert (await svc.join("drop", "later"))["state"] == "admitted"


async def test_silent_waiter_expires_and_inlet_skips_it(store):
    clock = FakeClock()
    svc = await make_service(store, {"sale": {**MANUAL, "heartbeat_s": 300}}, clock)
    for i in range(3):
        await svc.join("sale", f"u{i}")
    clock.advance(200)
    await svc.status("sale", "u0")
    await svc.status("sale", "u2")  # u1 stops polling
    clock.advance(200)
    res = await svc.increment_serving("sale", 2)
    assert res["admitted"] == 2 and res["expired_positions"] == 1  # the dead place did not use a slot
    assert (await svc.status("sale", "u1"))["state"] == "expired"
    assert (await svc.status("sale", "u2"))["state"] == "admitted"
    with pytest.raises(RoomError) as err:
        await svc.access_token("sale", "u1")
    assert err.value.code == "session_closed"


async def test_waiter_polling_after_the_window_loses_its_place(store):
    clock = FakeClock()
    svc = await make_service(store, {"sale": {**MANUAL, "heartbeat_s": 60}}, clock)
    await svc.join("sale", "u0")
    await svc.join("sale", "u1")
    clock.advance(61)  # no tick ran in between: the status call itself expires it
    assert (await svc.status("sale", "u0"))["state"] == "expired"
    assert (await svc.counters("sale"))["expired_positions"] == 1


async def test_sessions_expire_and_closed_sessions_get_no_token(store):
    clock = FakeClock()
    svc = await make_service(store, {"sale": {**MANUAL, "session_duration_s": 30}}, clock)
    for i in range(3):
        await svc.join("sale", f"u{i}")
    await svc.increment_serving("sale", 3)
    t = await svc.access_token("sale", "u0")
    again = await svc.access_token("sale", "u0")  # re-issue: same session, same expiry
    assert again["expires_at"] == t["expires_at"]
    await svc.update_session("sale", "u1", "completed")
    with pytest.raises(RoomError) as err:
        await svc.access_token("sale", "u1")
    assert err.value.code == "session_closed"
    clock.advance(31)
    res = await svc.tick("sale")
    assert res.expired_sessions == 2  # u0 (token expired) and u2 (never claimed)
    c = await svc.counters("sale")
    assert c["active_tokens"] == 0 and c["expired_tokens"] == 2 and c["completed"] == 1
    with pytest.raises(RoomError):
        await svc.access_token("sale", "u0")


async def test_restart_loses_nothing(store):
    svc = await make_service(store, {"sale": MANUAL})
    for i in range(20):
        await svc.join("sale", f"u{i}")
    await svc.increment_serving("sale", 5)
    token = (await svc.access_token("sale", "u0"))["access_token"]
    await svc.stop()
    # a new worker on the same Redis: same rooms, positions, counters and signing keys
    again = await make_service(store)
    assert set(again.rooms) == {"sale"}
    assert (await again.join("sale", "u7"))["position"] == 8
    assert (await again.join("sale", "new"))["position"] == 21
    assert (await again.status("sale", "u10"))["people_ahead"] == 5
    assert again.verify_access_token(token, "sale")["sub"] == "u0"
    assert (await again.access_token("sale", "u0"))["access_token"]
    assert (await again.counters("sale"))["admitted_total"] == 5


async def test_reset_and_delete(store):
    svc = await make_service(store, {"sale": MANUAL})
    await svc.join("sale", "u0")
    await svc.reset("sale")
    assert (await svc.join("sale", "u1"))["position"] == 1
    await svc.delete_room("sale")
    with pytest.raises(RoomError) as err:
        await svc.join("sale", "u2")
    assert err.value.code == "not_found"
    assert (await make_service(store)).rooms == {}


async def test_bad_request_ids_are_rejected(store):
    svc = await make_service(store, {"sale": MANUAL})
    for bad in ("", "a|b", "x" * 200, 42):
        with pytest.raises(RoomError) as err:
            await svc.join("sale", bad)
        assert err.value.code == "bad_request" and "request_id" in err.value.message


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


async def test_rotation_publishes_the_next_key_before_it_signs_on_every_worker(store):
    clock = FakeClock()
    kw = {"key_grace_s": 120, "jwks_max_age_s": 60, "key_prepublish_s": 300}
    a = await make_service(store, {"sale": MANUAL}, clock, **kw)
    b = await make_service(store, clock=clock, **kw)  # another worker on the same store

    async def admitted_token(svc, rid):
        await svc.join("sale", rid)
        await svc.increment_serving("sale", 1)
        return (await svc.access_token("sale", rid))["access_token"]

    old = await admitted_token(a, "u0")
    rotated = await a.rotate_keys()
    await b.reload()  # what b's inlet loop does when the store's version changes
    nxt = rotated["next_kid"]
    assert rotated["active_kid"] == kid_of(old) != nxt
    for svc in (a, b):  # published at once, so every JWKS cache has it before it signs ...
        assert {k["kid"] for k in svc.jwks()["keys"]} == {kid_of(old), nxt}
    clock.advance(299)
    assert kid_of(await admitted_token(b, "u1")) == kid_of(old)  # ... and it does not sign yet
    clock.advance(2)
    new = await admitted_token(a, "u2")
    assert kid_of(new) == nxt and kid_of(await admitted_token(b, "u3")) == nxt  # both switch at the same time
    assert b.verify_access_token(old, "sale")["sub"] == "u0"  # the old key verifies for its grace period
    clock.advance(121)
    with pytest.raises(TokenError) as err:
        b.verify_access_token(old, "sale")
    assert err.value.reason == "kid"
    assert {k["kid"] for k in b.jwks()["keys"]} == {nxt}
    assert a.verify_access_token(new, "sale")["sub"] == "u2"


async def test_fixed_rate_and_max_active_together(store):
    """Cloudflare's new_users_per_minute with total_active_users: the rate paces admissions and the cap bounds
    the sessions at once, whichever is tighter."""
    clock = FakeClock()
    room = {"inlet": {"policy": "fixed_rate", "rate": 2, "interval_s": 1, "max_active": 3}, "paused": True}
    svc = await make_service(store, {"sale": room}, clock)
    ids = [(await svc.join("sale", f"u{i}"))["request_id"] for i in range(10)]
    await svc.set_paused("sale", False)
    await svc.tick("sale")
    clock.advance(1)
    assert len((await svc.tick("sale")).admitted) == 2  # the rate: 2 a second
    clock.advance(10)  # credit for 20 more, but the cap leaves room for one
    assert len((await svc.tick("sale")).admitted) == 1
    clock.advance(10)
    assert (await svc.tick("sale")).admitted == []
    await svc.access_token("sale", ids[0])
    await svc.update_session("sale", ids[0], "completed")
    assert [rid for rid, _, _ in (await svc.tick("sale")).admitted] == [ids[3]]  # a freed slot is refilled
    assert (await svc.counters("sale"))["active_tokens"] == 3
    assert svc.room_info("sale")["settings"]["inlet"] == {"policy": "fixed_rate", "rate": 2, "interval_s": 1.0,
                                                          "max_active": 3}


async def test_admitted_visitor_who_never_claims_frees_the_slot_after_claim_timeout(store):
    clock = FakeClock()
    room = {"inlet": {"policy": "max_active", "max_active": 1}, "session_duration_s": 600, "claim_timeout_s": 30}
    svc = await make_service(store, {"sale": room}, clock)
    first = (await svc.join("sale", "first"))["request_id"]
    second = (await svc.join("sale", "second"))["request_id"]
    assert (await svc.status("sale", first))["state"] == "admitted"
    clock.advance(29)
    assert (await svc.tick("sale")).admitted == []  # still first's to take
    clock.advance(2)
    res = await svc.tick("sale")
    assert res.expired_sessions == 1 and [rid for rid, _, _ in res.admitted] == [second]
    with pytest.raises(RoomError) as err:
        await svc.access_token("sale", first)
    assert err.value.code == "session_closed"
    # the one who claims in time gets the whole session, not the claim timeout
    token = await svc.access_token("sale", second)
    assert token["expires_in"] == 600
    clock.advance(60)
    assert (await svc.tick("sale")).expired_sessions == 0


async def test_empty_room_admits_at_once(store):
    clock = FakeClock()
    svc = await make_service(store, {"sale": {"inlet": {"policy": "fixed_rate", "rate": 1, "interval_s": 60}}}, clock)
    await svc.tick("sale")  # the inlet is running
    clock.advance(60)
    await svc.tick("sale")
    first = await svc.join("sale", "first")
    assert first["state"] == "admitted"  # no one ahead and credit to spare: no wait for a tick and a poll
    assert (await svc.access_token("sale", first["request_id"]))["access_token"]
    second = await svc.join("sale", "second")
    assert second["state"] == "waiting"  # the rate's credit is spent: the next one waits its turn
    assert (await svc.counters("sale"))["admitted_total"] == 1
    clock.advance(60)
    third = await svc.join("sale", "third")
    assert third["state"] == "waiting"  # credit again, but someone is ahead: the queue keeps its order
    assert [rid for rid, _, _ in (await svc.tick("sale")).admitted] == ["second"]


def _class_of(svc, rid):
    return svc.join("sale", rid)  # a repeated join answers the visitor's place and class, changing nothing


async def test_adding_a_top_class_does_not_promote_those_waiting(store):
    secret = "s" * 40
    svc = await make_service(store, {"sale": {**MANUAL, "claim_secret": secret}})
    for rid in ("g1", "g2"):
        await svc.join("sale", rid)
    await svc.put_room("sale", {**MANUAL, "claim_secret": secret, "priority_classes": ["vip", "general"]})
    assert [(await _class_of(svc, r))["priority_class"] for r in ("g1", "g2")] == ["general", "general"]
    vip = jwt.encode({"aud": "sale", "class": "vip", "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    await svc.join("sale", "v1", vip)
    assert (await svc.status("sale", "g1"))["people_ahead"] == 1  # the new VIP goes first, the rest keep their order
    await svc.increment_serving("sale", 2)
    states = {r: (await svc.status("sale", r))["state"] for r in ("v1", "g1", "g2")}
    assert states == {"v1": "admitted", "g1": "admitted", "g2": "waiting"}


async def test_removing_a_class_with_waiters_needs_a_mapping_and_keeps_their_order(store):
    svc = await make_service(store, {"sale": {**MANUAL, "priority_classes": ["vip", "members", "general"]}})
    store_rank = {"vip": 0, "members": 1, "general": 2}
    # joins in this order: g1 (general), m1 (members), g2, m2 -- written through the store, as claims would
    for rid, cls in (("g1", "general"), ("m1", "members"), ("g2", "general"), ("m2", "members")):
        await store.join("sale", 3, rid, int(svc.clock() * 1000), method="fifo", phase="open",
                         class_rank=store_rank[cls], inventory=-1, exempt=False, claim_ms=600_000)
    with pytest.raises(RoomError) as err:
        await svc.put_room("sale", {**MANUAL, "priority_classes": ["vip", "general"]})
    assert err.value.code == "conflict" and err.value.detail == {"classes_with_waiters": ["members"]}
    assert "members" in err.value.message and "class_mapping" in err.value.message
    assert svc.room_settings("sale").priority_classes == ("vip", "members", "general")  # nothing changed
    assert (await store.load_rooms())["sale"]["priority_classes"] == ["vip", "members", "general"]
    with pytest.raises(RoomError) as err:
        await svc.put_room("sale", {**MANUAL, "priority_classes": ["vip", "general"], "class_mapping": {"members": "x"}})
    assert err.value.code == "bad_request"
    await svc.put_room("sale", {**MANUAL, "priority_classes": ["vip", "general"], "class_mapping": {"members": "general"}})
    # members' waiters are general now, everyone in the order they joined, and all are admitted in turn
    assert [(await _class_of(svc, r))["priority_class"] for r in ("g1", "m1", "g2", "m2")] == ["general"] * 4
    assert [(await svc.status("sale", r))["people_ahead"] for r in ("g1", "m1", "g2", "m2")] == [0, 1, 2, 3]
    res = await svc.increment_serving("sale", 4)
    assert res["admitted"] == 4 and res["waiting"] == 0
    # an empty removed class needs no mapping
    await svc.put_room("sale", {**MANUAL, "priority_classes": ["general"]})
    assert (await svc.counters("sale"))["active_tokens"] == 4


async def test_a_worker_with_the_old_classes_files_joins_under_the_new_ones(store):
    secret = "s" * 40
    room = {**MANUAL, "claim_secret": secret}
    old_worker = await make_service(store, {"sale": room})
    new_worker = await make_service(store)
    await new_worker.put_room("sale", {**room, "priority_classes": ["vip", "general"]})
    # old_worker has not reloaded yet: its join would go to rank 0, now the VIPs' queue
    assert old_worker.room_settings("sale").priority_classes == ("general",)
    joined = await old_worker.join("sale", "late")
    assert joined["priority_class"] == "general" and old_worker.room_settings("sale").priority_classes == ("vip", "general")
    vip = jwt.encode({"aud": "sale", "class": "vip", "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    await new_worker.join("sale", "v1", vip)
    assert (await new_worker.status("sale", "late"))["people_ahead"] == 1


async def test_a_store_outage_longer_than_the_heartbeat_expires_nobody_who_kept_polling(redis_prefix):
    from processors.waitingroom.redis_store import RedisRoomStore
    from tests.waitingroom_support import RedisOutage

    relay = RedisOutage()
    await relay.up()
    store = RedisRoomStore.from_url(relay.url, redis_prefix)
    clock = FakeClock()
    try:
        svc = await make_service(store, {"sale": {**MANUAL, "heartbeat_s": 2}}, clock)
        for rid in ("polling", "gone-quiet"):
            await svc.join("sale", rid)
        await svc.tick("sale")
        await relay.down()  # Redis unreachable for 5 s, over twice the heartbeat
        for _ in range(5):
            clock.advance(1)
            for call in (svc.status("sale", "polling"), svc.tick("sale")):  # the page keeps trying, so does the inlet
                with pytest.raises(OSError):
                    await call
        await relay.up()
        clock.advance(0.5)
        assert (await svc.status("sale", "polling"))["state"] == "waiting"  # the outage did not count
        assert (await svc.tick("sale")).expired_waiters == 0
        assert (await svc.status("sale", "gone-quiet"))["state"] == "waiting"
        # heartbeats still count outside the outage: one who stays silent 2 s after it expires
        clock.advance(1.5)
        await svc.status("sale", "polling")
        clock.advance(1.5)
        await svc.status("sale", "polling")
        res = await svc.tick("sale")
        assert res.expired_waiters == 1
        assert (await svc.status("sale", "gone-quiet"))["state"] == "expired"
        assert (await svc.status("sale", "polling"))["state"] == "waiting"
    finally:
        await store.close()
        if relay.server is not None:
            await relay.down()


async def _others_poll_while_a_goes_quiet(svc, clock, seconds: float, others=("b", "c")) -> None:
    for _ in range(int(seconds // 5)):
        clock.advance(5)
        for rid in others:
            await svc.status("sale", rid)
        await svc.tick("sale")  # the inlet expires the silent
    clock.advance(seconds % 5)
    await svc.tick("sale")


async def test_an_expired_visitor_rejoins_at_the_back_or_within_the_grace_at_the_old_place(store):
    clock = FakeClock()
    room = {**MANUAL, "heartbeat_s": 10, "rejoin_grace_s": 60}
    svc = await make_service(store, {"sale": room}, clock)
    for rid in ("a", "b", "c"):
        await svc.join("sale", rid)
    await _others_poll_while_a_goes_quiet(svc, clock, 11)
    gone = await svc.status("sale", "a")
    assert gone["state"] == "expired" and gone["rejoin"] is True
    assert (await svc.join("sale", "a"))["state"] == "expired"  # a join without the queue token changes nothing
    back = await svc.join("sale", "a", rejoin=True)  # within the grace: the old place, first again
    assert back["state"] == "waiting" and back["position"] == 1 and back["rejoined"] == "place"
    assert (await svc.status("sale", "a"))["people_ahead"] == 0 and (await svc.status("sale", "c"))["people_ahead"] == 2
    # silent again, and back after the grace: a new place at the back
    await _others_poll_while_a_goes_quiet(svc, clock, 85)
    assert (await svc.status("sale", "a"))["state"] == "expired"
    late = await svc.join("sale", "a", rejoin=True)
    assert late["state"] == "waiting" and late["position"] == 4 and late["rejoined"] == "back"
    assert (await svc.status("sale", "a"))["people_ahead"] == 2
    res = await svc.increment_serving("sale", 3)
    assert res["admitted"] == 3 and (await svc.status("sale", "a"))["state"] == "admitted"


async def test_without_a_grace_a_returning_visitor_queues_at_the_back(store):
    clock = FakeClock()
    svc = await make_service(store, {"sale": {**MANUAL, "heartbeat_s": 10}}, clock)
    for rid in ("a", "b"):
        await svc.join("sale", rid)
    await _others_poll_while_a_goes_quiet(svc, clock, 11, others=("b",))
    back = await svc.join("sale", "a", rejoin=True)
    assert back["position"] == 3 and back["rejoined"] == "back" and (await svc.status("sale", "a"))["people_ahead"] == 1


async def test_a_poll_through_a_worker_with_fewer_classes_is_answered_until_it_reloads(store):
    old_worker = await make_service(store, {"sale": MANUAL})
    new_worker = await make_service(store)
    await new_worker.join("sale", "g1")
    await new_worker.put_room("sale", {**MANUAL, "priority_classes": ["a", "b", "c", "d", "general"]})
    s = await old_worker.status("sale", "g1")  # rank 4 now, the old worker knows one queue: no error
    assert s["state"] == "waiting"
    await old_worker.reload()
    assert (await old_worker.status("sale", "g1"))["people_ahead"] == 0


async def test_eta_before_a_scheduled_start_counts_down_to_the_start_plus_the_wait(store):
    clock = FakeClock(1_800_000_000)
    room = {"inlet": {"policy": "fixed_rate", "rate": 1, "interval_s": 1}, "schedule": {"start": 1_800_003_600}}
    svc = await make_service(store, {"sale": room}, clock)
    ids = [(await svc.join("sale", f"early-{i}"))["request_id"] for i in range(3)]
    s = await svc.status("sale", ids[2])
    assert s["eta_s"] == pytest.approx(3600 + 3) and s["event_starts_at"] == 1_800_003_600  # was 3 s: the start ignored
    clock.advance(200)
    assert (await svc.status("sale", ids[2]))["eta_s"] == pytest.approx(3400 + 3)


async def test_no_eta_once_the_schedule_has_ended_or_while_paused(store):
    clock = FakeClock(1_800_000_000)
    room = {"inlet": {"policy": "fixed_rate", "rate": 1, "interval_s": 60}, "schedule": {"end": 1_800_000_100}}
    svc = await make_service(store, {"sale": room}, clock)
    rid = (await svc.join("sale", "waiter-1"))["request_id"]
    await svc.join("sale", "waiter-2")
    rid2 = "waiter-2"
    assert (await svc.status("sale", rid2))["eta_s"] == pytest.approx(120)
    await svc.set_paused("sale", True)
    assert (await svc.status("sale", rid2))["eta_s"] is None  # nobody is let in while paused
    await svc.set_paused("sale", False)
    clock.advance(100)
    s = await svc.status("sale", rid)
    # was 'waiting' with an ETA forever: the room has closed, nobody will be let in
    assert s["phase"] == "closed" and s["eta_s"] is None


async def test_stop_ends_the_inlet_even_when_the_store_swallows_a_cancellation(store):
    # redis-py may catch the CancelledError of a call it is retrying; the inlet then went back to sleep
    # and the server's shutdown (and every test after a store outage) waited for it forever
    class Swallowing(type(store)):
        hang = False

        async def version(self) -> int:
            if self.hang:
                self.hang = False
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:  # once, as redis-py does
                    pass
            return await super().version()

    swallowing = Swallowing.from_url(REDIS_URL, store.prefix)
    inlet = stopping = None
    try:
        service = await make_service(swallowing)
        swallowing.hang = True
        service._task = asyncio.get_running_loop().create_task(service._run_inlet())
        await asyncio.sleep(0.05)  # the inlet is inside version()
        inlet = service._task
        stopping = asyncio.ensure_future(service.stop())
        done, _ = await asyncio.wait({stopping}, timeout=5)
        assert stopping in done and inlet.done(), "the inlet is still running: shutdown would wait for ever"
    finally:
        for task in (inlet, stopping):
            while task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
        await swallowing.close()


async def test_forward_auth_renews_an_active_session_up_to_max_session_s_and_holds_its_slot(store):
    clock = FakeClock()
    room = {"inlet": {"policy": "max_active", "max_active": 1}, "session_duration_s": 10, "max_session_s": 25}
    svc = await make_service(store, {"sale": room}, clock)
    await svc.join("sale", "u0")
    await svc.tick("sale")
    token = (await svc.access_token("sale", "u0"))["access_token"]
    await svc.join("sale", "u1")
    issued = clock.t
    claims = svc.check_access("sale", token)
    assert not svc.renewal_due("sale", claims)  # fresh: nothing to do (and no store call) on most requests
    exps = []
    for _ in range(4):
        clock.advance(6)
        claims = svc.check_access("sale", token)
        if not svc.renewal_due("sale", claims):
            break
        renewed = await svc.renew("sale", token, claims)
        assert renewed is not None and await svc.renew("sale", token, claims) == renewed  # one renewal per token
        token, claims = renewed
        exps.append(claims["exp"] - int(issued))
        assert (await svc.tick("sale")).counters.active == 1  # the slot is still the renewed session's
        assert (await svc.status("sale", "u1"))["state"] == "waiting"
    assert exps == [16, 22, 25]  # now + session_duration_s each time, never past max_session_s from the first issue
    clock.advance(2)  # past max_session_s: the session ends and the next visitor is let in
    await svc.tick("sale")
    with pytest.raises(TokenError):
        svc.check_access("sale", token)
    assert (await svc.status("sale", "u1"))["state"] == "admitted"


async def test_a_session_ended_on_one_worker_is_refused_by_every_worker(store):
    clock = FakeClock()
    room = {"inlet": {"policy": "max_active", "max_active": 5}, "session_duration_s": 600}
    a = await make_service(store, {"sale": room}, clock)
    b = await make_service(store, clock=clock)
    for rid in ("u0", "u1"):
        await a.join("sale", rid)
    await a.tick("sale")
    t0 = (await a.access_token("sale", "u0"))["access_token"]
    t1 = (await a.access_token("sale", "u1"))["access_token"]
    assert b.check_access("sale", t0)["sub"] == "u0"
    await a.end_session("sale", ["not-a-token", t0])  # the valid one of those a request carries
    with pytest.raises(TokenError) as err:
        a.check_access("sale", t0)  # at once on the worker that ended it
    assert err.value.reason == "ended"
    clock.advance(0.5)
    await b.tick("sale")
    with pytest.raises(TokenError):
        b.check_access("sale", t0)  # within a tick on the others
    assert b.check_access("sale", t1)["sub"] == "u1"  # nobody else's
    with pytest.raises(RoomError) as room_err:
        await b.end_session("sale", [t0])  # an ended session's token ends nothing more
    assert room_err.value.code == "unauthorized"
    # the visitor queues again: the new session's token passes
    await a.join("sale", "u0", rejoin=True)
    clock.advance(1)
    await a.tick("sale")
    fresh = (await a.access_token("sale", "u0"))["access_token"]
    await b.tick("sale")
    assert b.check_access("sale", fresh)["sub"] == "u0"


async def test_stop_ends_the_inlet_even_when_a_lower_layer_swallows_the_cancellation(store):
    from processors.waitingroom.service import WaitingRoomService
    from tests.waitingroom_support import ADMIN_TOKEN

    svc = WaitingRoomService(store, admin_token=ADMIN_TOKEN, tick_interval_s=0.01)
    await svc.start({}, run_inlet=True)
    swallowed = asyncio.Event()

    async def sync_that_swallows_a_cancel():  # as a client library that turns a cancel into a normal return
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.set()

    svc.sync = sync_that_swallows_a_cancel  # type: ignore[method-assign]
    await asyncio.sleep(0.05)
    stopping = asyncio.ensure_future(svc.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert done, "stop() waits for ever: the inlet task stays 'cancelling' and keeps ticking"
    assert swallowed.is_set()
