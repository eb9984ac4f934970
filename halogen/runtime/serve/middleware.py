"""The middlewares every route shares: the access log, the one place a failure becomes an error
body (in the shape the route's family declared, `shapes`), and API keys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from halogen.runtime.base import shapes
from halogen.runtime.base.errors import BrowserUnauthorized, Refusal, Unauthorized
from halogen.runtime.base.logs import Level
from halogen.runtime.forward.context import MODEL, runtime_of
from halogen.runtime.serve import auth

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Routes polled by probes and scrapers: logged at debug, not info.
QUIET = frozenset({"/health", "/wol-health", "/metrics"})
# Answered without a key, as llama-swap registers them outside its auth chain (server.go).
UNGUARDED = frozenset({"/health", "/wol-health"})


async def error_response(
    request: web.Request,
    status: int,
    message: str,
    kind: str,
    code: str | int,
    headers: dict[str, str] | None = None,
) -> web.Response:
    shape = await shapes.shape_of(request)
    return web.json_response(shape(status, message, kind, code), status=status, headers=headers)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One stdout line per request once it is answered: client, method, path (no query),
    status (499: the client went away), model, and the time to the end of the answer."""
    began = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except asyncio.CancelledError:
        status = 499
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        runtime_of(request).naming.release(request)
        logs = runtime_of(request).logs
        level: Level = "debug" if request.path in QUIET else "info"
        if logs.echoes(level):
            model = request.get(MODEL)
            logs.access(
                f'{request.remote} "{request.method} {request.rel_url.raw_path}" {status}'
                + (f" model={model}" if model else "")
                + f" {1000 * (time.perf_counter() - began):.1f} ms",
                level,
            )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes one JSON error body, in the shape of the route's family."""
    try:
        return await handler(request)
    except Refusal as exc:
        level: Level = "error" if exc.status >= 500 else "info"
        runtime_of(request).logs.proxy(f"{request.method} {request.path}: {exc.status} {exc.message}", level)
        return await error_response(request, exc.status, exc.text(), exc.kind, exc.code, exc.headers())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = "invalid_request_error" if exc.status < 500 else "server_error"
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return await error_response(request, exc.status, exc.reason, kind, exc.status, headers)


@web.middleware
async def key_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    keys = runtime_of(request).resolved.api_keys
    if keys and request.path not in UNGUARDED and not auth.allowed(request.headers, keys):
        # A browser is asked for the key (Basic, the key as the password: llama-swap's answer in
        # internal/server/auth.go) on the web UI's pages and on llama-swap's /api/ routes; Sec-Fetch-Mode
        # says a browser sent the request (navigations, fetches, EventSource), which no API client
        # sends, so their Bearer challenge stays.
        page = request.path == "/ui" or request.path.startswith("/ui/")
        if page or "Sec-Fetch-Mode" in request.headers or await shapes.shape_of(request) is shapes.llama_swap:
            raise BrowserUnauthorized("unauthorized: invalid or missing API key")
        raise Unauthorized("a valid API key is required (Authorization: Bearer <key> or x-api-key)")
    return await handler(request)
