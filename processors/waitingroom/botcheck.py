"""Bot protection before joining: the ALTCHA protocol's proof-of-work (altcha.org), with the `altcha` library.

A challenge is (salt, SHA-256(salt + n), HMAC(key, that hash)) for a secret n drawn from 0..max_number; its salt
carries its expiry and room, signed with the rest, so nothing is stored per challenge issued. The solver tries on
average max_number / 2 hashes to find n; checking a solution is one hash and one HMAC. A solution is then
remembered until its challenge expires (the caller's store), so it opens one join only.
"""
from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

import orjson
from altcha import ChallengeOptionsV1, create_challenge_v1, extract_params_v1, verify_solution_v1

from .settings import BotProtection

# why a solution was refused: the metric's bounded label values, and the error's `reason`
REASONS = ("missing", "malformed", "invalid", "expired", "reused")
PAYLOAD_MAX = 4096  # a real payload is ~300 bytes of base64


class Refused(Exception):
    def __init__(self, reason: str, message: str):
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason
        self.message = message


def issue(key: bytes, room: str, protection: BotProtection, now_s: float) -> dict[str, Any]:
    """A signed challenge for `room`, as the ALTCHA widget (and any ALTCHA solver) reads it."""
    expires = datetime.fromtimestamp(now_s + protection.expires_s, UTC)
    challenge = create_challenge_v1(ChallengeOptionsV1(hmac_key=key, max_number=protection.max_number, expires=expires,
                                                       params={"room": room}))
    return challenge.to_dict()


def verify(key: bytes, room: str, payload: Any, now_s: float) -> tuple[str, int]:
    """(the challenge's id, ms until it expires) for a valid solution of a challenge issued for `room` and not
    expired; Refused otherwise. `payload`: the base64 JSON the widget produces. Whether it was used is the
    caller's to check (the id, for the ms returned)."""
    if payload is None:
        raise Refused("missing", "this room lets in people, not bots: a join needs a solved challenge")
    try:
        if not isinstance(payload, str) or len(payload) > PAYLOAD_MAX:
            raise ValueError
        fields = orjson.loads(base64.b64decode(payload, validate=True))
        if not isinstance(fields, dict) or not all(isinstance(fields.get(k), str) for k in
                                                   ("algorithm", "challenge", "salt", "signature")):
            raise ValueError
        if isinstance(fields.get("number"), bool) or not isinstance(fields.get("number"), int):
            raise ValueError
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise Refused("malformed", "altcha: expected the base64 JSON payload of a solved challenge "
                                   "{algorithm, challenge, number, salt, signature}") from None
    payload_fields: Any = fields  # checked above: the library's PayloadType
    ok, _ = verify_solution_v1(payload_fields, key, check_expires=False)  # expiry against our clock, below
    params = extract_params_v1(payload_fields)
    if not ok or params.get("room") != [room]:
        raise Refused("invalid", "altcha: the solution does not solve a challenge this room issued")
    expires = params.get("expires", [""])[-1]
    if not expires.isdigit() or int(expires) <= now_s:
        raise Refused("expired", "altcha: the challenge has expired; solve a new one")
    return fields["challenge"], int((int(expires) - now_s) * 1000) + 1000
