"""Signing keys, the queue-position and access tokens, and offline verification with the JWKS.

Access tokens are JWTs signed with RS256 (RSA 2048), ES256 (P-256) or EdDSA (Ed25519), verifiable by
anyone with the JWKS; queue-position tokens are HS256 JWTs under a per-key secret that only the
waiting room holds. Each key has a `kid`. Rotation publishes the next key first and only signs with it
from `signs_from_s` (the pre-publication: longer than any verifier caches the JWKS, so nobody meets a
token whose key it has not fetched), and keeps the old one published (in the JWKS, and accepted by
`verify`) for a grace period that outlives every token it signed, then drops it. The ring itself is
pure data: the service keeps generated keys' records in the store (sealed with AES-GCM under a
key-encryption key when one is configured) so every worker signs with the same keys; keys from the
configuration (`SigningKey.from_pem`) are never stored.

Signing is on the join hot path, so the header segment is encoded once per key and the payload
with orjson; PyJWT's algorithm objects do the signature (raw r||s for ES256, as JWS requires).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ALGORITHMS = ("ES256", "EdDSA", "RS256")
_ALG_OBJECTS = {"ES256": ECAlgorithm(ECAlgorithm.SHA256), "EdDSA": OKPAlgorithm(), "RS256": RSAAlgorithm(RSAAlgorithm.SHA256)}
ISSUER = "eventweir-waitingroom"
QUEUE_TOKEN_TTL_S = 86_400  # proof of a queue position: a visitor may wait this long
VERIFIED_CACHE = 20_000  # access tokens remembered as verified (~1 KB each), then the memo starts over


class TokenError(Exception):
    """A token failed verification; `reason` is a short code (signature, expired, audience, token_use, kid, malformed)."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class KeyStoreError(Exception):
    """The stored or configured signing keys cannot be used (sealed without the key-encryption key, a wrong
    key-encryption key, a PEM that is not a private key). Never carries key material."""


_TO_URLSAFE, _FROM_URLSAFE = bytes.maketrans(b"+/", b"-_"), bytes.maketrans(b"-_", b"+/")


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(secret)


def key_encryption_key(secret: str) -> bytes:
    """The AES-256 key that seals generated signing keys in the store, from the configured secret (>= 32 chars)."""
    return _hkdf(secret.encode(), b"eventweir-waitingroom key encryption")


def _alg_of(private_key: Any) -> str:
    if isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size >= 2048:
        return "RS256"
    if isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(private_key.curve, ec.SECP256R1):
        return "ES256"
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise KeyStoreError("expected an RSA (2048 bits or more), P-256 or Ed25519 private key")


@dataclass(slots=True)
class SigningKey:
    kid: str
    alg: str
    private_key: Any
    created_s: float
    retire_at_s: float | None = None  # None: current signer or still in use; else dropped after this time
    queue_secret: bytes = b""         # HS256 secret of the queue-position tokens this key's era issues
    signs_from_s: float = 0.0         # published before this, signs from it (math.inf: only ever verifies)
    configured: bool = False          # from the configuration: never written to the store
    _header: bytes = b""
    _queue_header: bytes = b""
    _public: Any = None

    def __post_init__(self) -> None:
        if not self.queue_secret:
            self.queue_secret = secrets.token_bytes(32)
        self._public = self.private_key.public_key()
        self._header = _b64(orjson.dumps({"alg": self.alg, "kid": self.kid, "typ": "JWT"}))
        self._queue_header = _b64(orjson.dumps({"alg": "HS256", "kid": self.kid, "typ": "JWT"}))

    @classmethod
    def generate(cls, alg: str, now_s: float) -> SigningKey:
        if alg not in ALGORITHMS:
            raise ValueError(f"token algorithm: expected one of {list(ALGORITHMS)}, got {alg!r}")
        key: Any
        if alg == "RS256":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            key = ed25519.Ed25519PrivateKey.generate()
        return cls(kid=secrets.token_urlsafe(9), alg=alg, private_key=key, created_s=now_s, signs_from_s=now_s)

    @classmethod
    def from_pem(cls, pem: bytes, *, signs: bool) -> SigningKey:
        """A key from the configuration (a mounted Secret's file): the algorithm follows the key type, the kid is
        its RFC 7638 thumbprint and the queue-token secret is derived from it, so every worker, restart and
        empty Redis agrees on all three without storing anything."""
        try:
            private_key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise KeyStoreError("expected an unencrypted PEM private key") from None
        alg = _alg_of(private_key)
        jwk = orjson.loads(_ALG_OBJECTS[alg].to_jwk(private_key.public_key()))
        members = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
        thumb = hashlib.sha256(orjson.dumps({k: jwk[k] for k in members}, option=orjson.OPT_SORT_KEYS)).digest()
        der = private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        return cls(kid=_b64(thumb).decode()[:16], alg=alg, private_key=private_key, created_s=0.0,
                   queue_secret=_hkdf(der, b"eventweir-waitingroom queue tokens"),
                   signs_from_s=0.0 if signs else math.inf, configured=True)

    def sign(self, claims: dict[str, Any]) -> str:
        signing_input = self._header + b"." + _b64(orjson.dumps(claims))
        return (signing_input + b"." + _b64(_ALG_OBJECTS[self.alg].sign(signing_input, self.private_key))).decode()

    def sign_queue(self, claims: dict[str, Any]) -> str:
        """Queue-position tokens are only ever checked by the waiting room itself, so a MAC is enough —
        and it costs ~2 us where an asymmetric signature costs ~60 us on every join."""
        signing_input = self._queue_header + b"." + _b64(orjson.dumps(claims))
        return (signing_input + b"." + _b64(hmac.digest(self.queue_secret, signing_input, "sha256"))).decode()

    def public_jwk(self) -> dict[str, Any]:
        jwk = orjson.loads(_ALG_OBJECTS[self.alg].to_jwk(self.private_key.public_key()))
        jwk.update(kid=self.kid, alg=self.alg, use="sig")
        return jwk

    def to_record(self, kek: bytes | None = None) -> dict[str, Any]:
        """The stored form. With a key-encryption key the private parts are sealed (AES-GCM, the kid as associated
        data, so a sealed blob cannot be moved to another record): reading Redis is then not the power to sign."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        secret_parts = {"pem": pem, "queue_secret": base64.b64encode(self.queue_secret).decode()}
        rec: dict[str, Any] = {"kid": self.kid, "alg": self.alg, "created_s": self.created_s,
                               "retire_at_s": self.retire_at_s, "signs_from_s": self.signs_from_s}
        if kek is None:
            rec.update(secret_parts)
        else:
            nonce = secrets.token_bytes(12)
            sealed = AESGCM(kek).encrypt(nonce, orjson.dumps(secret_parts), self.kid.encode())
            rec["sealed"] = base64.b64encode(nonce + sealed).decode()
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any], kek: bytes | None = None) -> SigningKey:
        if "sealed" in rec:
            if kek is None:
                raise KeyStoreError("the stored signing keys are sealed: set waitingroom.key_encryption_key")
            blob = base64.b64decode(rec["sealed"])
            try:
                parts = orjson.loads(AESGCM(kek).decrypt(blob[:12], blob[12:], rec["kid"].encode()))
            except InvalidTag:
                raise KeyStoreError("the stored signing keys do not open with waitingroom.key_encryption_key "
                                    "(a different key sealed them)") from None
        else:
            parts = rec
        key = serialization.load_pem_private_key(parts["pem"].encode(), password=None)
        return cls(kid=rec["kid"], alg=rec["alg"], private_key=key, created_s=float(rec["created_s"]),
                   retire_at_s=None if rec.get("retire_at_s") is None else float(rec["retire_at_s"]),
                   queue_secret=base64.b64decode(parts["queue_secret"]),
                   signs_from_s=float(rec.get("signs_from_s", rec["created_s"])))


class KeyRing:
    """The signer, the next key while it is pre-published, and retired keys still inside their grace period."""

    def __init__(self, keys: list[SigningKey], active_kid: str, *, issuer: str = ISSUER):
        self.keys = {k.kid: k for k in keys}
        if active_kid not in self.keys:
            raise ValueError(f"active key {active_kid!r} is not in the ring")
        self.active = self.keys[active_kid]
        self.issuer = issuer
        self._next_switch_s = -math.inf  # select() looks again from this time on
        self._verified: dict[str, tuple[dict[str, Any], SigningKey]] = {}

    def select(self, now_s: float) -> SigningKey:
        """The signer at `now_s`: of the keys whose signing has begun, the last to begin. Every worker computes
        the same from the same records and clock, so a pre-published key starts signing everywhere at once."""
        if now_s >= self._next_switch_s:
            started = [k for k in self.keys.values()
                       if k.signs_from_s <= now_s and (k.retire_at_s is None or k.retire_at_s > now_s)]
            if started:
                self.active = max(started, key=lambda k: k.signs_from_s)
            self._next_switch_s = min((k.signs_from_s for k in self.keys.values() if k.signs_from_s > now_s),
                                      default=math.inf)
        return self.active

    def pending(self, now_s: float) -> SigningKey | None:
        """The next key: published, not signing yet."""
        return next((k for k in self.keys.values() if now_s < k.signs_from_s < math.inf), None)

    def published(self, now_s: float) -> list[SigningKey]:
        return [k for k in self.keys.values() if k.retire_at_s is None or k.retire_at_s > now_s]

    def rotate(self, alg: str, now_s: float, grace_s: float, prepublish_s: float = 0.0) -> SigningKey:
        """Publish a new key now that signs from `now_s + prepublish_s` (> every verifier's JWKS cache lifetime);
        the old signer stays published for `grace_s` (>= longest token lifetime) after that. A next key that has
        not signed yet is replaced: nothing it could verify exists."""
        signer = self.select(now_s)
        for kid in [k.kid for k in self.keys.values() if k.signs_from_s > now_s and not k.configured]:
            del self.keys[kid]
        new = SigningKey.generate(alg, now_s)
        new.signs_from_s = now_s + max(0.0, prepublish_s)
        signer.retire_at_s = new.signs_from_s + grace_s
        self.keys[new.kid] = new
        self._next_switch_s = -math.inf
        self.select(now_s)
        if new.signs_from_s <= now_s:  # no pre-publication: it signs now, even if the old key began in the same instant
            self.active = new
        return new

    def prune(self, now_s: float) -> list[str]:
        """Drop keys that nothing issued can need: retired from the JWKS, and past the longest queue token's life
        since (a visitor still waiting holds a queue token of the key that signed at their join)."""
        gone = [kid for kid, k in self.keys.items()
                if k.retire_at_s is not None and k.retire_at_s + QUEUE_TOKEN_TTL_S <= now_s]
        for kid in gone:
            del self.keys[kid]
        return gone

    def jwks(self, now_s: float) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.published(now_s)]}

    def sign(self, claims: dict[str, Any]) -> str:
        return self.active.sign(claims)

    def sign_queue(self, claims: dict[str, Any]) -> str:
        return self.active.sign_queue(claims)

    def verify_queue(self, token: str, *, audience: str, now_s: float | None = None) -> dict[str, Any]:
        """A queue-position token issued by this deployment: the visitor's proof of their place, checked on every
        status poll, so it is done by hand (one HMAC, one JSON parse) rather than through PyJWT."""
        now = _now(now_s)
        try:
            header, payload, sig = token.encode("ascii").split(b".")
            key = next((k for k in self.keys.values() if k._queue_header == header), None)
            if key is None:
                raise TokenError("kid", "not a queue token of this waiting room (unknown or rotated-out key)")
            # hmac.digest and binascii: the one-shot C paths (hmac.new and base64's urlsafe helpers cost twice as much)
            mac = binascii.b2a_base64(hmac.digest(key.queue_secret, header + b"." + payload, "sha256"), newline=False)
            if not hmac.compare_digest(mac.translate(_TO_URLSAFE).rstrip(b"="), sig):
                raise TokenError("signature", "signature verification failed")
            claims = orjson.loads(binascii.a2b_base64(payload.translate(_FROM_URLSAFE) + b"=" * (-len(payload) % 4)))
        except (ValueError, orjson.JSONDecodeError):  # not ASCII, not three segments, bad base64 or JSON
            raise TokenError("malformed", "not a JWT") from None
        if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int) or not isinstance(claims.get("sub"), str):
            raise TokenError("malformed", "a queue token has an integer exp and a string sub")
        if claims.get("aud") != audience:
            raise TokenError("audience", f"token is for {claims.get('aud')!r}, not {audience!r}")
        if now >= claims["exp"]:
            raise TokenError("expired", f"token expired at {claims['exp']}")
        if claims.get("token_use") != "queue":
            raise TokenError("token_use", f"expected token_use 'queue', got {claims.get('token_use')!r}")
        return claims

    def verify(self, token: str, *, audience: str, token_use: str, now_s: float | None = None,
               leeway_s: float = 0) -> dict[str, Any]:
        """Verify as a protected site would with the JWKS: known, still-published kid; signature; exp/nbf; aud; token_use."""
        return verify_with_jwks(token, self.jwks(_now(now_s)), audience=audience, token_use=token_use,
                                now_s=now_s, leeway_s=leeway_s)


    def verify_access(self, token: str, *, audience: str, now_s: float) -> dict[str, Any]:
        """verify() for forward-auth, which runs on every request to the protected site: the signature is
        checked once per token with the ring's own key objects (a token we issued carries exactly one of
        our header segments), then the token is remembered; the time, audience and key checks run every time."""
        hit = self._verified.get(token)
        if hit is None:
            hit = self._check_signature(token)
            if len(self._verified) >= VERIFIED_CACHE:
                self._verified.clear()
            self._verified[token] = hit
        claims, key = hit
        if self.keys.get(key.kid) is not key or (key.retire_at_s is not None and key.retire_at_s <= now_s):
            raise TokenError("kid", f"key {key.kid!r} is not published (unknown or rotated out)")
        if claims.get("aud") != audience:
            raise TokenError("audience", f"token is for {claims.get('aud')!r}, not {audience!r}")
        if claims.get("token_use") != "access" or claims.get("iss") != self.issuer:
            raise TokenError("token_use", f"expected an access token, got {claims.get('token_use')!r}")
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, int) or not isinstance(nbf, int):
            raise TokenError("malformed", "exp and nbf must be integers")
        if now_s >= exp:
            raise TokenError("expired", f"token expired at {exp}")
        if now_s < nbf:
            raise TokenError("not_yet_valid", f"token not valid before {nbf}")
        return claims

    def _check_signature(self, token: str) -> tuple[dict[str, Any], SigningKey]:
        try:
            header, payload, sig = token.encode("ascii").split(b".")
            key = next((k for k in self.keys.values() if k._header == header), None)
            if key is None:
                raise TokenError("kid", "not signed by a key of this waiting room")
            signature = base64.urlsafe_b64decode(sig + b"=" * (-len(sig) % 4))
            if not _ALG_OBJECTS[key.alg].verify(header + b"." + payload, key._public, signature):
                raise TokenError("signature", "signature verification failed")
            claims = orjson.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
        except (ValueError, orjson.JSONDecodeError):  # not ASCII, not three segments, bad base64 (binascii.Error)
            raise TokenError("malformed", "not a JWT") from None
        if not isinstance(claims, dict):
            raise TokenError("malformed", "the payload is not a JSON object")
        return claims, key


def _now(now_s: float | None) -> float:
    import time

    return time.time() if now_s is None else now_s


def verify_with_jwks(token: str, jwks: dict[str, Any], *, audience: str, token_use: str,
                     now_s: float | None = None, leeway_s: float = 0) -> dict[str, Any]:
    """Offline verification with a published JWKS document (what the protected site runs)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenError("malformed", str(exc)) from None
    kid, alg = header.get("kid"), header.get("alg")
    if alg not in ALGORITHMS:
        raise TokenError("algorithm", f"expected one of {list(ALGORITHMS)}, got {alg!r}")
    jwk = next((k for k in jwks.get("keys", []) if k.get("kid") == kid), None)
    if jwk is None:
        raise TokenError("kid", f"key {kid!r} is not published (unknown or rotated out)")
    if jwk.get("alg") != alg:
        raise TokenError("algorithm", f"key {kid!r} is {jwk.get('alg')}, token says {alg}")
    now = _now(now_s)
    try:
        claims = jwt.decode(
            token, jwt.PyJWK(jwk).key, algorithms=[alg], audience=audience, leeway=leeway_s,
            options={"require": ["exp", "iat", "aud", "sub"], "verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
    except jwt.InvalidAudienceError as exc:
        raise TokenError("audience", str(exc)) from None
    except jwt.InvalidSignatureError as exc:
        raise TokenError("signature", str(exc)) from None
    except jwt.PyJWTError as exc:
        raise TokenError("malformed", str(exc)) from None
    # time checks against our clock (so tests and replays can pin "now")
    if now >= claims["exp"] + leeway_s:
        raise TokenError("expired", f"token expired at {claims['exp']}")
    if "nbf" in claims and now + leeway_s < claims["nbf"]:
        raise TokenError("not_yet_valid", f"token not valid before {claims['nbf']}")
    if claims.get("token_use") != token_use:
        raise TokenError("token_use", f"expected token_use {token_use!r}, got {claims.get('token_use')!r}")
    return claims


def verify_site_claim(token: str, secret: str, room_id: str) -> dict[str, Any]:
    """The protected site's signed claim (HS256 with the room's claim_secret): priority class or exemption."""
    try:
        return jwt.decode(token, secret, algorithms=["HS256"], audience=room_id, options={"require": ["exp", "aud"]})
    except jwt.PyJWTError as exc:
        raise TokenError("claim", f"site claim rejected: {exc}") from None
