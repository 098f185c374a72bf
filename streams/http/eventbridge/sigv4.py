"""AWS Signature Version 4 verification (what boto3 and every AWS SDK sign requests with).

The server recomputes the signature from the request (method, path, query, the signed headers,
the body's SHA-256) with the secret of the access key named in the credential scope, and compares
in constant time. The canonical path and query are built from the request as it was sent, the way
botocore's signer builds them (botocore.utils.normalize_url_path, the raw query sorted by its
encoded keys), so every request botocore signs verifies. Refused, as AWS refuses them: requests
dated more than 15 minutes away from now, a credential scope for another service or a region this
API does not serve, an unsigned payload (AWS allows that for S3 only), and an X-Amz-Target that is
not signed (a captured request could be replayed as another operation).
"""
from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from botocore.utils import normalize_url_path

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


def canonical_request(method: str, raw_path: str, headers, signed: list[str], payload_hash: str) -> str:
    """`raw_path`: the path and query exactly as sent (still percent-encoded)."""
    parts = urlsplit(raw_path)
    pairs = sorted(pair.partition("=")[::2] for pair in parts.query.split("&")) if parts.query else []
    canonical_query = "&".join(f"{key}={value}" for key, value in pairs)
    lines = []
    for name in signed:
        values = headers.getall(name, []) if hasattr(headers, "getall") else [headers.get(name, "")]
        lines.append(f"{name}:{','.join(_SPACES.sub(' ', v.strip()) for v in values)}")
    path = quote(normalize_url_path(parts.path or "/"), safe="/~")
    return "\n".join([method, path, canonical_query, "\n".join(lines) + "\n", ";".join(signed), payload_hash])


def verify(method: str, raw_path: str, headers, body: bytes, secrets: dict[str, str], *,
           regions: set[str] | None = None, service: str = "events", now: datetime | None = None) -> str:
    """Return the access key id of a validly signed request, else raise SignatureError.
    `regions`: those the credential scope may name (None: any)."""
    match = _AUTH.match(headers.get("Authorization", "").strip())
    if not match:
        raise SignatureError("IncompleteSignature", "Authorization header is not a valid AWS4-HMAC-SHA256 signature")
    parts = match["cred"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SignatureError("IncompleteSignature", f"credential scope {match['cred']!r} is not valid")
    access_key, date, region, scope_service, _ = parts
    if scope_service != service:
        raise SignatureError("InvalidSignatureException", f"Credential should be scoped to correct service: '{service}'.")
    if regions is not None and region not in regions:
        raise SignatureError("InvalidSignatureException", f"Credential should be scoped to a valid region, not "
                                                          f"'{region}': this API serves {', '.join(sorted(regions))}.")
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
    if "x-amz-target" in headers and "x-amz-target" not in signed:
        raise SignatureError("InvalidSignatureException", "the X-Amz-Target header must be signed")
    payload_hash = hashlib.sha256(body).hexdigest()
    if headers.get("X-Amz-Content-SHA256", payload_hash) != payload_hash:  # UNSIGNED-PAYLOAD too: S3 only
        raise SignatureError("InvalidSignatureException", "the body does not match X-Amz-Content-SHA256")
    request = canonical_request(method, raw_path, headers, signed, headers.get("X-Amz-Content-SHA256", payload_hash))
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])
    expected = hmac.new(signing_key(secret, date, region, service), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match["sig"]):
        raise SignatureError("InvalidSignatureException",
                             "The request signature we calculated does not match the signature you provided.")
    return access_key
