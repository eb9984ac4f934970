"""llama-swap's management API: health, the running models, unloading, a model's own server
under `/upstream/<model>/`, metrics and logs."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote

from aiohttp import web

from halogen.runtime.apis import exposition
from halogen.runtime.base import shapes
from halogen.runtime.base.errors import BadRequest, NotLoaded, ProfileNotFound, UnknownModel, clip
from halogen.runtime.base.logs import PROXY_LINES, UPSTREAM_LINES
from halogen.runtime.forward import peers
from halogen.runtime.forward.context import Runtime, read_json, runtime_of
from halogen.runtime.process.upstream import State


def register(application: web.Application) -> None:
    # halogen's contract (and its tests) give these llama-swap routes the error body of the
    # OpenAI routes beside them: `/upstream/<model>/…` reaches a model's own OpenAI-style server.
    router = shapes.Routes(application, shapes.openai)
    router.add_get("/health", health)
    router.add_get("/wol-health", health)
    router.add_get("/running", running)
    router.add_route("GET", "/unload", unload_all)
    router.add_route("POST", "/unload", unload_all)
    router.add_post("/unload/{model:.+}", unload_one)
    router.add_route("*", "/upstream/{tail:.*}", upstream_route)
    router.add_get("/metrics", metrics)
    router.add_get("/logs", logs)
    router.add_get("/logs/stream", logs_stream)
    router.add_get("/logs/stream/{source:.+}", logs_stream)
    # The same as llama-swap's UI calls them (internal/server/apigroup.go), answering errors as
    # llama-swap does, though Ollama's routes share the /api/ prefix.
    api = shapes.Routes(application, shapes.llama_swap)
    api.add_post("/api/models/unload", api_unload_all)
    api.add_post("/api/models/unload/{model:.+}", api_unload_one)
    api.add_get("/api/profiles", profiles)
    api.add_put("/api/profiles/active", activate_profile)


async def health(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def running(request: web.Request) -> web.Response:
    rows = [
        {
            "model": r.model,
            "state": str(r.state),
            "cmd": r.cmd,
            "proxy": r.proxy,
            "ttl": r.ttl,
            "rule": r.rule,
        }
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
    model_id = runtime.naming.model_id(request.match_info["model"])
    was_running = runtime.swapper.slot(model_id).phase is not State.STOPPED
    await runtime.swapper.unload(model_id)
    return web.json_response({"status": "ok", "unloaded": [model_id] if was_running else []})


async def api_unload_all(request: web.Request) -> web.Response:
    await runtime_of(request).swapper.unload_all()
    return web.json_response({"msg": "ok"})


async def api_unload_one(request: web.Request) -> web.Response:
    """handleAPIUnloadModel: a local model by its id or an alias (no selector, no profile)."""
    runtime = runtime_of(request)
    name = request.match_info["model"]
    model_id = runtime.resolved.lookup(name)
    if model_id is None:
        raise UnknownModel(name)
    await runtime.swapper.unload(model_id)
    return web.Response(text="OK")


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
    resolved = runtime.resolved

    def named(name: str) -> str | None:
        # A local id or alias, else a peer's model by the name asked (a local name wins).
        return resolved.lookup(name) or (name if resolved.peer(name) is not None else None)

    model_id, path = split_upstream_path(raw_path.removeprefix("/upstream/"), named)
    route = None if resolved.lookup(model_id) is not None else resolved.peer(model_id)
    if route is not None:
        return await peers.forward_upstream(request, runtime, route, model_id, path, query)
    # handleUpstream in internal/server/api.go (llama-swap): a static asset a UI asks for never
    # starts a model.
    idle = runtime.swapper.slot(model_id).phase is not State.READY
    if idle and any(p.search(unquote(path)) for p in runtime.resolved.upstream_ignore_paths):
        raise NotLoaded(f"model {model_id} is not loaded; path matches upstream.ignorePaths")
    runtime.refuse_idle_websocket(request, model_id)
    body = await request.read()
    path_qs = path + ("?" + query if query else "")
    return await runtime.forward(request, model_id, path_qs, body or None)


async def metrics(request: web.Request) -> web.Response:
    body = await exposition.render(request.app, runtime_of(request))
    headers = {"Content-Type": exposition.CONTENT_TYPE, "X-Content-Type-Options": "nosniff"}
    return web.Response(body=body, headers=headers)


async def logs(request: web.Request) -> web.Response:
    lines = runtime_of(request).logs.history()
    return web.Response(text="".join(line + "\n" for line in lines))


def log_source(runtime: Runtime, name: str) -> str | None:
    """Which lines `/logs/stream/<name>` shows (getLogger in internal/server/log.go, llama-swap):
    every line for no name, the proxy's or every model's for `proxy` and `upstream`, else one
    local model's, by its id or an alias."""
    if name in ("", PROXY_LINES, UPSTREAM_LINES):
        return name or None
    model_id = runtime.resolved.lookup(name)
    if model_id is None:
        raise BadRequest("invalid logger. Use 'proxy', 'upstream' or a model's ID")
    return model_id


async def logs_stream(request: web.Request) -> web.StreamResponse:
    runtime = runtime_of(request)
    wanted = log_source(runtime, request.match_info.get("source", ""))
    headers = {"Content-Type": "text/plain; charset=utf-8", "X-Accel-Buffering": "no"}
    if request.method == "HEAD":
        # The headers only: a stream that never ends would hold the connection for ever.
        return web.Response(headers=headers)
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    follow = runtime.logs.follow(wanted)
    try:
        history = [] if "no-history" in request.query else runtime.logs.history(wanted)
        if history:
            await response.write("".join(line + "\n" for line in history).encode())
        async for line in follow:
            await response.write((line + "\n").encode())
    finally:
        follow.close()
    return response


# --- profiles (llama-swap's internal/server/apigroup.go) ------------------------------------


async def profiles(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    rows = [
        {"id": pid, "description": profile.description, "pins": dict(profile.pins)}
        for pid, profile in sorted(runtime.resolved.profiles.items())
    ]
    return web.json_response({"active": runtime.swapper.profile or None, "profiles": rows})


async def activate_profile(request: web.Request) -> web.Response:
    """`{"name": "<profile>"}` activates a profile, `{"name": null}` (or "") none."""
    runtime = runtime_of(request)
    body = await read_json(request)
    if "name" not in body:
        raise BadRequest("profile name is required")
    name = body["name"]
    if name is None:
        name = ""
    if not isinstance(name, str):
        raise BadRequest("profile name must be a string or null")
    if name and name not in runtime.resolved.profiles:
        raise ProfileNotFound(f"profile {name!r} not found")
    if name != runtime.swapper.profile:
        runtime.logs.proxy(f"profile {name or 'none'!r} active" if name else "no profile active")
    runtime.swapper.profile = name
    return web.json_response({"active": name or None})
