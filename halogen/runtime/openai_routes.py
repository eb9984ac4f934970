"""OpenAI's API (and llama.cpp's own inference routes): the model named in the body is held
and the request goes to it as sent, after the config's rewrites; `/v1/models` lists the models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from halogen.runtime import multipart, proxy
from halogen.runtime.context import parse_json, runtime_of

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


def register(application: web.Application) -> None:
    for path in OPENAI_ROUTES:
        application.router.add_post(path, openai_route)
    application.router.add_get("/v1/models", list_models)


async def openai_route(request: web.Request) -> web.StreamResponse:
    runtime = runtime_of(request)
    body = await request.read()
    content_type = request.headers.get("Content-Type", "")
    mark = multipart.boundary(content_type)
    if mark is not None:
        span = multipart.value_span(body, mark, "model")
        model_id = runtime.model_id(multipart.value(body, span), request)
        runnable = runtime.resolved.models[model_id]
        if runnable.use_model_name:
            body = multipart.replace(body, span, runnable.use_model_name)
    else:
        data = parse_json(body)
        model_id = runtime.model_id(data.get("model"), request)
        rewritten = proxy.rewrite(runtime.resolved.models[model_id], data)
        if rewritten is not None:
            body = proxy.encode(rewritten)
    # The path and query as sent, in origin form even when the request line held an absolute URL.
    return await runtime.forward(request, model_id, request.rel_url.raw_path_qs, body)


def row(name: str, title: str, description: str, meta: Mapping[str, Any], created: int) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "halogen",
        "name": title,
        "description": description,
        "meta": {"llamaswap": dict(meta)},
    }


async def list_models(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    resolved = runtime.resolved
    rows = []
    for mid, runnable in resolved.models.items():
        if runnable.unlisted:
            continue
        names = [mid, *runnable.aliases] if resolved.include_aliases_in_list else [mid]
        for name in names:
            rows.append(row(name, runnable.name, runnable.description, runnable.metadata, runtime.created))
    # Selectors and the active profile's pins, as llama-swap lists them (internal/server/api.go).
    for sid, selector in resolved.selectors.items():
        if selector.unlisted:
            continue
        meta = {
            **selector.metadata,
            "type": "selector",
            "strategy": selector.strategy,
            "targets": list(selector.targets),
        }
        if selector.strategy == "spillover":
            meta["spillover"] = selector.spillover
        rows.append(row(sid, selector.name, selector.description, meta, runtime.created))
    profile = resolved.profiles.get(runtime.swapper.profile)
    if profile is not None:
        listed = {str(r["id"]) for r in rows} | set(resolved.models) | set(resolved.selectors)
        for pin, target in profile.pins.items():
            if target and pin not in listed:
                rows.append(row(pin, "", "", {"type": "profile"}, runtime.created))
    rows.sort(key=lambda row: str(row["id"]))
    return web.json_response({"object": "list", "data": rows})
