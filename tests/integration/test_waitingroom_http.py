"""The waiting room's port over raw sockets: the lean path for join/status and the hand-over to aiohttp
answer like aiohttp alone would, in order, on one keep-alive connection (real server, real Redis)."""
from __future__ import annotations

import asyncio

import orjson

from processors.waitingroom.resp import RespConnection
from tests.waitingroom_support import ADMIN, redis_prefix, start_api, visitor  # noqa: F401

# client-chosen ids (for retries) so pipelined requests can name their visitor; "plain" makes its own
ROOM = {"sale": {"inlet": {"policy": "manual"}, "client_request_ids": True}, "plain": {"inlet": {"policy": "manual"}}}
BASE = "/waitingroom/rooms/sale"


class Conn:
    """One keep-alive client connection that writes raw bytes and reads whole responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, client) -> Conn:
        port = int(client.base.rsplit(":", 1)[1])
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", 0)))
        return status, headers, body

    async def close(self) -> None:
        self.writer.close()


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: t", "Content-Type: application/json", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def get(path: str, *extra: str) -> bytes:
    return ("\r\n".join([f"GET {path} HTTP/1.1", "Host: t", *extra]) + "\r\n\r\n").encode()


def bearer(join_answer: bytes) -> str:
    """The header that proves the place `join_answer` (a join's body) gave."""
    return f"Authorization: Bearer {orjson.loads(join_answer)['queue_token']}"


async def test_pipelined_requests_are_answered_in_order(redis_prefix):
    client, _ = await start_api(redis_prefix, ROOM)
    c = await Conn.open(client)
    try:
        await c.send(post(f"{BASE}/join", b'{"request_id":"pipelined-0000001"}')
                     + post(f"{BASE}/join", b'{"request_id":"pipelined-0000002"}'))
        p1, p2 = [(await c.response())[2] for _ in range(2)]
        await c.send(get(f"{BASE}/status", bearer(p2)) + post(f"{BASE}/join", b"{}") + get(f"{BASE}/status", bearer(p1)))
        answers = [await c.response() for _ in range(3)]
        assert [a[0] for a in answers] == [200] * 3
        bodies = [orjson.loads(a[2]) for a in answers]
        assert [b["position"] for b in bodies] == [2, 3, 1]
        assert bodies[0]["people_ahead"] == 1 and bodies[2]["people_ahead"] == 0
        assert answers[1][1]["content-type"] == "application/json" and "date" in answers[1][1]
    finally:
        await c.close()
        await client.close()


async def test_a_body_arriving_in_pieces_and_an_encoded_query(redis_prefix):
    client, _ = await start_api(redis_prefix, ROOM)
    c = await Conn.open(client)
    try:
        req = post(f"{BASE}/join", b'{"request_id":"a-b:c-0123456789"}')
        for i in range(0, len(req), 7):  # the head and body trickle in
            await c.send(req[i:i + 7])
            await asyncio.sleep(0.001)
        status, _, joined = await c.response()
        assert status == 200 and orjson.loads(joined)["request_id"] == "a-b:c-0123456789"
        await c.send(get(f"{BASE}/status?x=1&request%5Fid=a%2Db%3Ac%2D0123456789&request_id=other", bearer(joined)))
        status, _, body = await c.response()
        assert status == 200 and orjson.loads(body)["request_id"] == "a-b:c-0123456789"  # the first value, decoded
        await c.send(get(f"{BASE}/status?request_id=other&request_id=a-b:c-0123456789", bearer(joined)))
        assert (await c.response())[0] == 403  # the first value is the one checked against the token
    finally:
        await c.close()
        await client.close()


async def test_other_requests_hand_the_connection_to_aiohttp(redis_prefix):
    client, _ = await start_api(redis_prefix, ROOM)
    c = await Conn.open(client)
    try:
        await c.send(post(f"{BASE}/join", b'{"request_id":"handed-over-0001"}'))
        assert (await c.response())[0] == 200
        # JWKS, a wrong method and a chunked join are aiohttp's; the status after them too (same connection)
        chunked = (f"POST {BASE}/join HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                   '21\r\n{"request_id":"handed-over-0002"}\r\n0\r\n\r\n').encode()
        await c.send(get("/waitingroom/.well-known/jwks.json") + get(f"{BASE}/join") + chunked)
        jwks, wrong, joined = [await c.response() for _ in range(3)]
        assert jwks[0] == 200 and orjson.loads(jwks[2])["keys"]
        assert wrong[0] == 405
        assert joined[0] == 200 and orjson.loads(joined[2])["position"] == 2
        await c.send(get(f"{BASE}/status", bearer(joined[2])))
        status = await c.response()
        assert status[0] == 200 and orjson.loads(status[2])["people_ahead"] == 1
    finally:
        await c.close()
        await client.close()


async def test_lean_answers_equal_aiohttp_answers(redis_prefix):
    """Each request once on a fresh lean connection and once on a connection aiohttp already serves."""
    from processors.waitingroom.handoff import queue_cookie_name

    client, _ = await start_api(redis_prefix, ROOM)
    joined = await (await client.post(f"{BASE}/join", json={"request_id": "same-visitor-0001"})).json()
    me = f"Authorization: Bearer {joined['queue_token']}"
    requests = [post(f"{BASE}/join", b'{"request_id":"same-visitor-0001"}'), post(f"{BASE}/join", b"{not json"),
                post(f"{BASE}/join", b"[1]"), post(f"{BASE}/join", b'{"request_id":"bad id! 0123456789"}'),
                post(f"{BASE}/join", b'{"request_id":"too-short"}'), post("/waitingroom/rooms/nope/join", b"{}"),
                post("/waitingroom/rooms/plain/join", b'{"request_id":"chosen-by-client-01"}'),
                get(f"{BASE}/status", me), get(f"{BASE}/status?request_id=same-visitor-0001", me),
                get(f"{BASE}/status?request_id=someone-else", me), get(f"{BASE}/status?request_id=same-visitor-0001"),
                get(f"{BASE}/status", "Authorization: Bearer x.y.z"), get(f"{BASE}/status?request_id=%20"),
                get(f"{BASE}/status", f"Cookie: a=b; {queue_cookie_name('sale')}={joined['queue_token']}"),
                get("/waitingroom/rooms/plain/status", me),
                post(f"{BASE}/join", b"{}", me)]  # the holder's join: the same place
    statuses = []
    try:
        for req in requests:
            lean = await Conn.open(client)
            via_aiohttp = await Conn.open(client)
            await via_aiohttp.send(get("/waitingroom/.well-known/jwks.json"))
            await via_aiohttp.response()
            await lean.send(req)
            await via_aiohttp.send(req)
            a, b = await lean.response(), await via_aiohttp.response()
            assert a[0] == b[0], req
            statuses.append(a[0])
            assert a[1].get("set-cookie") == b[1].get("set-cookie") and a[1].get("cache-control") == b[1].get("cache-control")
            if b'"queue_token"' not in b[2]:
                assert a[2] == b[2], req
            else:  # the token's bytes may differ only if the second ticked over; the rest is equal
                assert {k: v for k, v in orjson.loads(a[2]).items() if k != "queue_token"} == \
                       {k: v for k, v in orjson.loads(b[2]).items() if k != "queue_token"}
            await lean.close()
            await via_aiohttp.close()
        # a place is its queue token's: no token, another's id or a token of another room is refused alike
        assert statuses == [200, 400, 400, 400, 400, 404, 400, 200, 200, 403, 401, 401, 401, 200, 401, 200]
    finally:
        await client.close()


async def test_connection_close_and_store_unavailable(redis_prefix):
    client, service = await start_api(redis_prefix, ROOM)
    c = await Conn.open(client)
    try:
        await c.send(post(f"{BASE}/join", b"{}", "Connection: close"))
        status, headers, joined = await c.response()
        assert status == 200 and headers["connection"] == "close"
        assert await asyncio.wait_for(c.reader.read(), 5) == b""  # the server closed it
        # Redis gone (a port nobody listens on): 503 with Retry-After, on the lean path
        fast = service.store.fast
        service.store.fast = RespConnection("redis://127.0.0.1:1/0")
        c2 = await Conn.open(client)
        await c2.send(post(f"{BASE}/join", b"{}") + get(f"{BASE}/status", bearer(joined)))
        for _ in range(2):
            status, headers, body = await c2.response()
            answer = orjson.loads(body)
            assert status == 503 and headers["retry-after"] == "1" and answer["error"] == "unavailable"
            # what the page needs to say it in words and retry: a code and a wait, no internals
            assert answer["retry_after_s"] == 1 and "Errno" not in answer["message"] and "127.0.0.1" not in answer["message"]
        await c2.close()
        service.store.fast = fast
    finally:
        await c.close()
        await client.close()


async def test_idle_keepalive_connections_are_closed(redis_prefix, monkeypatch):
    import streams.http.waitingroom.server as wh

    monkeypatch.setattr(wh, "KEEPALIVE_S", 0.3)
    client, _ = await start_api(redis_prefix, ROOM)
    c = await Conn.open(client)
    try:
        await c.send(post(f"{BASE}/join", b"{}"))
        assert (await c.response())[0] == 200
        assert await asyncio.wait_for(c.reader.read(), 5) == b""  # closed once idle past the keep-alive time
    finally:
        await c.close()
        await client.close()


async def test_bare_lf_line_endings_get_aiohttp_400_at_once(redis_prefix):
    """A head ending lines in bare LF never holds a connection open: aiohttp answers 400 straight away."""
    client, _ = await start_api(redis_prefix, ROOM)
    try:
        for req in (f"GET {BASE}/status?request_id=x HTTP/1.1\nHost: t\n\n".encode(),
                    f"GET {BASE}/status?request_id=x HTTP/1.1\r\nHost: t\nX-Smuggled: 1\r\n\r\n".encode()):
            c = await Conn.open(client)
            try:
                await c.send(req)
                line = await asyncio.wait_for(c.reader.readline(), 5)
                assert line.startswith(b"HTTP/1.") and b" 400 " in line, line
            finally:
                await c.close()
    finally:
        await client.close()


async def test_forward_auth_answers_alike_on_both_paths(redis_prefix):
    """Forward-auth (on every request to the protected site) takes the lean path too, with aiohttp's answers."""
    from processors.waitingroom.handoff import cookie_name

    client, _ = await start_api(redis_prefix, {"sale": {"inlet": {"policy": "manual"},
                                                        "origins": ["https://shop.example.com"]}})
    joined = await (await client.post(f"{BASE}/join", json={})).json()
    rid = joined["request_id"]
    await client.post("/waitingroom/admin/rooms/sale/serving", json={"increment": 1}, headers=ADMIN)
    token = (await (await client.post(f"{BASE}/token", headers=visitor(joined))).json())["access_token"]
    cookie = f"{cookie_name('sale')}={token}"
    shop = ("X-Forwarded-Proto: https", "X-Forwarded-Host: shop.example.com", "X-Forwarded-Uri: /p?q=1")
    requests = [get(f"{BASE}/auth", f"Cookie: a=1; {cookie}; b=2"), get(f"{BASE}/auth", f"Authorization: Bearer {token}"),
                get(f"{BASE}/auth", f"Cookie: {cookie_name('sale')}=stale", f"Cookie: {cookie}"),  # both headers count
                get(f"{BASE}/auth", "Authorization: Basic eDp5", "X-Original-URL: https://shop.example.com/a?b=c"),
                get(f"{BASE}/auth", f"Cookie: {cookie}x", "X-Original-URL: https://evil.example/"),
                get(f"{BASE}/auth/redirect", *shop), get(f"{BASE}/auth/redirect", *shop, f"Cookie: {cookie}"),
                get(f"{BASE}/auth/redirect/p/x?q=1", "X-Forwarded-Proto: https").replace(b"Host: t", b"Host: shop.example.com"),
                get(f"{BASE}/auth/redirectx"), get("/waitingroom/rooms/nope/auth", f"Cookie: {cookie}"),
                get(f"{BASE}/auth", "Host: again", f"Cookie: {cookie}")]  # last: aiohttp's 400 closes the connection
    compared = ("location", "x-waitingroom-error", "x-waitingroom-subject", "x-waitingroom-room", "x-waitingroom-class",
                "x-waitingroom-expires", "cache-control")
    try:
        for req in requests:
            lean = await Conn.open(client)
            via_aiohttp = await Conn.open(client)
            await via_aiohttp.send(get("/waitingroom/.well-known/jwks.json"))
            await via_aiohttp.response()
            await lean.send(req)
            await via_aiohttp.send(req)
            a, b = await lean.response(), await via_aiohttp.response()
            assert a[0] == b[0] and a[2] == b[2], req
            assert {k: a[1].get(k) for k in compared} == {k: b[1].get(k) for k in compared}, req
            aiohttps = (requests[-3], requests[-1])  # not forward-auth, and a repeated Host: aiohttp's
            assert len(client.server.hot.conns) == (0 if req in aiohttps else 1), "the lean path answered"
            await lean.close()
            await via_aiohttp.close()
        statuses = []
        c = await Conn.open(client)
        for req in requests:
            await c.send(req)
            statuses.append((await c.response())[0])
        assert statuses == [200, 200, 200, 401, 401, 302, 200, 302, 404, 404, 400]
        await c.close()
        # answered at once, forward-auth still keeps its place behind a join waiting for Redis
        c = await Conn.open(client)
        await c.send(post(f"{BASE}/join", b"{}") + get(f"{BASE}/auth", f"Cookie: {cookie}")
                     + get(f"{BASE}/status", f"Authorization: Bearer {joined['queue_token']}") + get(f"{BASE}/auth"))
        join, ok, status, refused = [await c.response() for _ in range(4)]
        assert orjson.loads(join[2])["position"] == 2 and ok[1]["x-waitingroom-subject"] == rid
        assert orjson.loads(status[2])["position"] == 1 and refused[0] == 401
        assert len(client.server.hot.conns) == 1
        await c.close()
    finally:
        await client.close()
