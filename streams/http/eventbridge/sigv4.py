"""AWS Signature Version 4 verification (what boto3 and every AWS SDK sign requests with).

The server recomputes the signature from the request (method, path, query, the signed headers,
the body's SHA-256) with the secret of the access key named in the credential scope, and compares
in constant time. Requests dated more than 15 minutes away from now are refused, as AWS does.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 15 * 60
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)
_SPACES = re.compile(r"\s+")


class SignatureError(Exception):
    """The request is not signed, or not signed validly. `code` is AWS's error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(("AWS4" + secret).encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def canonical_request(method: str, path: str, query: list[tuple[str, str]], headers, signed: list[str],
                      payload_hash: str) -> str:
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query)
    )
    lines = []
    for name in signed:
        values = headers.getall(name, []) if hasattr(headers, "getall") else [headers.get(name, "")]
        lines.append(f"{name}:{','.join(_SPACES.sub(' ', v.strip()) for v in values)}")
    return "\n".join([method, quote(path or "/", safe="/~"), canonical_query, "\n".join(lines) + "\n",
                      ";".join(signed), payload_hash])


def verify(method: str, path: str, query: list[tuple[str, str]], headers, body: bytes,
           secrets: dict[str, str], now: datetime | None = None) -> str:
    """Return the access key id of a validly signed request, else raise SignatureError."""
    match = _AUTH.match(headers.get("Authorization", "").strip())
    if not match:
        raise SignatureError("IncompleteSignature", "Authorization header is not a valid AWS4-HMAC-SHA256 signature")
    parts = match["cred"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SignatureError("IncompleteSignature", f"credential scope {match['cred']!r} is not valid")
    access_key, date, region, service, _ = parts
    secret = secrets.get(access_key)
    if secret is None:
        raise SignatureError("UnrecognizedClientException", "The security token included in the request is invalid.")
    amz_date = headers.get("X-Amz-Date", "")
    try:
        when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError("IncompleteSignature", "X-Amz-Date header is missing or not valid") from None
    now = now or datetime.now(UTC)
    if abs((now - when).total_seconds()) > MAX_SKEW_S or not amz_date.startswith(date):
        raise SignatureError("InvalidSignatureException", "Signature expired: request time is too far from now.")
    signed = match["signed"].split(";")
    if "host" not in signed:
        raise SignatureError("InvalidSignatureException", "the host header must be signed")
    payload_hash = headers.get("X-Amz-Content-SHA256") or hashlib.sha256(body).hexdigest()
    if payload_hash != "UNSIGNED-PAYLOAD" and payload_hash != hashlib.sha256(body).hexdigest():
        raise SignatureError("InvalidSignatureException", "the body does not match X-Amz-Content-SHA256")
    request = canonical_request(method, path, query, headers, signed, payload_hash)
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])
    expected = hmac.new(signing_key(secret, date, region, service), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match["sig"]):
        raise SignatureError("InvalidSignatureException",
                             "The request signature we calculated does not match the signature you provided.")
    return access_key
