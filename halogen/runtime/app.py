"""The HTTP surface of `halogen serve`: OpenAI routes, management routes, and the middlewares
(API keys, error bodies) that every route shares."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from halogen.llamaswap.resolve import Resolved
from halogen.runtime import auth, connections, multipart, ollama_routes, origin, proxy
from halogen.runtime.errors import (
    BadRequest,
    MissingModel,
    Refusal,
    Unauthorized,
    UnknownModel,
    clip,
)
from halogen.runtime.listen import DEFAULT_LIMITS, DEFAULT_MAX_BODY, Limits
from halogen.runtime.logs import Level, Logs
from halogen.runtime.metrics import Metrics
from halogen.runtime.swapper import Swapper
from halogen.runtime.upstream import State, Upstream

# Routes whose model is named in the request body; everything after the host goes upstream.
OPENAI_ROUTES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/rerank",
    "/rerank",
    "/reranking",
    "/v1/audio/transcriptions",
    "/infill",
    "/completion",
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The model a request went to, for the access log.
MODEL = web.RequestKey("model", str)
# Routes polled by probes and scrapers: logged at debug, not info.
QUIET = frozenset({"/health", "/metrics"})


@dataclass
class Counted:
    """The status a request to a model ends with, as /metrics counts it."""

    status: int = 500  # what an unforeseen exception is counted as


@dataclass
class Runtime:
    """What every route works with."""

    swapper: Swapper
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def resolved(self) -> Resolved:
        # Read through the Swapper so a config reload is seen by every route at once.
        return self.swapper.resolved

    @property
    def logs(self) -> Logs:
        return self.swapper.logs

    @property
    def metrics(self) -> Metrics:
        return self.swapper.metrics

    def model_id(self, name: Any) -> str:
        """The model id a request names; `MissingModel` or `UnknownModel` otherwise."""
        if not isinstance(name, str) or not name.strip():
            raise MissingModel('the request names no "model"')
        found = self.resolved.lookup(name)
        if found is None:
            raise UnknownModel(name)
        return found

    @contextlib.contextmanager
    def counted(self, model_id: str) -> Iterator[Counted]:
        """Count one request to `model_id` under the status the body sets, a refusal's own,
        or 499 when the client goes away."""
        counted = Counted()
        try:
            yield counted
        except Refusal as exc:
            counted.status = exc.status
            raise
        except asyncio.CancelledError:
            counted.status = 499  # the client went away
            raise
        finally:
            self.metrics.request(model_id, counted.status)

    @contextlib.asynccontextmanager
    async def holding(
        self, request: web.Request, model_id: str, keep_alive: float | None = None
    ) -> AsyncIterator[tuple[Counted, Upstream]]:
        """Hold `model_id` (started or swapped in as needed) for one request, counted under
        the status the block sets (see `counted`); `keep_alive` as `Swapper.acquire` takes it."""
        request[MODEL] = model_id
        with self.counted(model_id) as counted:
            async with self.swapper.acquire(model_id, keep_alive) as upstream:
                yield counted, upstream

    async def forward(
        self, request: web.Request, model_id: str, path_qs: str, body: bytes | None
    ) -> web.StreamResponse:
        """Send a request to `model_id` and stream its answer back."""
        async with self.holding(request, model_id) as (counted, upstream):
            response, outcome = await proxy.forward(
                request,
                upstream,
                path_qs=path_qs,
                body=body,
                drop_credentials=bool(self.resolved.api_keys),
            )
            counted.status = 502 if outcome.broken else outcome.status
            self.metrics.tokens(model_id, outcome.tokens)
        return response


RUNTIME = web.AppKey("runtime", Runtime)


def runtime_of(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


# --- errors and keys ----------------------------------------------------------------------


def ollama_style(path: str) -> bool:
    return path == "/" or path.startswith("/api/")


def error_response(
    path: str, status: int, message: str, kind: str, code: str | int, headers: dict[str, str] | None = None
) -> web.Response:
    if ollama_style(path):
        body: dict[str, Any] = {"error": message}
    else:
        body = {"error": {"message": message, "type": kind, "code": code}}
    return web.json_response(body, status=status, headers=headers)


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
    """Every failure becomes one JSON error body, in the style of the route's API."""
    try:
        return await handler(request)
    except Refusal as exc:
        level: Level = "error" if exc.status >= 500 else "info"
        runtime_of(request).logs.proxy(f"{request.method} {request.path}: {exc.status} {exc.message}", level)
        return error_response(request.path, exc.status, exc.text(), exc.kind, exc.code, exc.headers())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = "invalid_request_error" if exc.status < 500 else "server_error"
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return error_response(request.path, exc.status, exc.reason, kind, exc.status, headers)


@web.middleware
async def key_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    keys = runtime_of(request).resolved.api_keys
    if keys and request.path != "/health" and not auth.allowed(request.headers, keys):
        raise Unauthorized("a valid API key is required (Authorization: Bearer <key> or x-api-key)")
    return await handler(request)


# --- OpenAI routes ------------------------------------------------------------------------


# Deeper JSON is refused: Python's parser, comparisons and encoder recurse once per level, and
# a body nested close to the interpreter's recursion limit would fail in whichever comes first.
MAX_JSON_DEPTH = 256


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except RecursionError:
        raise BadRequest(f"the request body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    # Fewer brackets than the limit cannot nest deeper than it: most bodies are not walked.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _deeper_than(data, MAX_JSON_DEPTH):
        raise BadRequest(f"the request body nests deeper than {MAX_JSON_DEPTH} levels")
    return data


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether `data` holds containers nested more than `limit` deep (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


async def openai_route(request: web.Request) -> web.StreamResponse:
    runtime = runtime_of(request)
    body = await request.read()
    content_type = request.headers.get("Content-Type", "")
    mark = multipart.boundary(content_type)
    if mark is not None:
        span = multipart.value_span(body, mark, "model")
        model_id = runtime.model_id(multipart.value(body, span))
        runnable = runtime.resolved.models[model_id]
        if runnable.use_model_name:
            body = multipart.replace(body, span, runnable.use_model_name)
    else:
        data = parse_json(body)
        model_id = runtime.model_id(data.get("model"))
        rewritten = proxy.rewrite(runtime.resolved.models[model_id], data)
        if rewritten is not None:
            body = proxy.encode(rewritten)
    # The path and query as sent, in origin form even when the request line held an absolute URL.
    return await runtime.forward(request, model_id, request.rel_url.raw_path_qs, body)


async def list_models(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    resolved = runtime.resolved
    rows = []
    for mid, runnable in resolved.models.items():
        if runnable.unlisted:
            continue
        names = [mid, *runnable.aliases] if resolved.include_aliases_in_list else [mid]
        for name in names:
            rows.append(
                {
                    "id": name,
                    "object": "model",
                    "created": runtime.created,
                    "owned_by": "halogen",
                    "name": runnable.name,
                    "description": runnable.description,
                    "meta": {"llamaswap": dict(runnable.metadata)},
                }
            )
    rows.sort(key=lambda row: str(row["id"]))
    return web.json_response({"object": "list", "data": rows})


# --- management ---------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def running(request: web.Request) -> web.Response:
    rows = [
        {"model": r.model, "state": str(r.state), "cmd": r.cmd, "proxy": r.proxy, "ttl": r.ttl}
        for r in runtime_of(request).swapper.running()
    ]
    return web.json_response({"running": rows})


async def unload_all(request: web.Request) -> web.Response:
    swapper = runtime_of(request).swapper
    unloaded = sorted(swapper.active())
    await swapper.unload_all()
    return web.json_response({"status": "ok", "unloaded": unloaded})


async def unload_one(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    model_id = runtime.model_id(request.match_info["model"])
    was_running = runtime.swapper.slot(model_id).phase is not State.STOPPED
    await runtime.swapper.unload(model_id)
    return web.json_response({"status": "ok", "unloaded": [model_id] if was_running else []})


def split_upstream_path(raw: str, lookup: Callable[[str], str | None]) -> tuple[str, str]:
    """(model id, path) from the raw path after `/upstream/`.

    A model id may itself hold `/`, so the longest prefix that names a model wins. The rest
    must be a plain relative path: no `.` or `..` segments, no empty segment (`//host`), no
    encoded `/` or `\\` — it can only ever reach a path on that model's own server.
    """
    segments = raw.split("/")
    for cut in range(len(segments), 0, -1):
        model_id = lookup(unquote("/".join(segments[:cut])))
        if model_id is None:
            continue
        rest = segments[cut:]
        for index, segment in enumerate(rest):
            decoded = unquote(segment)
            last = index == len(rest) - 1
            if decoded in (".", "..") or "/" in decoded or "\\" in decoded or (not decoded and not last):
                raise BadRequest(f"upstream path {clip('/' + '/'.join(rest))} is not a plain relative path")
        return model_id, "/" + "/".join(rest)
    raise UnknownModel(unquote(segments[0]))


async def upstream_route(request: web.Request) -> web.StreamResponse:
    runtime = runtime_of(request)
    # `rel_url` is the path and query as sent, also when the request line held an absolute URL
    # (whose host names nothing here).
    raw_path, query = request.rel_url.raw_path, request.rel_url.raw_query_string
    model_id, path = split_upstream_path(raw_path.removeprefix("/upstream/"), runtime.resolved.lookup)
    body = await request.read()
    path_qs = path + ("?" + query if query else "")
    return await runtime.forward(request, model_id, path_qs, body or None)


async def metrics(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    running = dict.fromkeys(runtime.swapper.active(), True)
    text = runtime.metrics.render(running, runtime.swapper.in_flight())
    return web.Response(text=text, content_type="text/plain", headers={"X-Content-Type-Options": "nosniff"})


async def logs(request: web.Request) -> web.Response:
    lines = runtime_of(request).logs.history()
    return web.Response(text="".join(line + "\n" for line in lines))


async def logs_stream(request: web.Request) -> web.StreamResponse:
    runtime = runtime_of(request)
    headers = {"Content-Type": "text/plain; charset=utf-8", "X-Accel-Buffering": "no"}
    if request.method == "HEAD":
        # The headers only: a stream that never ends would hold the connection for ever.
        return web.Response(headers=headers)
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    follow = runtime.logs.follow()
    try:
        history = [] if "no-history" in request.query else runtime.logs.history()
        if history:
            await response.write("".join(line + "\n" for line in history).encode())
        async for line in follow:
            await response.write((line + "\n").encode())
    finally:
        follow.close()
    return response


# --- assembly -----------------------------------------------------------------------------


def build(
    runtime: Runtime,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    limits: Limits = DEFAULT_LIMITS,
    allow_origins: Sequence[str] = (),
) -> web.Application:
    app = web.Application(
        middlewares=[
            connections.guard_middleware,
            access_middleware,
            error_middleware,
            origin.middleware(allow_origins),
            key_middleware,
            connections.body_middleware(limits, max_body),
        ],
        client_max_size=max_body,
    )
    app.on_response_prepare.append(origin.cors_headers)
    app[RUNTIME] = runtime
    for path in OPENAI_ROUTES:
        app.router.add_post(path, openai_route)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
    app.router.add_get("/running", running)
    app.router.add_route("GET", "/unload", unload_all)
    app.router.add_route("POST", "/unload", unload_all)
    app.router.add_post("/unload/{model:.+}", unload_one)
    app.router.add_route("*", "/upstream/{tail:.*}", upstream_route)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/logs", logs)
    app.router.add_get("/logs/stream", logs_stream)
    ollama_routes.register(app)
    return app
