"""The `apiKeys` check: `Authorization: Bearer <key>`, `x-api-key: <key>`, or the password of
`Authorization: Basic` (what a browser sends once its user answered the prompt; llama-swap's
swaputil.ExtractAPIKey reads the same three)."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping, Sequence


def presented(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if scheme.lower() == "basic" and token.strip():
        try:
            pair = base64.b64decode(token.strip(), validate=True).decode("utf-8", "surrogateescape")
        except (binascii.Error, ValueError):
            return None
        _, colon, password = pair.partition(":")
        return password if colon and password else None
    key = headers.get("x-api-key", "").strip()
    return key or None


def from_browser(headers: Mapping[str, str]) -> bool:
    """Browsers send Sec-Fetch-Mode on every request (navigations, fetches, EventSource); the
    API clients send none."""
    return "Sec-Fetch-Mode" in headers


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
