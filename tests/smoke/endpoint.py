"""A small aiohttp stand-in for a deployed endpoint, in-process on a loopback port: the model
list, the config version (header and /api/version) and the check routes in llama-server's and
Ollama's shapes, each answer replaceable by a test to make it fail or turn hostile."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from halogen.smoke.client import CONFIG_VERSION_HEADER

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CHECKED = frozenset({"/v1/chat/completions", "/api/chat", "/v1/embeddings", "/v1/rerank"})
TIMINGS = {"prompt_n": 120, "prompt_ms": 60.0, "predicted_n": 32, "predicted_ms": 400.0}


@dataclass
class Endpoint:
    models: list[dict[str, Any]] = field(default_factory=lambda: [{"id": "m"}])
    version: str | None = None  # sent as the header and as /api/version's configVersion
    version_in_json_only: bool = False
    api_key: str | None = None
    delay: float = 0.0  # seconds each chat answer waits: overlapping requests show concurrency
    overrides: dict[str, Handler] = field(default_factory=dict)
    seen: list[tuple[float, str, str]] = field(default_factory=list)  # (time, path, model)
    in_flight: int = 0  # check requests being answered now
    most_in_flight: int = 0
    url: str = ""

    def requests(self, path: str) -> list[tuple[float, str, str]]:
        return [s for s in self.seen if s[1] == path]


def _app(state: Endpoint) -> web.Application:
    @web.middleware
    async def common(request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        model = ""
        if body:
            with contextlib.suppress(ValueError, AttributeError):
                model = str(json.loads(body).get("model", ""))
        state.seen.append((time.monotonic(), request.path, model))
        if state.api_key is not None and request.headers.get("Authorization") != f"Bearer {state.api_key}":
            response: web.StreamResponse = web.json_response(
                {"error": {"message": "Invalid API Key", "type": "authentication_error"}}, status=401
            )
        else:
            chosen = state.overrides.get(request.path, handler)
            checked = request.path in CHECKED
            state.in_flight += checked
            state.most_in_flight = max(state.most_in_flight, state.in_flight)
            try:
                response = await chosen(request)
            finally:
                state.in_flight -= checked
        if state.version and not state.version_in_json_only and not response.prepared:
            response.headers[CONFIG_VERSION_HEADER] = state.version
        return response

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": state.models})

    async def version(request: web.Request) -> web.Response:
        body: dict[str, Any] = {"version": "0.12.6"}
        if state.version:
            body["configVersion"] = state.version
        return web.json_response(body)

    async def running(request: web.Request) -> web.Response:
        return web.json_response({"running": []})

    async def show(request: web.Request) -> web.Response:
        name = (await request.json())["model"]
        row = next((m for m in state.models if m["id"] == name), {})
        return web.json_response({"capabilities": row.get("ollama", ["completion"])})

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        await asyncio.sleep(state.delay)
        if not body.get("stream"):
            return web.json_response(
                {
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "one, two"}}],
                    "usage": {"prompt_tokens": 120, "completion_tokens": 32},
                    "timings": TIMINGS,
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        if state.version and not state.version_in_json_only:
            response.headers[CONFIG_VERSION_HEADER] = state.version
        await response.prepare(request)
        for piece in ("one", ", two"):
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "timings": TIMINGS}
        await response.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
        return response

    async def ollama_chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        await asyncio.sleep(state.delay)
        said = {"model": body["model"], "message": {"role": "assistant", "content": "one"}, "done": False}
        done = {"model": body["model"], "message": {"role": "assistant", "content": ""}, "done": True}
        if body.get("stream") is False:
            return web.json_response({**said, "done": True, "eval_count": 1})
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await response.write((json.dumps(said) + "\n" + json.dumps(done) + "\n").encode())
        return response

    async def embeddings(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"index": 0, "embedding": [0.1, 0.2]}]})

    async def rerank(request: web.Request) -> web.Response:
        documents = (await request.json())["documents"]
        return web.json_response(
            {"results": [{"index": i, "relevance_score": 0.5} for i in range(len(documents))]}
        )

    app = web.Application(middlewares=[common])
    app.router.add_get("/v1/models", models)
    app.router.add_get("/api/version", version)
    app.router.add_get("/running", running)
    app.router.add_post("/api/show", show)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/api/chat", ollama_chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/rerank", rerank)
    return app


@asynccontextmanager
async def endpoint(state: Endpoint | None = None) -> AsyncIterator[Endpoint]:
    """`state` served on a free loopback port (its `url` set) while the block runs."""
    state = state or Endpoint()
    runner = web.AppRunner(_app(state), shutdown_timeout=0.5)  # a stalled handler is cut short
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()
