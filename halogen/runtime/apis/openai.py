"""OpenAI's API (and llama.cpp's own inference routes): the model named in the body is held
and the request goes to it as sent, after the config's rewrites; `/v1/models` lists the models."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from halogen.llamaswap.config import Capabilities
from halogen.llamaswap.resolved import PeerRoute
from halogen.runtime.base import shapes
from halogen.runtime.base.errors import UnknownModel
from halogen.runtime.forward import jsonbody, peers, proxy
from halogen.runtime.forward.carried import Carried, upstream_path
from halogen.runtime.forward.context import Runtime, runtime_of
from halogen.runtime.forward.loading import LOADING_PATHS
from halogen.runtime.process.upstream import State

# Routes whose model is named in the request body (a JSON field, or a multipart form field for
# transcriptions and image edits) or, on GET, in the query; everything after the host goes
# upstream. The lists follow modelPostJSONRoutes, modelPostFormRoutes and modelGetRoutes in
# internal/server/server.go (llama-swap); `/v/…` and `/audioapi/…` lose their prefix on the way
# (carried.upstream_path).
OPENAI_ROUTES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/responses/input_tokens",
    "/v1/embeddings",
    "/v1/rerank",
    "/v1/reranking",
    "/rerank",
    "/reranking",
    "/v1/audio/transcriptions",
    "/v1/audio/speech",
    "/v1/audio/voices",
    "/v1/images/generations",
    "/v1/images/edits",
    "/sdapi/v1/txt2img",
    "/sdapi/v1/img2img",
    "/audioapi/v1/tasks/run",
    "/infill",
    "/completion",
    "/v/chat/completions",
    "/v/responses",
    "/v/completions",
    "/v/embeddings",
    "/v/rerank",
    "/v/reranking",
)
GET_ROUTES = ("/v1/audio/voices", "/sdapi/v1/loras", "/props")


def register(application: web.Application) -> None:
    routes = shapes.Routes(application, shapes.openai)
    for path in OPENAI_ROUTES:
        routes.add_post(path, openai_route)
    for path in GET_ROUTES:
        routes.add_get(path, openai_route)
    routes.add_get("/v1/models", list_models)
    routes.add_get("/models", list_models)
    # A model id may hold "/"; OpenAI's "retrieve model".
    routes.add_get("/v1/models/{model:.+}", get_model)


async def openai_route(request: web.Request) -> web.StreamResponse:
    runtime = runtime_of(request)
    path = upstream_path(request.rel_url.raw_path)
    content_type = request.headers.get("Content-Type", "")
    body = await request.read()
    carried = await Carried.receive(
        request.method, content_type, body, request.rel_url.raw_query_string, json=True
    )
    named = runtime.naming.named(carried.asked, request)
    if named.name != carried.asked:
        carried = carried.naming(named.name)
    if named.peer is not None:
        return await peers.forward(request, runtime, named.peer, path, carried)
    model_id = named.model_id
    runtime.refuse_idle_websocket(request, model_id)
    runnable = runtime.resolved.models[model_id]
    show_loading = False
    if carried.is_json:
        # The body is parsed only when a filter changes more than its model.
        if proxy.filters(runnable, named.name):
            data = await jsonbody.parse_sliced(carried.body)
            rewritten = proxy.rewrite(runnable, data, named.name)
            if rewritten is not None:
                carried = dataclasses.replace(carried, body=proxy.encode(rewritten))
        elif runnable.use_model_name:
            carried = carried.naming(runnable.use_model_name)
        # internal/router/base.go (llama-swap): streamed chat completions only.
        show_loading = runnable.send_loading_state and carried.streams and path in LOADING_PATHS
    elif carried.form is not None and runnable.use_model_name:
        # CreateFormFilterMiddleware (internal/server/filters.go): a form gets useModelName only.
        carried = carried.naming(runnable.use_model_name)
    return await runtime.forward(
        request, model_id, carried.path_qs(path), carried.body, show_loading=show_loading
    )


def model_record(runtime: Runtime, name: str, model_id: str) -> dict[str, Any]:
    """The /v1/models entry of `name`, which names the model `model_id` (itself or an alias)."""
    runnable = runtime.resolved.models[model_id]
    record: dict[str, Any] = {
        "id": name,
        "object": "model",
        "created": runtime.created,
        "owned_by": "halogen",
        "name": runnable.name,
        "description": runnable.description,
        "meta": {"llamaswap": dict(runnable.metadata)},
        "status": {"value": model_status(runtime, model_id)},
    }
    if not runnable.capabilities.empty():
        rendered = render_capabilities(runnable.capabilities)
        record.update(rendered)
        # The rendered fields win over metadata keys of the same name (cappedMetadataKeys).
        record["meta"]["llamaswap"] = {k: v for k, v in runnable.metadata.items() if k not in CAPPED_METADATA}
        if "context_length" in rendered:
            record["meta"]["n_ctx"] = rendered["context_length"]
    return record


CAPPED_METADATA = frozenset({"architecture", "capabilities", "supported_parameters", "context_length"})


def render_capabilities(caps: Capabilities) -> dict[str, Any]:
    """The /v1/models fields a `capabilities` block gives, as renderCapabilities in
    internal/server/api.go (llama-swap), the shape OpenRouter-style clients read."""
    out: dict[str, Any] = {}
    arch: dict[str, Any] = {}
    if caps.in_:
        arch["input_modalities"] = list(caps.in_)
    if caps.out:
        arch["output_modalities"] = list(caps.out)
    if caps.in_ and caps.out:
        arch["modality"] = "+".join(caps.in_) + "->" + "+".join(caps.out)
    if arch:
        out["architecture"] = arch
    flags: dict[str, bool] = {}
    if "image" in caps.in_:
        flags["vision"] = True
    pairs = (
        ("audio", "text", "audio_transcriptions"),
        ("text", "audio", "audio_speech"),
        ("text", "image", "image_generation"),
        ("image", "image", "image_to_image"),
    )
    for given, made, flag in pairs:
        if given in caps.in_ and made in caps.out:
            flags[flag] = True
    if caps.tools:
        flags["function_calling"] = True
        out["supported_parameters"] = ["tools", "tool_choice"]
    if caps.reranker:
        flags["reranker"] = True
    if flags or caps.in_ or caps.out:
        out["capabilities"] = flags
    if caps.context:
        out["context_length"] = caps.context
    return out


def peer_record(runtime: Runtime, name: str, route: PeerRoute) -> dict[str, Any]:
    """The /v1/models entry of a peer's model (handleListModels, internal/server/api.go):
    never loaded here."""
    return {
        "id": name,
        "object": "model",
        "created": runtime.created,
        "owned_by": "halogen",
        "name": f"{route.peer}: {route.model}",
        "meta": {"llamaswap": {"type": "peer", "peerID": route.peer}},
        "status": {"value": "unloaded"},
    }


def model_status(runtime: Runtime, model_id: str) -> str:
    """`loaded`, `loading` or `unloaded`: llama.cpp's router mode reports each model so in
    `status.value` (server_model_status_to_string, tools/server), which Open WebUI reads;
    llama-swap's listing (internal/server/api.go) uses the same field."""
    phase = runtime.swapper.slot(model_id).phase
    if phase is State.READY:
        return "loaded"
    if phase is State.STARTING:
        return "loading"
    return "unloaded"


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
    rows: list[dict[str, Any]] = []
    for mid, runnable in resolved.models.items():
        if runnable.unlisted:
            continue
        names = [mid, *runnable.aliases] if resolved.include_aliases_in_list else [mid]
        rows.extend(model_record(runtime, name, mid) for name in names)
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
    rows.extend(peer_record(runtime, fqn, resolved.peers[fqn]) for fqn in resolved.peer_names)
    rows.sort(key=lambda row: str(row["id"]))
    return web.json_response({"object": "list", "data": rows})


async def get_model(request: web.Request) -> web.Response:
    """One model by its id or an alias, as the listing shows it; unlisted models too, since
    they answer requests. An unknown id is a 404 in OpenAI's shape."""
    runtime = runtime_of(request)
    name = request.match_info["model"]
    model_id = runtime.resolved.lookup(name)
    if model_id is None:
        route = runtime.resolved.peer(name)
        if route is None:
            raise UnknownModel(name)
        return web.json_response(peer_record(runtime, name, route))
    return web.json_response(model_record(runtime, name, model_id))
