"""Token signing and offline verification: what a protected site relies on."""
from __future__ import annotations

import base64
import time

import jwt
import orjson
import pytest

from processors.waitingroom.tokens import KeyRing, SigningKey, TokenError, verify_site_claim, verify_with_jwks

NOW = 1_800_000_000.0


def access_claims(**over):
    c = {"iss": "eventweir-waitingroom", "aud": "sale", "sub": "r1", "token_use": "access", "queue_position": 7,
         "iat": int(NOW), "nbf": int(NOW), "exp": int(NOW) + 600}
    c.update(over)
    return c


@pytest.fixture(params=["EdDSA", "ES256", "RS256"])
def ring(request):
    key = SigningKey.generate(request.param, NOW)
    return KeyRing([key], key.kid)


def test_valid_token_verifies_with_the_published_jwks(ring):
    now = int(time.time())
    token = ring.sign(access_claims(iat=now, nbf=now, exp=now + 600))
    jwks = orjson.loads(orjson.dumps(ring.jwks(now)))  # as fetched over HTTP
    claims = verify_with_jwks(token, jwks, audience="sale", token_use="access")
    assert claims["sub"] == "r1" and claims["queue_position"] == 7
    # and a stock JWT library accepts it too
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWK(jwks["keys"][0]).key
    assert jwt.decode(token, key, algorithms=[header["alg"]], audience="sale")["sub"] == "r1"


@pytest.mark.parametrize("case,reason", [
    ("expired", "expired"), ("audience", "audience"), ("token_use", "token_use"), ("not_yet", "not_yet_valid"),
])
def test_claims_are_enforced(ring, case, reason):
    claims = {"expired": access_claims(exp=int(NOW) - 1), "audience": access_claims(aud="other-room"),
              "token_use": access_claims(token_use="queue"), "not_yet": access_claims(nbf=int(NOW) + 60)}[case]
    with pytest.raises(TokenError) as err:
        ring.verify(ring.sign(claims), audience="sale", token_use="access", now_s=NOW)
    assert err.value.reason == reason


def test_tampered_token_is_rejected(ring):
    head, payload, sig = ring.sign(access_claims()).split(".")
    body = orjson.loads(base64.urlsafe_b64decode(payload + "=="))
    body["queue_position"] = 1  # jump the queue
    forged_payload = base64.urlsafe_b64encode(orjson.dumps(body)).rstrip(b"=").decode()
    with pytest.raises(TokenError) as err:
        ring.verify(f"{head}.{forged_payload}.{sig}", audience="sale", token_use="access", now_s=NOW)
    assert err.value.reason == "signature"


def test_token_from_an_unknown_key_is_rejected(ring):
    other = SigningKey.generate(ring.active.alg, NOW)
    other.kid = ring.active.kid  # same kid, different key: the signature must fail
    forged = SigningKey(other.kid, other.alg, other.private_key, NOW).sign(access_claims())
    with pytest.raises(TokenError) as err:
        ring.verify(forged, audience="sale", token_use="access", now_s=NOW)
    assert err.value.reason == "signature"
    with pytest.raises(TokenError) as err:
        ring.verify("not.a.jwt", audience="sale", token_use="access", now_s=NOW)
    assert err.value.reason == "malformed"


def test_hs256_is_refused(ring):
    forged = jwt.encode(access_claims(), "guessable-secret" * 3, algorithm="HS256", headers={"kid": ring.active.kid})
    with pytest.raises(TokenError) as err:
        ring.verify(forged, audience="sale", token_use="access", now_s=NOW)
    assert err.value.reason == "algorithm"


def test_rotated_key_stays_valid_for_its_grace_then_is_rejected(ring):
    old_token = ring.sign(access_claims(exp=int(NOW) + 10_000))
    old_kid = ring.active.kid
    ring.rotate(ring.active.alg, NOW + 10, grace_s=600)
    assert ring.active.kid != old_kid
    new_token = ring.sign(access_claims(exp=int(NOW) + 10_000))
    kids = {k["kid"] for k in ring.jwks(NOW + 100)["keys"]}
    assert kids == {old_kid, ring.active.kid}  # still published inside the grace period
    assert ring.verify(old_token, audience="sale", token_use="access", now_s=NOW + 100)["sub"] == "r1"
    after = NOW + 10 + 601
    assert {k["kid"] for k in ring.jwks(after)["keys"]} == {ring.active.kid}
    with pytest.raises(TokenError) as err:
        ring.verify(old_token, audience="sale", token_use="access", now_s=after)
    assert err.value.reason == "kid"
    assert ring.verify(new_token, audience="sale", token_use="access", now_s=after)["sub"] == "r1"
    # gone from the JWKS, the old key still checks the queue tokens it signed while someone may hold one
    assert ring.prune(after) == []
    assert ring.prune(after + 86_400) == [old_kid]


def test_keys_survive_a_round_trip_through_their_records(ring):
    token = ring.sign(access_claims())
    copy = KeyRing([SigningKey.from_record(orjson.loads(orjson.dumps(k.to_record()))) for k in ring.keys.values()],
                   ring.active.kid)
    assert copy.verify(token, audience="sale", token_use="access", now_s=NOW)["sub"] == "r1"


def test_site_claim_needs_the_room_secret_and_audience():
    secret = "k" * 40
    good = jwt.encode({"aud": "sale", "class": "vip", "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    assert verify_site_claim(good, secret, "sale")["class"] == "vip"
    for bad in (jwt.encode({"aud": "sale", "class": "vip", "exp": int(time.time()) + 60}, "z" * 40, algorithm="HS256"),
                jwt.encode({"aud": "other", "class": "vip", "exp": int(time.time()) + 60}, secret, algorithm="HS256"),
                jwt.encode({"aud": "sale", "class": "vip"}, secret, algorithm="HS256")):
        with pytest.raises(TokenError):
            verify_site_claim(bad, secret, "sale")


def test_queue_token_is_checked_by_the_room_only(ring):
    claims = {"aud": "sale", "sub": "r1", "token_use": "queue", "queue_position": 9, "iat": int(NOW), "exp": int(NOW) + 60}
    token = ring.sign_queue(claims)
    assert ring.verify_queue(token, audience="sale", now_s=NOW)["queue_position"] == 9
    head, payload, sig = token.split(".")
    forged = base64.urlsafe_b64encode(orjson.dumps({**claims, "queue_position": 1})).rstrip(b"=").decode()
    for bad, reason, now in ((f"{head}.{forged}.{sig}", "signature", NOW), (token, "expired", NOW + 61)):
        with pytest.raises(TokenError) as err:
            ring.verify_queue(bad, audience="sale", now_s=now)
        assert err.value.reason == reason
    with pytest.raises(TokenError) as err:  # nobody outside can verify it as an access token
        ring.verify(token, audience="sale", token_use="access", now_s=NOW)
    assert err.value.reason == "algorithm"
    for bad, reason in ((ring.sign_queue({**claims, "aud": "other"}), "audience"), ("a.b", "malformed"),
                        ("é.é.é", "malformed"), (ring.sign(claims), "kid"),
                        (ring.sign_queue({**claims, "token_use": "access"}), "token_use")):
        with pytest.raises(TokenError) as err:
            ring.verify_queue(bad, audience="sale", now_s=NOW)
        assert err.value.reason == reason, bad


# ---- forward-auth's check (KeyRing.verify_access): the same rules, fast enough for every request to the site


@pytest.mark.parametrize("case,reason", [
    ("expired", "expired"), ("audience", "audience"), ("token_use", "token_use"), ("not_yet", "not_yet_valid"),
    ("issuer", "token_use"),
])
def test_forward_auth_enforces_the_claims_every_time(ring, case, reason):
    claims = {"expired": access_claims(exp=int(NOW) - 1), "audience": access_claims(aud="other-room"),
              "token_use": access_claims(token_use="queue"), "not_yet": access_claims(nbf=int(NOW) + 60),
              "issuer": access_claims(iss="someone-else")}[case]
    token = ring.sign(claims)
    for _ in range(2):  # the second time the signature is remembered, the claims are not
        with pytest.raises(TokenError) as err:
            ring.verify_access(token, audience="sale", now_s=NOW)
        assert err.value.reason == reason
    good = ring.sign(access_claims())
    assert ring.verify_access(good, audience="sale", now_s=NOW)["sub"] == "r1"
    with pytest.raises(TokenError) as err:  # a remembered token expires all the same
        ring.verify_access(good, audience="sale", now_s=NOW + 600)
    assert err.value.reason == "expired"


def test_forward_auth_rejects_forgeries(ring):
    token = ring.sign(access_claims())
    head, payload, sig = token.split(".")
    body = orjson.loads(base64.urlsafe_b64decode(payload + "=="))
    forged_payload = base64.urlsafe_b64encode(orjson.dumps({**body, "sub": "r2"})).rstrip(b"=").decode()
    stranger = SigningKey(kid=ring.active.kid, alg=ring.active.alg, created_s=NOW,
                          private_key=SigningKey.generate(ring.active.alg, NOW).private_key)  # same header, other key
    queue = ring.sign_queue(access_claims())  # the room's HS256 queue token is never an access token
    for bad, reason in ((f"{head}.{forged_payload}.{sig}", "signature"), (stranger.sign(access_claims()), "signature"),
                        (queue, "kid"), ("a.b", "malformed"), ("", "malformed"),
                        ("é.é.é", "malformed"), (f"{head}.{payload[:-2]}.{sig}", "signature")):
        with pytest.raises(TokenError) as err:
            ring.verify_access(bad, audience="sale", now_s=NOW)
        assert err.value.reason == reason, bad


def test_forward_auth_follows_key_rotation(ring):
    old = ring.sign(access_claims())
    assert ring.verify_access(old, audience="sale", now_s=NOW)  # remembered from here on
    ring.rotate(ring.active.alg, NOW + 10, grace_s=100)
    new = ring.sign(access_claims())
    assert ring.verify_access(old, audience="sale", now_s=NOW + 50) and ring.verify_access(new, audience="sale", now_s=NOW + 50)
    with pytest.raises(TokenError) as err:  # past the grace period the old key is gone, remembered or not
        ring.verify_access(old, audience="sale", now_s=NOW + 111)
    assert err.value.reason == "kid"
    ring.prune(NOW + 111)
    with pytest.raises(TokenError):
        ring.verify_access(old, audience="sale", now_s=NOW + 111)
    assert ring.verify_access(new, audience="sale", now_s=NOW + 111)["sub"] == "r1"
