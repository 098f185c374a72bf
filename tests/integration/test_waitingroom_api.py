"""The waiting-room HTTP API end to end on a real aiohttp server and real Redis."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import aiohttp
import jwt
import pytest

from processors.waitingroom.tokens import TokenError, verify_with_jwks
from streams.devtools.broker import free_port, wait_for_port
from tests.waitingroom_support import ADMIN, ADMIN_TOKEN, REDIS_URL, redis_prefix, start_api, visitor  # noqa: F401

ROOM = {"sale": {"inlet": {"policy": "manual"}, "refresh_interval_s": 1}}
BASE = "/waitingroom/rooms/sale"


async def test_join_status_admit_token_and_offline_verification(redis_prefix):
    client, service = await start_api(redis_prefix, ROOM)
    try:
        j = await (await client.post(f"{BASE}/join", json={})).json()
        assert j["position"] == 1 and j["state"] == "waiting" and j["queue_token"]
        rid, me = j["request_id"], visitor(j)
        s = await (await client.get(f"{BASE}/status", headers=me)).json()
        assert s["people_ahead"] == 0 and s["state"] == "waiting" and s["refresh_interval_s"] == 1
        early = await client.post(f"{BASE}/token", headers=me)
        assert early.status == 409 and (await early.json())["error"] == "not_admitted"
        r = await client.post("/waitingroom/admin/rooms/sale/serving", json={"increment": 1}, headers=ADMIN)
        assert r.status == 200 and (await r.json())["admitted"] == 1
        s = await (await client.get(f"{BASE}/status", headers=me)).json()
        assert s["state"] == "admitted" and s["serving_counter"] == 1
        tok = await (await client.post(f"{BASE}/token", headers=me)).json()
        jwks = await (await client.get(f"{BASE}/jwks.json")).json()
        claims = verify_with_jwks(tok["access_token"], jwks, audience="sale", token_use="access")
        assert claims["sub"] == rid and claims["queue_position"] == 1
        # the queue-position token is the room's own proof of position, never an access token
        with pytest.raises(TokenError):
            verify_with_jwks(j["queue_token"], jwks, audience="sale", token_use="access")
        assert service.verify_queue_token(j["queue_token"], "sale")["queue_position"] == 1
        done = await client.post(f"/waitingroom/admin/rooms/sale/sessions/{rid}", json={"status": "completed"}, headers=ADMIN)
        assert (await done.json())["state"] == "completed"
        again = await client.post(f"{BASE}/token", headers=me)
        assert again.status == 410 and (await again.json())["state"] == "completed"
    finally:
        await client.close()


async def test_only_the_holder_of_the_queue_token_can_poll_take_the_token_or_enter(redis_prefix):
    from processors.waitingroom.handoff import cookie_name, queue_cookie_name

    shop = {**ROOM["sale"], "origins": ["https://shop.example.com"], "cookie_secure": False}
    client, _ = await start_api(redis_prefix, {"sale": shop, "other": ROOM["sale"]})
    try:
        chosen = await client.post(f"{BASE}/join", json={"request_id": "chosen-by-the-client-0001"})
        assert chosen.status == 400  # request ids are the server's unless the room says otherwise
        r = await client.post(f"{BASE}/join", json={})
        alice = await r.json()
        cookie = r.headers["Set-Cookie"]
        assert cookie.startswith(f"{queue_cookie_name('sale')}={alice['queue_token']};")
        assert "HttpOnly" in cookie and "Path=/waitingroom/rooms/sale/" in cookie and "SameSite=Strict" in cookie
        mallory = await (await client.post(f"{BASE}/join", json={})).json()
        elsewhere = await (await client.post("/waitingroom/rooms/other/join", json={})).json()
        await client.post("/waitingroom/admin/rooms/sale/serving", json={"increment": 1}, headers=ADMIN)
        rid = alice["request_id"]  # known to others: it is in her access token and in the headers the site gets
        forged = alice["queue_token"][:-4] + ("AAAA" if not alice["queue_token"].endswith("AAAA") else "BBBB")
        for headers, expected in (({}, 401), (visitor(mallory), 403), (visitor(elsewhere), 401),
                                  ({"Authorization": f"Bearer {forged}"}, 401)):
            status = await client.get(f"{BASE}/status", params={"request_id": rid}, headers=headers)
            assert status.status == expected and (await status.json())["error"] in ("unauthorized", "forbidden")
            token = await client.post(f"{BASE}/token", json={"request_id": rid}, headers=headers)
            assert token.status == expected and "access_token" not in await token.json()
        enter = await client.post(f"{BASE}/enter", data={"request_id": rid, "return_to": "https://shop.example.com/"},
                                  allow_redirects=False)
        assert enter.status == 303 and enter.headers["Location"].startswith(BASE + "/")  # back to the room
        assert cookie_name("sale") not in enter.cookies
        # Alice herself: by bearer token (API clients) or by the cookie (the page)
        s = await (await client.get(f"{BASE}/status", headers=visitor(alice))).json()
        assert s["request_id"] == rid and s["state"] == "admitted"
        queue_cookie = {"Cookie": f"{queue_cookie_name('sale')}={alice['queue_token']}"}
        assert (await client.get(f"{BASE}/status", headers=queue_cookie)).status == 200
        enter = await client.post(f"{BASE}/enter", data={"return_to": "https://shop.example.com/a"}, headers=queue_cookie,
                                  allow_redirects=False)
        assert enter.status == 303 and enter.headers["Location"] == "https://shop.example.com/a"
        assert enter.cookies[cookie_name("sale")].value
    finally:
        await client.close()


async def test_50_concurrent_http_clients_with_duplicates(redis_prefix):
    client, _ = await start_api(redis_prefix, {"sale": {**ROOM["sale"], "client_request_ids": True}})
    try:
        async def one(i):
            r = await client.post(f"{BASE}/join", json={"request_id": f"client-retrying-{i % 50:04}"})
            assert r.status == 200
            return await r.json()

        results = await asyncio.gather(*(one(i) for i in range(150)))  # every client retries twice
        positions: dict[str, set] = {}
        for r in results:
            positions.setdefault(r["request_id"], set()).add(r["position"])
        assert all(len(v) == 1 for v in positions.values())
        assert sorted(v.pop() for v in positions.values()) == list(range(1, 51))
    finally:
        await client.close()


async def test_admin_api_rejects_unauthenticated_requests(redis_prefix):
    client, _ = await start_api(redis_prefix, ROOM)
    try:
        calls = [("GET", "/waitingroom/admin/rooms"), ("PUT", "/waitingroom/admin/rooms/x"),
                 ("DELETE", "/waitingroom/admin/rooms/sale"), ("POST", "/waitingroom/admin/rooms/sale/serving"),
                 ("POST", "/waitingroom/admin/rooms/sale/pause"), ("POST", "/waitingroom/admin/rooms/sale/reset"),
                 ("GET", "/waitingroom/admin/rooms/sale/counters"), ("POST", "/waitingroom/admin/keys/rotate"),
                 ("POST", "/waitingroom/admin/rooms/sale/sessions/r1")]
        for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": ADMIN_TOKEN}):
            for method, path in calls:
                r = await client.request(method, path, json={"increment": 1}, headers=headers)
                assert r.status == 401, (method, path, headers)
                assert "Bearer" in r.headers["WWW-Authenticate"]
        assert (await (await client.get("/waitingroom/admin/rooms/sale", headers=ADMIN)).json())["room"] == "sale"
        assert (await client.get("/waitingroom/admin/rooms/sale/counters", headers=ADMIN)).status == 200
        for scheme in ("bearer", "BEARER"):  # the scheme is case-insensitive (RFC 9110), as on the EventBridge API
            r = await client.get("/waitingroom/admin/rooms", headers={"Authorization": f"{scheme} {ADMIN_TOKEN}"})
            assert r.status == 200, scheme
    finally:
        await client.close()


async def test_admin_room_lifecycle_pause_and_key_rotation(redis_prefix):
    client, _ = await start_api(redis_prefix, {})
    try:
        bad = await client.put("/waitingroom/admin/rooms/drop", json={"inlet": {"policy": "max_active"}}, headers=ADMIN)
        assert bad.status == 400 and (await bad.json())["path"] == "room.inlet.max_active"
        ok = await client.put("/waitingroom/admin/rooms/drop", headers=ADMIN,
                              json={"inlet": {"policy": "max_active", "max_active": 2}, "bot_protection": False})
        assert ok.status == 200
        assert (await client.post("/waitingroom/rooms/drop/join", data=b"{not json")).status == 400
        assert (await client.post("/waitingroom/rooms/nope/join", json={})).status == 404
        paused = await (await client.post("/waitingroom/admin/rooms/drop/pause", headers=ADMIN)).json()
        assert paused["paused"] is True
        joined = await (await client.post("/waitingroom/rooms/drop/join", json={})).json()
        s = await (await client.get("/waitingroom/rooms/drop/status", headers=visitor(joined))).json()
        assert s["paused"] is True
        before = {k["kid"] for k in (await (await client.get("/waitingroom/.well-known/jwks.json")).json())["keys"]}
        rot = await (await client.post("/waitingroom/admin/keys/rotate", headers=ADMIN)).json()
        after = {k["kid"] for k in (await (await client.get("/waitingroom/.well-known/jwks.json")).json())["keys"]}
        # the next key is published at once and signs after key_prepublish_s
        assert rot["active_kid"] in before and rot["next_kid"] not in before and after == before | {rot["next_kid"]}
        assert (await client.delete("/waitingroom/admin/rooms/drop", headers=ADMIN)).status == 200
        assert (await client.post("/waitingroom/rooms/drop/join", json={})).status == 404
    finally:
        await client.close()


async def test_gateways_verify_rs256_tokens_through_discovery_and_see_the_next_key_before_it_signs(redis_prefix):
    port = free_port()
    issuer = f"http://127.0.0.1:{port}/waitingroom"
    client, _ = await start_api(redis_prefix, ROOM, port=port, token_alg="RS256", issuer=issuer,
                                jwks_max_age_s=1, key_prepublish_s=2)

    async def admitted_token() -> str:
        joined = await (await client.post(f"{BASE}/join", json={})).json()
        await client.post("/waitingroom/admin/rooms/sale/serving", json={"increment": 1}, headers=ADMIN)
        return (await (await client.post(f"{BASE}/token", headers=visitor(joined))).json())["access_token"]

    def verify(token: str, doc: dict, jwks_client: jwt.PyJWKClient) -> dict:
        # what a gateway does: the key by kid from jwks_uri, the algorithms and issuer from discovery
        key = jwks_client.get_signing_key_from_jwt(token)
        return jwt.decode(token, key, algorithms=doc["id_token_signing_alg_values_supported"], audience="sale",
                          issuer=doc["issuer"])

    try:
        r = await client.get("/waitingroom/.well-known/openid-configuration")  # = <issuer>/.well-known/...
        doc = await r.json()
        assert doc["issuer"] == issuer and doc["jwks_uri"] == issuer + "/.well-known/jwks.json"
        assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
        assert r.headers["Cache-Control"] == "public, max-age=1"  # shorter than the pre-publication (2 s)
        jwks_client = jwt.PyJWKClient(doc["jwks_uri"], cache_keys=False)
        token = await admitted_token()
        assert (await asyncio.to_thread(verify, token, doc, jwks_client))["iss"] == issuer
        rot = await (await client.post("/waitingroom/admin/keys/rotate", headers=ADMIN)).json()
        cached = await asyncio.to_thread(jwks_client.fetch_data)  # a gateway's copy of the keys, fetched now
        assert rot["next_kid"] in {k["kid"] for k in cached["keys"]}
        assert jwt.get_unverified_header(await admitted_token())["kid"] == rot["active_kid"]  # not signing yet
        await asyncio.sleep(2.1)
        later = await admitted_token()
        assert jwt.get_unverified_header(later)["kid"] == rot["next_kid"]
        # the copy fetched before the switch already verifies it
        key = jwt.PyJWKSet.from_dict(cached)[rot["next_kid"]].key
        assert jwt.decode(later, key, algorithms=["RS256"], audience="sale", issuer=issuer)["aud"] == "sale"
        assert (await asyncio.to_thread(verify, later, doc, jwks_client))["aud"] == "sale"
    finally:
        await client.close()


async def test_worker_restart_loses_nothing(redis_prefix):
    client, _ = await start_api(redis_prefix, ROOM)
    joined = []
    for _ in range(10):
        joined.append(await (await client.post(f"{BASE}/join", json={})).json())
    await client.post("/waitingroom/admin/rooms/sale/serving", json={"increment": 3}, headers=ADMIN)
    token = (await (await client.post(f"{BASE}/token", headers=visitor(joined[0]))).json())["access_token"]
    await client.close()  # worker gone
    client, _ = await start_api(redis_prefix, {})  # a fresh worker with no rooms in its config
    try:
        s = await (await client.get(f"{BASE}/status", headers=visitor(joined[6]))).json()  # the queue token still holds
        assert s["position"] == 7 and s["people_ahead"] == 3 and s["serving_counter"] == 3
        assert (await (await client.post(f"{BASE}/join", json={})).json())["position"] == 11
        jwks = await (await client.get(f"{BASE}/jwks.json")).json()
        assert verify_with_jwks(token, jwks, audience="sale", token_use="access")["sub"] == joined[0]["request_id"]
    finally:
        await client.close()


async def test_standalone_serve_command(redis_prefix, tmp_path):
    rooms = tmp_path / "rooms.yaml"
    rooms.write_text("cli-room:\n  inlet: {policy: max_active, max_active: 1}\n  bot_protection: false\n")
    port = free_port()
    env = {**os.environ, "EVENTWEIR_WAITINGROOM_ADMIN_TOKEN": ADMIN_TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "waitingroom", "serve", "--host", "127.0.0.1",
                             "--port", str(port), "--redis-url", REDIS_URL, "--key-prefix", redis_prefix,
                             "--rooms", str(rooms), "--tick-interval", "0.1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port("127.0.0.1", port, 30)
        base = f"http://127.0.0.1:{port}/waitingroom/rooms/cli-room"
        async with aiohttp.ClientSession() as http:
            a = await (await http.post(f"{base}/join", json={})).json()
            b = await (await http.post(f"{base}/join", json={})).json()
            for _ in range(50):  # the inlet loop admits the first (max_active 1) on its own
                s = await (await http.get(f"{base}/status", headers=visitor(a))).json()
                if s["state"] == "admitted":
                    break
                await asyncio.sleep(0.1)
            assert s["state"] == "admitted"
            s2 = await (await http.get(f"{base}/status", headers=visitor(b))).json()
            assert s2["state"] == "waiting" and s2["people_ahead"] == 0
            page = await http.get(f"{base}/")
            assert page.status == 200 and "Getting you a place in line" in await page.text()  # the waiting page
            await asyncio.sleep(0.3)  # let the inlet tick publish the gauges
            metrics = await (await http.get(f"http://127.0.0.1:{port}/metrics")).text()
            assert 'eventweir_waitingroom_waiting{room="cli-room"} 1.0' in metrics
            assert "eventweir_waitingroom_join_latency_seconds_count" in metrics
    finally:
        proc.terminate()
        proc.wait(10)


async def test_a_failing_room_does_not_stop_the_admissions_of_the_others(redis_prefix):
    # issue 21 item 16: the inlet loop used to give up on every room after the first that failed
    rooms = {"a-broken": {"inlet": {"policy": "max_active", "max_active": 5}},
             "b-fine": {"inlet": {"policy": "max_active", "max_active": 5}}}
    client, service = await start_api(redis_prefix, rooms, tick_interval_s=0.05)
    tick = service.tick

    async def failing_for_a(room_id, manual=0):
        if room_id == "a-broken":
            raise RuntimeError("a room whose admission arithmetic fails")
        return await tick(room_id, manual)

    service.tick = failing_for_a
    try:
        joined = await (await client.post("/waitingroom/rooms/b-fine/join", json={})).json()
        for _ in range(100):
            status = await (await client.get("/waitingroom/rooms/b-fine/status", headers=visitor(joined))).json()
            if status["state"] == "admitted":
                break
            await asyncio.sleep(0.05)
        assert status["state"] == "admitted", "room b-fine admitted nobody while room a-broken failed"
    finally:
        await client.close()


async def test_an_expired_visitor_joins_again_with_their_queue_token(redis_prefix):
    rooms = {"sale": {"inlet": {"policy": "manual"}, "heartbeat_s": 1}}
    client, _ = await start_api(redis_prefix, rooms, tick_interval_s=0.1)
    try:
        first = await (await client.post("/waitingroom/rooms/sale/join", json={})).json()
        other = await (await client.post("/waitingroom/rooms/sale/join", json={})).json()
        for _ in range(30):  # first stops polling (closed the laptop); other keeps polling
            await asyncio.sleep(0.1)
            await client.get("/waitingroom/rooms/sale/status", headers=visitor(other))
        gone = await (await client.get("/waitingroom/rooms/sale/status", headers=visitor(first))).json()
        assert gone["state"] == "expired" and gone["rejoin"] is True
        # the page (or API client) joins again with the same queue token: a place again, at the back
        again = await client.post("/waitingroom/rooms/sale/join", json={}, headers=visitor(first))
        back = await again.json()
        assert again.status == 200 and back["request_id"] == first["request_id"] and back["rejoined"] == "back"
        assert back["state"] == "waiting" and back["position"] == 3
        status = await (await client.get("/waitingroom/rooms/sale/status", headers=visitor(back))).json()
        assert status["state"] == "waiting" and status["people_ahead"] == 1 and status["rejoin"] is False
        # a join with a token of a place still open is the same place, not a second one
        same = await (await client.post("/waitingroom/rooms/sale/join", json={}, headers=visitor(other))).json()
        assert same["request_id"] == other["request_id"] and same["duplicate"] is True
    finally:
        await client.close()


async def test_admin_update_removing_a_class_with_waiters_is_refused_with_its_name_then_mapped(redis_prefix):
    room = {"inlet": {"policy": "manual"}, "priority_classes": ["members", "general"]}
    client, service = await start_api(redis_prefix, {"sale": room})
    try:
        await service.store.join("sale", 2, "m1", int(service.clock() * 1000), method="fifo", phase="open",
                                 class_rank=0, inventory=-1, exempt=False, claim_ms=600_000)  # a member waits
        joined = await (await client.post("/waitingroom/rooms/sale/join", json={})).json()
        r = await client.put("/waitingroom/admin/rooms/sale", json={**room, "priority_classes": ["general"]},
                             headers=ADMIN)
        refused = await r.json()
        assert r.status == 409 and refused["error"] == "conflict" and refused["classes_with_waiters"] == ["members"]
        assert "class_mapping" in refused["message"]
        r = await client.put("/waitingroom/admin/rooms/sale", headers=ADMIN,
                             json={**room, "priority_classes": ["general"], "class_mapping": {"members": "general"}})
        assert r.status == 200 and (await r.json())["settings"]["priority_classes"] == ["general"]
        # nobody stranded: the visitor polls as before (no 500), one ahead, and both are admitted in order
        s = await (await client.get("/waitingroom/rooms/sale/status", headers=visitor(joined))).json()
        assert s["state"] == "waiting" and s["people_ahead"] == 1
        r = await client.post("/waitingroom/admin/rooms/sale/serving", json={"increment": 2}, headers=ADMIN)
        assert (await r.json())["admitted"] == 2
    finally:
        await client.close()


async def test_a_join_with_a_site_claim_is_a_new_place_even_with_a_queue_token(redis_prefix):
    secret = "s" * 40
    room = {"inlet": {"policy": "manual"}, "priority_classes": ["vip", "general"], "claim_secret": secret}
    client, _ = await start_api(redis_prefix, {"sale": room})
    try:
        general = await (await client.post("/waitingroom/rooms/sale/join", json={})).json()
        claim = jwt.encode({"aud": "sale", "class": "vip", "exp": 4_000_000_000}, secret, algorithm="HS256")
        vip = await (await client.post("/waitingroom/rooms/sale/join", json={"claim": claim},
                                       headers=visitor(general))).json()
        assert vip["priority_class"] == "vip" and vip["request_id"] != general["request_id"]
    finally:
        await client.close()
