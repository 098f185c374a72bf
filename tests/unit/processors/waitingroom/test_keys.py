"""Where the signing keys live: an algorithm change, keys from the configuration, keys sealed in Redis under a
key-encryption key, and a Redis that lost its data. Against a real Redis."""
from __future__ import annotations

import base64

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from processors.waitingroom.service import RoomError
from processors.waitingroom.tokens import KeyStoreError, SigningKey, key_encryption_key
from tests.waitingroom_support import FakeClock, delete_prefix, make_service, redis_prefix, store  # noqa: F401

ROOM = {"sale": {"inlet": {"policy": "manual"}}}
KEK = key_encryption_key("a-key-encryption-key-from-a-secret-0123456789")


async def admitted_token(svc, rid: str) -> str:
    await svc.join("sale", rid)
    await svc.increment_serving("sale", 1)
    return (await svc.access_token("sale", rid))["access_token"]


async def everything_in_redis(client, prefix: str) -> bytes:
    """Every value under the prefix, as a reader of Redis sees it."""
    out = []
    async for key in client.scan_iter(match=prefix + "*"):
        kind = (await client.type(key)).decode()
        if kind == "string":
            out.append(await client.get(key))
        elif kind == "hash":
            out.extend(b for kv in (await client.hgetall(key)).items() for b in kv)
        elif kind == "zset":
            out.extend(m for m, _ in await client.zrange(key, 0, -1, withscores=True))
        elif kind == "set":
            out.extend(await client.smembers(key))
    return b"\n".join(out)


def header(token: str) -> dict:
    return jwt.get_unverified_header(token)


def pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


async def test_an_algorithm_change_rotates_to_the_new_algorithm_with_pre_publication(store):
    clock = FakeClock()
    ed = await make_service(store, ROOM, clock)  # EdDSA, the default
    before = await admitted_token(ed, "u0")
    rs = await make_service(store, clock=clock, token_alg="RS256", key_prepublish_s=300)  # restarted with RS256
    assert {k["alg"] for k in rs.jwks()["keys"]} == {"EdDSA", "RS256"}  # the RS256 key is published at once ...
    assert header(await admitted_token(rs, "u1"))["alg"] == "EdDSA"  # ... and signs after the pre-publication
    clock.advance(301)
    after = await admitted_token(rs, "u2")
    assert header(after)["alg"] == "RS256"
    assert rs.verify_access_token(before, "sale")["sub"] == "u0" and rs.verify_access_token(after, "sale")["sub"] == "u2"
    again = await make_service(store, clock=clock, token_alg="RS256")  # a second start does not rotate again
    assert header(await admitted_token(again, "u3"))["kid"] == header(after)["kid"]


async def test_configured_keys_are_never_stored_and_survive_an_empty_redis(store, redis_prefix, tmp_path):
    current, nxt = tmp_path / "current.pem", tmp_path / "next.pem"
    current.write_bytes(pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    nxt.write_bytes(pem(ec.generate_private_key(ec.SECP256R1())))
    keys = [SigningKey.from_pem(current.read_bytes(), signs=True), SigningKey.from_pem(nxt.read_bytes(), signs=False)]
    svc = await make_service(store, ROOM, signing_keys=keys)
    token = await admitted_token(svc, "u0")
    assert header(token)["alg"] == "RS256" and {k["alg"] for k in svc.jwks()["keys"]} == {"RS256", "ES256"}
    assert await store.load_keys() is None  # nothing of them in Redis
    with pytest.raises(RoomError) as err:
        await svc.rotate_keys()
    assert err.value.code == "conflict"
    await delete_prefix(store.redis, redis_prefix)  # Redis loses everything; a worker starts from the same Secret
    fresh = [SigningKey.from_pem(current.read_bytes(), signs=True)]
    other = await make_service(store, ROOM, signing_keys=fresh)
    assert other.verify_access_token(token, "sale")["sub"] == "u0"
    queue = (await other.join("sale", "u1"))["queue_token"]
    assert svc.verify_queue_token(queue, "sale")["sub"] == "u1"  # queue tokens too: their secret is derived


async def test_sealed_keys_reveal_nothing_in_redis_and_need_the_key_encryption_key(store, redis_prefix):
    svc = await make_service(store, ROOM, key_encryption_key=KEK)
    token = await admitted_token(svc, "u0")
    await svc.rotate_keys()
    private = [pem(k.private_key) for k in svc.ring.keys.values()]
    raw = await everything_in_redis(store.redis, redis_prefix)
    assert b"PRIVATE KEY" not in raw and not any(p in raw for p in private)
    for k in svc.ring.keys.values():
        secret = (k.private_key.private_bytes_raw() if k.alg == "EdDSA"
                  else k.private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
        assert secret not in raw and k.queue_secret not in raw
        assert base64.b64encode(k.queue_secret) not in raw
    # Redis alone: no key to sign with, and a worker without the KEK (or with another) refuses to start rather
    # than replacing the keys under every token issued so far
    for kek in (None, key_encryption_key("another-key-encryption-key-0123456789abcdef")):
        with pytest.raises(KeyStoreError):
            await make_service(store, ROOM, key_encryption_key=kek)
    same = await make_service(store, ROOM, key_encryption_key=KEK)
    assert same.verify_access_token(token, "sale")["sub"] == "u0"


async def test_plain_keys_are_sealed_once_a_key_encryption_key_is_set(store):
    plain = await make_service(store, ROOM)
    assert plain.key_warning() and "unencrypted" in plain.key_warning()
    token = await admitted_token(plain, "u0")
    assert all("pem" in r for r in (await store.load_keys())["keys"])
    sealed = await make_service(store, ROOM, key_encryption_key=KEK)
    assert sealed.key_warning() is None
    assert all("pem" not in r and "sealed" in r for r in (await store.load_keys())["keys"])
    assert sealed.verify_access_token(token, "sale")["sub"] == "u0"


async def test_a_redis_that_lost_the_keys_gets_them_back_from_a_running_worker(store, redis_prefix):
    svc = await make_service(store, ROOM, key_encryption_key=KEK)
    token = await admitted_token(svc, "u0")
    kid = header(token)["kid"]
    await delete_prefix(store.redis, redis_prefix)  # Redis restarted without persistence
    await svc.reload()  # the inlet loop's reload, on the store's version changing
    assert svc.verify_access_token(token, "sale")["sub"] == "u0"
    late = await make_service(store, ROOM, key_encryption_key=KEK)  # a worker started after the loss
    assert late.ring.select(late.clock()).kid == kid and late.verify_access_token(token, "sale")["sub"] == "u0"


async def test_rooms_come_back_after_redis_loses_its_data(store, redis_prefix):
    from processors.waitingroom.service import WaitingRoomService
    from tests.waitingroom_support import ADMIN_TOKEN

    keys = [SigningKey.from_pem(pem(ec.generate_private_key(ec.SECP256R1())), signs=True)]
    svc = WaitingRoomService(store, admin_token=ADMIN_TOKEN, clock=FakeClock(), signing_keys=keys)
    svc.config_rooms = {"sale": {"inlet": {"policy": "manual"}, "heartbeat_s": 60}}  # the rooms file
    await svc.start(run_inlet=False)
    await svc.put_room("api-made", {"inlet": {"policy": "max_active", "max_active": 7}})  # by the admin API
    await svc.sync()
    token = await admitted_token(svc, "u0")
    await delete_prefix(store.redis, redis_prefix)  # Redis restarted without persistence
    await svc.sync()  # what the inlet loop does every tick
    stored = await store.load_rooms()
    assert stored["sale"]["heartbeat_s"] == 60 and stored["api-made"]["inlet"]["max_active"] == 7
    # the site's forward-auth keeps letting the admitted visitor in, and the room takes new joins
    assert svc.check_access("sale", token)["sub"] == "u0"
    assert (await svc.join("sale", "u1"))["position"] == 1
    late = await make_service(store, signing_keys=keys)  # a worker started after the loss sees the rooms too
    assert sorted(late.rooms) == ["api-made", "sale"] and late.check_access("sale", token)["sub"] == "u0"
