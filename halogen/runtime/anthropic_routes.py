"""Anthropic's Messages API, which llama-server serves itself: `/v1/messages` and
`/v1/messages/count_tokens` go to the model named in the body like OpenAI's routes, and every
error halogen gives on them is in Anthropic's shape, which its clients parse."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from halogen.runtime.message_start import MESSAGES
from halogen.runtime.openai_routes import openai_route

# internal/server/server.go (llama-swap) lists these with the other routes whose model is in the
# JSON body (`/v/…` reaches the model's server as `/messages…`, carried.upstream_path).
ANTHROPIC_ROUTES = (*MESSAGES, *(f"{path}/count_tokens" for path in MESSAGES))

# Anthropic's error types by HTTP status (its API reference, "Errors"); any other 4xx is an
# invalid request, any other 5xx an API error.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def register(application: web.Application) -> None:
    for path in ANTHROPIC_ROUTES:
        application.router.add_post(path, openai_route)


def anthropic_style(path: str) -> bool:
    return path in ANTHROPIC_ROUTES


def error_body(status: int, message: str) -> dict[str, Any]:
    """`{"type": "error", "error": {"type": ..., "message": ...}}`, the type by the status."""
    kind = _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}
