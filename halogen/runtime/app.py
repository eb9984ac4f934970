"""The HTTP application of `halogen serve`: the middlewares every route shares, then one routes
module per API (OpenAI, Ollama, management). Nothing imports this module but the server."""

from __future__ import annotations

from aiohttp import web

from halogen.runtime import anthropic_routes, management, openai_routes
from halogen.runtime.context import RUNTIME, Runtime
from halogen.runtime.listen import DEFAULT_MAX_BODY
from halogen.runtime.middleware import access_middleware, error_middleware, key_middleware
from halogen.runtime.ollama import routes as ollama_routes


def build(runtime: Runtime, *, max_body: int = DEFAULT_MAX_BODY) -> web.Application:
    app = web.Application(
        middlewares=[access_middleware, error_middleware, key_middleware], client_max_size=max_body
    )
    app[RUNTIME] = runtime
    openai_routes.register(app)
    anthropic_routes.register(app)
    management.register(app)
    ollama_routes.register(app)
    return app
