"""llama-swap's UI API (the /api/ routes its web UI at /ui/ is fed by): the event stream,
activity, captures, the requests in flight, performance and hardware. The routes, as internal/server/server.go registers them (llama-swap),
answering errors in llama-swap's shape."""

from __future__ import annotations

import math
import re
from datetime import datetime

from aiohttp import web

from halogen.runtime.apis import ui_events as stream
from halogen.runtime.base import activity, shapes
from halogen.runtime.base.errors import BadRequest, NotFound, Unavailable
from halogen.runtime.forward.context import runtime_of


def register(application: web.Application) -> None:
    application.cleanup_ctx.append(stream.feed)
    application.on_shutdown.append(stream.close_streams)
    application.on_response_prepare.append(stream.answered)
    api = shapes.Routes(application, shapes.llama_swap)
    api.add_get("/api/events", stream.stream)
    api.add_post("/api/inflight/{id}/cancel", cancel_inflight)
    api.add_get("/api/metrics/activity", activity_page)
    api.add_get("/api/metrics/stats", activity_stats)
    api.add_get("/api/captures/{id}", capture)
    api.add_get("/api/performance", performance)
    api.add_get("/api/hardware", hardware)


async def cancel_inflight(request: web.Request) -> web.Response:
    """handleAPICancelInflight (internal/server/apigroup.go): the request's answer ends and its
    row goes as the request's own end removes it."""
    if not runtime_of(request).inflight.cancel(request.match_info["id"]):
        raise NotFound("inflight request not found")
    return web.json_response({"msg": "ok"})


def rfc3339_param(request: web.Request, name: str) -> float | None:
    """An RFC 3339 time query parameter as Unix seconds; None when absent (parseActivityTime in
    internal/server/apigroup.go, llama-swap)."""
    raw = request.query.get(name, "").strip()
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or "T" not in raw.upper():
        raise BadRequest(f"invalid '{name}' timestamp, use RFC3339 format")
    return moment.timestamp()


def _positive(request: web.Request, name: str, message: str) -> int:
    raw = request.query.get(name, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw, 10)
    except ValueError:
        raise BadRequest(message) from None
    if value < 1:
        raise BadRequest(message)
    return value


def activity_query(request: web.Request) -> activity.Query:
    """parseActivityQuery (internal/server/apigroup.go, llama-swap): each bad parameter is a 400
    naming it."""
    models = tuple(m.strip() for m in request.query.getall("model", []) if m.strip())
    start, end = rfc3339_param(request, "start"), rfc3339_param(request, "end")
    if start is not None and end is not None and start > end:
        raise BadRequest("start must be before end")
    min_id = _positive(request, "min_id", "min_id must be >= 1")
    max_id = _positive(request, "max_id", "max_id must be >= 1")
    if min_id and max_id and min_id > max_id:
        raise BadRequest("min_id must be <= max_id")
    limit = 25
    raw = request.query.get("limit", "").strip()
    if raw:
        try:
            limit = int(raw, 10)
        except ValueError:
            raise BadRequest("invalid limit") from None
        if not 0 < limit < 1000:
            raise BadRequest("limit must be between 1 and 999")
    page = _positive(request, "page", "page must be >= 1") or 1
    sort = request.query.get("sort", "").strip() or "id"
    if sort not in activity.SORT_COLUMNS:
        raise BadRequest("invalid sort column")
    order = request.query.get("order", "").strip().lower() or "desc"
    if order not in ("asc", "desc"):
        raise BadRequest("order must be asc or desc")
    return activity.Query(models, start, end, min_id, max_id, limit, page, sort, order)


async def activity_page(request: web.Request) -> web.Response:
    """handleAPIActivity: one page of the activity log (ActivityPage in ui/src/lib/types.ts)."""
    runtime = runtime_of(request)
    query = activity_query(request)
    rows, total = await runtime.activity.page(query)
    captured = runtime.captures.has
    return web.json_response(
        {
            "data": [row.json(captured(row.id)) for row in rows],
            "page": query.page,
            "limit": query.limit,
            "total": total,
            "total_pages": math.ceil(total / query.limit) if total else 0,
        }
    )


async def activity_stats(request: web.Request) -> web.Response:
    """handleAPIActivityStats: totals and the speed histograms, of one model or all."""
    model = request.query.get("model", "").strip()
    return web.json_response(await runtime_of(request).activity.stats(model))


_ATOI = re.compile(r"[+-]?[0-9]+")


async def capture(request: web.Request) -> web.Response:
    """handleAPICapture: the capture of an activity row, by its id."""
    raw = request.match_info["id"]
    if not _ATOI.fullmatch(raw) or len(raw) > 19:  # strconv.Atoi's syntax, an int64
        raise BadRequest("invalid capture ID")
    found = runtime_of(request).captures.get(int(raw))
    if found is None:
        raise NotFound("capture not found")
    return web.json_response(found)


async def performance(request: web.Request) -> web.Response:
    """handleAPIPerformance: the samples (of the last hour), those after `?after=<RFC 3339>`
    when given; 503 `{"enabled": false}` under performance.disabled."""
    sampler = request.app.get(stream.SAMPLER)
    if sampler is None:
        return web.json_response({"enabled": False}, status=503)
    after = None
    if request.query.get("after", ""):
        try:
            after = rfc3339_param(request, "after")
        except BadRequest:
            raise BadRequest("invalid 'after' timestamp, use RFC3339 format") from None
    sys_stats, gpu_stats = sampler.after(after)
    return web.json_response({"enabled": True, "sys_stats": sys_stats, "gpu_stats": gpu_stats})


async def hardware(request: web.Request) -> web.Response:
    """handleAPIHardware: the host as detected at start (HardwareSnapshot, internal/hw)."""
    snapshot = request.app.get(stream.HARDWARE)
    if snapshot is None:
        raise Unavailable("hardware detection unavailable")
    return web.json_response(snapshot)
