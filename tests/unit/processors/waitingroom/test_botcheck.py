"""The ALTCHA check itself, on a fixed clock: what it refuses and why (the reasons are the metric's labels)."""
from __future__ import annotations

import base64

import orjson
import pytest
from altcha import ChallengeV1, solve_challenge_v1

from processors.waitingroom import botcheck
from processors.waitingroom.settings import BotProtection

KEY = b"k" * 32
NOW = 1_800_000_000.0


def solve(challenge: dict) -> str:
    c = ChallengeV1(challenge["algorithm"], challenge["challenge"], challenge["maxNumber"], challenge["salt"],
                    challenge["signature"])
    solution = solve_challenge_v1(c)
    assert solution is not None
    return base64.b64encode(orjson.dumps({**{k: challenge[k] for k in ("algorithm", "challenge", "salt", "signature")},
                                          "number": solution.number})).decode()


def refused(payload, *, key=KEY, room="sale", now=NOW) -> str:
    with pytest.raises(botcheck.Refused) as err:
        botcheck.verify(key, room, payload, now)
    assert err.value.reason in botcheck.REASONS
    return err.value.reason


def test_a_solution_is_valid_for_its_room_until_it_expires():
    payload = solve(botcheck.issue(KEY, "sale", BotProtection(max_number=2000, expires_s=60), NOW))
    challenge_id, ttl_ms = botcheck.verify(KEY, "sale", payload, NOW + 10)
    assert len(challenge_id) == 64 and 50_000 <= ttl_ms <= 52_000  # remembered until it expires, and a little more
    assert refused(payload, now=NOW + 61) == "expired"
    assert refused(payload, room="other") == "invalid"
    assert refused(payload, key=b"x" * 32) == "invalid"  # another deployment's challenge


@pytest.mark.parametrize("payload", ["", "%%%", base64.b64encode(b"[1]").decode(), 7, {"number": 1},
                                     base64.b64encode(b'{"algorithm":"SHA-256","challenge":"a","salt":"s",'
                                                      b'"signature":"x","number":"1"}').decode(), "A" * 5000])
def test_anything_but_a_payload_is_malformed(payload):
    assert refused(payload) == "malformed"


def test_no_payload_is_missing():
    assert refused(None) == "missing"


def test_the_cost_is_the_rooms():
    challenge = botcheck.issue(KEY, "sale", BotProtection(max_number=12345), NOW)
    assert challenge["maxNumber"] == 12345 and "room=sale" in challenge["salt"] and "expires=" in challenge["salt"]
