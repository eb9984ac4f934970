"""The `apiKeys` check: `Authorization: Bearer <key>`, `Authorization: Basic` with the key as
the password, or `x-api-key: <key>` (ExtractAPIKey in internal/swaputil/http.go, llama-swap)."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping, Sequence


def _basic_password(credentials: str) -> str | None:
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8", "surrogateescape")
    except (binascii.Error, ValueError):
        return None
    _user, colon, password = decoded.partition(":")
    return password if colon and password else None


def presented(headers: Mapping[str, str]) -> str | None:
    """The key a request offers: Basic's password first, then Bearer, then x-api-key, as
    llama-swap prefers them."""
    authorization = headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "basic":
        password = _basic_password(token)
        if password is not None:
            return password
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


def allowed(headers: Mapping[str, str], keys: Sequence[str]) -> bool:
    """True when no keys are configured or the request carries one of them. Every key is
    compared, in constant time, so the answer's timing says nothing about which came close."""
    if not keys:
        return True
    offered = presented(headers)
    if offered is None:
        return False
    # Header values arrive as UTF-8 with undecodable bytes escaped: encode them back to the
    # bytes sent (a key that is not UTF-8 is simply wrong, not an error).
    candidate = offered.encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.encode())
    return matched
