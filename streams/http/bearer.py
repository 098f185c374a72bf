"""The token of an `Authorization: Bearer <token>` header, shared by the APIs that take one."""
from __future__ import annotations


def bearer_token(header: str) -> bytes | None:
    """The token, or None when the header is not the Bearer scheme. Auth schemes are
    case-insensitive (RFC 9110): `bearer` and `BEARER` are Bearer too."""
    scheme, _, credentials = header.partition(" ")
    return credentials.strip().encode() if scheme.lower() == "bearer" else None
