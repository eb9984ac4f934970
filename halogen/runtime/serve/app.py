"""The HTTP application of `halogen serve`: the middlewares every route shares, then one routes
module per API (OpenAI, Ollama, management). Nothing imports this module but the server."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from halogen.runtime.apis import anthropic as anthropic_routes
from halogen.runtime.apis import exposition, management, observed, ui_api
from halogen.runtime.apis import openai as openai_routes
from halogen.runtime.apis.ollama import routes as ollama_routes
from halogen.runtime.forward import peers
from halogen.runtime.forward.context import RUNTIME, Runtime
from halogen.runtime.serve import connections, hosts, origin, version
from halogen.runtime.serve.listen import DEFAULT_LIMITS, DEFAULT_MAX_BODY, Limits
from halogen.runtime.serve.middleware import access_middleware, error_middleware, key_middleware
from halogen.runtime.ui import routes as ui_routes


def build(
    runtime: Runtime,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    limits: Limits = DEFAULT_LIMITS,
    allow_origins: Sequence[str] = (),
    allow_hosts: hosts.Hosts | None = None,
) -> web.Application:
    """`allow_hosts`: the names a request's Host may give (by default, those of a server on
    loopback)."""
    allowed = allow_hosts if allow_hosts is not None else hosts.Hosts.of(hosts.default_names("127.0.0.1"))
    app = web.Application(
        middlewares=[
            connections.guard_middleware,
            access_middleware,
            error_middleware,
            hosts.middleware(allowed),
            origin.middleware(allow_origins),
            key_middleware,
            connections.body_middleware(limits, max_body),
        ],
        client_max_size=max_body,
    )
    app.on_response_prepare.append(origin.cors_headers)
    app.on_response_prepare.append(version.header)
    app[RUNTIME] = runtime
    observer = observed.Observer(observed.budget_from_env(), lambda line: runtime.logs.proxy(line))
    app[observed.OBSERVER] = observer
    app[exposition.REGISTRY] = exposition.registry(runtime, observer)
    openai_routes.register(app)
    peers.register(app)
    anthropic_routes.register(app)
    management.register(app)
    ui_api.register(app)
    ollama_routes.register(app)
    ui_routes.register(app)
    return app
