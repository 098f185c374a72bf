"""Bot protection before joining, as an API client meets it: on a real server and real Redis, solved with the
`altcha` library's own solver (what a non-browser client runs). The browser's solve is in
test_waitingroom_page.py (headless Chromium, the vendored widget)."""
from __future__ import annotations

import base64

import jwt
import orjson
from altcha import ChallengeV1, solve_challenge_v1
from prometheus_client import REGISTRY

from tests.waitingroom_support import ADMIN, redis_prefix, start_api, visitor  # noqa: F401

ROOM = {"inlet": {"policy": "manual"}, "bot_protection": True}
BASE = "/waitingroom/rooms/sale"


async def solved(client, room: str = "sale") -> str:
    """What an API client does: fetch a challenge, solve it, send the payload base64-encoded."""
    r = await client.get(f"/waitingroom/rooms/{room}/challenge")
    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    c = await r.json()
    solution = solve_challenge_v1(ChallengeV1(c["algorithm"], c["challenge"], c["maxNumber"], c["salt"], c["signature"]))
    assert solution is not None
    payload = {"algorithm": c["algorithm"], "challenge": c["challenge"], "number": solution.number, "salt": c["salt"],
               "signature": c["signature"]}
    return base64.b64encode(orjson.dumps(payload)).decode()


def counted(room: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("eventweir_waitingroom_challenges_total", {"room": room, "outcome": outcome}) or 0


async def refused(resp, reason: str) -> dict:
    body = await resp.json()
    assert resp.status == 403 and body["error"] == "challenge_required" and body["reason"] == reason, body
    # what to do, in the answer itself
    assert body["challenge_url"] == f"{BASE}/challenge" and "altcha" in body["message"], body
    return body


async def test_an_api_client_joins_with_a_solved_challenge_once(redis_prefix):
    client, _ = await start_api(redis_prefix, {"sale": ROOM, "other": ROOM})
    before = {o: counted("sale", o) for o in ("issued", "accepted", "missing", "malformed", "invalid", "reused")}
    try:
        await refused(await client.post(f"{BASE}/join", json={}), "missing")
        await refused(await client.post(f"{BASE}/join", json={"claim": None}), "missing")  # no claim: no pass
        await refused(await client.post(f"{BASE}/join", json={"altcha": "not base64 json"}), "malformed")
        await refused(await client.post(f"{BASE}/join", json={"altcha": 12}), "malformed")

        payload = await solved(client)
        fields = orjson.loads(base64.b64decode(payload))
        for forged in ({**fields, "number": fields["number"] + 1},        # a guess, not the number
                       {**fields, "signature": "0" * 64},                 # a challenge this server never signed
                       {**fields, "salt": fields["salt"].replace("room=sale", "room=other")}):
            await refused(await client.post(f"{BASE}/join", json={"altcha": base64.b64encode(orjson.dumps(forged)).decode()}),
                          "invalid")
        elsewhere = await client.post("/waitingroom/rooms/other/join", json={"altcha": payload})
        assert elsewhere.status == 403 and (await elsewhere.json())["reason"] == "invalid"  # bound to its room

        joined = await client.post(f"{BASE}/join", json={"altcha": payload})
        assert joined.status == 200 and (await joined.json())["position"] == 1
        await refused(await client.post(f"{BASE}/join", json={"altcha": payload}), "reused")

        second = await client.post(f"{BASE}/join", json={"altcha": await solved(client)})
        assert second.status == 200 and (await second.json())["position"] == 2
        assert {o: counted("sale", o) - before[o] for o in before} == {
            "issued": 2, "accepted": 2, "missing": 2, "malformed": 2, "invalid": 3, "reused": 1}
    finally:
        await client.close()


async def test_a_held_place_or_a_site_claim_needs_no_challenge(redis_prefix):
    secret = "s" * 40
    client, _ = await start_api(redis_prefix, {"sale": {**ROOM, "claim_secret": secret, "heartbeat_s": 1}})
    try:
        first = await (await client.post(f"{BASE}/join", json={"altcha": await solved(client)})).json()
        again = await client.post(f"{BASE}/join", json={}, headers=visitor(first))  # its holder: the same place
        assert again.status == 200 and (await again.json())["request_id"] == first["request_id"]
        # the site signed a claim for this visitor: it has vouched for them
        claim = jwt.encode({"aud": "sale", "exp": 4_000_000_000}, secret, algorithm="HS256")
        vouched = await client.post(f"{BASE}/join", json={"claim": claim})
        assert vouched.status == 200 and (await vouched.json())["position"] == 2
        for bad in ("not-a-claim", "", 123, ["x"]):
            bad_claim = await client.post(f"{BASE}/join", json={"claim": bad})
            assert bad_claim.status in (400, 401, 403), bad  # refused by the claim check, never a free pass
    finally:
        await client.close()


async def test_settings_turn_it_off_or_set_its_cost_and_bad_values_name_the_key(redis_prefix):
    client, _ = await start_api(redis_prefix, {"open": {"inlet": {"policy": "manual"}}})  # bot_protection: false
    try:
        assert (await client.post("/waitingroom/rooms/open/join", json={})).status == 200
        none = await client.get("/waitingroom/rooms/open/challenge")
        assert none.status == 404 and "without a challenge" in (await none.json())["message"]
        # a room made through the admin API is protected unless it says otherwise
        assert (await client.put("/waitingroom/admin/rooms/new", json={"inlet": {"policy": "manual"}},
                                 headers=ADMIN)).status == 200
        assert (await client.post("/waitingroom/rooms/new/join", json={})).status == 403
        cheap = {"inlet": {"policy": "manual"}, "bot_protection": {"altcha": {"max_number": 5000, "expires_s": 60}}}
        assert (await client.put("/waitingroom/admin/rooms/new", json=cheap, headers=ADMIN)).status == 200
        assert (await (await client.get("/waitingroom/rooms/new/challenge")).json())["maxNumber"] == 5000
        shown = await (await client.get("/waitingroom/admin/rooms/new", headers=ADMIN)).json()
        assert shown["settings"]["bot_protection"] == {"altcha": {"max_number": 5000, "expires_s": 60.0}}
        bad = await client.put("/waitingroom/admin/rooms/new", headers=ADMIN,
                               json={"bot_protection": {"altcha": {"max_number": 10}}})
        body = await bad.json()
        assert bad.status == 400 and body["path"] == "room.bot_protection.altcha.max_number", body
    finally:
        await client.close()


async def test_without_javascript_the_visitor_is_told_what_is_needed(redis_prefix):
    client, _ = await start_api(redis_prefix, {"sale": ROOM})
    try:
        r = await client.get(f"{BASE}/wait")
        text = await r.text()
        assert r.status == 200 and "needs JavaScript" in text and "refresh" not in text  # no loop of refreshes
        assert (await (await client.get("/waitingroom/admin/rooms/sale/counters", headers=ADMIN)).json())["waiting"] == 0
    finally:
        await client.close()


async def test_every_worker_accepts_the_challenges_of_the_others(redis_prefix, caplog):
    """Behind a load balancer the challenge and the join meet different workers: they share the key, whether it
    is configured (challenge_key), derived from key_encryption_key, or made once in Redis."""
    import pytest

    from processors.waitingroom.settings import SettingsError
    from streams.http.waitingroom.api import build_waitingroom_service

    for i, config in enumerate(({}, {"challenge_key": "c" * 40}, {"key_encryption_key": "e" * 40})):
        prefix = f"{redis_prefix}{i}:"  # a deployment each (the fixture's clean-up covers them)
        a, _ = await start_api(prefix, {"sale": ROOM}, **config)
        b, _ = await start_api(prefix, {"sale": ROOM}, **config)
        try:
            joined = await b.post(f"{BASE}/join", json={"altcha": await solved(a)})
            assert joined.status == 200, (config, await joined.json())
        finally:
            await a.close()
            await b.close()
    a, _ = await start_api(redis_prefix, {"sale": ROOM}, challenge_key="c" * 40)
    b, _ = await start_api(redis_prefix, {"sale": ROOM}, challenge_key="d" * 40)
    try:
        await refused(await b.post(f"{BASE}/join", json={"altcha": await solved(a)}), "invalid")
    finally:
        await a.close()
        await b.close()
    with pytest.raises(SettingsError) as err:
        build_waitingroom_service({"admin_token": "a" * 20, "challenge_key": "short-secret"})
    assert err.value.path == "waitingroom.challenge_key" and "short-secret" not in str(err.value)
    assert "c" * 40 not in caplog.text and "d" * 40 not in caplog.text
