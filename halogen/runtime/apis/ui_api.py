"""llama-swap's UI API (the /api/ routes its web UI at /ui/ is fed by): the event stream,
activity, captures, the requests in flight, performance and hardware. The routes, as internal/server/server.go registers them (llama-swap),
answering errors in llama-swap's shape."""

from __future__ import annotations

from aiohttp import web

from halogen.runtime.apis import ui_events as stream
from halogen.runtime.base import shapes
from halogen.runtime.base.errors import NotFound
from halogen.runtime.forward.context import runtime_of


def register(application: web.Application) -> None:
    application.cleanup_ctx.append(stream.feed)
    application.on_shutdown.append(stream.close_streams)
    application.on_response_prepare.append(stream.answered)
    api = shapes.Routes(application, shapes.llama_swap)
    api.add_get("/api/events", stream.stream)
    api.add_post("/api/inflight/{id}/cancel", cancel_inflight)


async def cancel_inflight(request: web.Request) -> web.Response:
    """handleAPICancelInflight (internal/server/apigroup.go): the request's answer ends and its
    row goes as the request's own end removes it."""
    if not runtime_of(request).inflight.cancel(request.match_info["id"]):
        raise NotFound("inflight request not found")
    return web.json_response({"msg": "ok"})
