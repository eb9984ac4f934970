"""Anthropic's Messages API, which llama-server serves itself: `/v1/messages` and
`/v1/messages/count_tokens` go to the model named in the body like OpenAI's routes, and every
error halogen gives on them is in Anthropic's shape, which its clients parse."""

from __future__ import annotations

from aiohttp import web

from halogen.runtime.apis.openai import openai_route
from halogen.runtime.base import shapes
from halogen.runtime.forward.message_start import MESSAGES

# internal/server/server.go (llama-swap) lists these with the other routes whose model is in the
# JSON body (`/v/…` reaches the model's server as `/messages…`, carried.upstream_path).
ANTHROPIC_ROUTES = (*MESSAGES, *(f"{path}/count_tokens" for path in MESSAGES))


def register(application: web.Application) -> None:
    routes = shapes.Routes(application, shapes.anthropic)
    for path in ANTHROPIC_ROUTES:
        routes.add_post(path, openai_route)


def anthropic_style(path: str) -> bool:
    """Whether `path` is one of this family's routes."""
    return path in ANTHROPIC_ROUTES
