"""The `apiKeys` check: `Authorization: Bearer <key>` or `x-api-key: <key>`."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence


def presented(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
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
