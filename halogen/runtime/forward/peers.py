"""llama-swap's `peers`: models another server offers, reached through this one as
`<peer>/<model>` (or by the bare name when exactly one peer offers it and no local model has
it). The request goes to the peer's proxy URL with the model name the peer knows, the peer's
filters and `apiKey` (internal/router/peer.go); a peer that is down is a 502 naming it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from halogen.llamaswap.resolved import PeerRoute, peer_fqn
from halogen.runtime.forward import jsonbody, proxy
from halogen.runtime.forward.carried import Carried
from halogen.runtime.forward.context import Runtime
from halogen.runtime.forward.naming import Named
from halogen.runtime.forward.relay import relay, sent
from halogen.runtime.forward.target import SESSIONS


async def close_sessions(app: web.Application) -> None:
    for client in app[SESSIONS].values():
        await client.close()


def register(app: web.Application) -> None:
    app[SESSIONS] = {}
    app.on_cleanup.append(close_sessions)


def rewrite(route: PeerRoute, data: dict[str, Any]) -> dict[str, Any]:
    """The body for the peer: the model as the peer knows it, then the peer's filters
    (applyFilters in internal/server/filters.go: strip, then set)."""
    out = dict(data)
    out["model"] = route.model
    for key in route.strip_params:
        out.pop(key, None)
    for key, value in route.set_params.items():
        proxy.set_path(out, key, value)
    return out


async def forward(
    request: web.Request, runtime: Runtime, route: PeerRoute, path: str, carried: Carried
) -> web.StreamResponse:
    """Send a request for a peer's model to `path` on the peer, the model renamed to the peer's
    own wherever the request carries it, a JSON body with the peer's filters too, and stream
    the peer's answer back."""
    if not carried.is_json:
        carried = carried.naming(route.model)
        return await _relay(request, runtime, route, carried.path_qs(path), carried.body)
    if route.strip_params or route.set_params:
        body = proxy.encode(rewrite(route, await jsonbody.parse_sliced(carried.body)))
    else:  # renamed on the bytes: the body is not parsed
        body = carried.naming(route.model).body
    return await _relay(request, runtime, route, carried.path_qs(path), body, "application/json")


async def forward_upstream(
    request: web.Request, runtime: Runtime, route: PeerRoute, asked: str, path: str, query: str
) -> web.StreamResponse:
    """`/upstream/<peer model>/<path>`: the request goes to `<path>` on the peer as sent, as
    handleUpstream hands it to the peer router (internal/server/api.go, llama-swap). A request
    that itself names the model as asked, when that is not the peer's own name, names the
    peer's instead, as ReplaceRequestModel does (internal/swaputil/http.go): a GET's `model`
    query parameter, a JSON body's `model`, a form's `model` field."""
    carried = Carried(None, await request.read(), query)
    if asked != route.model:
        content_type = request.headers.get("Content-Type", "")
        carried = await Carried.receive(request.method, content_type, carried.body, query, json=False)
        if carried.asked == asked:
            carried = carried.naming(route.model)
    return await _relay(request, runtime, route, carried.path_qs(path), carried.body)


async def _relay(
    request: web.Request,
    runtime: Runtime,
    route: PeerRoute,
    path_qs: str,
    body: bytes,
    content_type: str | None = None,
) -> web.StreamResponse:
    """Send the request to the peer (with `content_type` in place of the client's, when given)
    and stream its answer back (`relay`), counted for its model."""
    headers = proxy.request_headers(request.headers, drop_credentials=bool(runtime.resolved.api_keys))
    if content_type is not None:
        headers["Content-Type"] = content_type
    named = Named(peer_fqn(route.peer, route.model), route.model, route)
    async with runtime.reaching(request, named) as (counted, peer, _):
        sent(request, body)
        answer = await peer.open(request.method, path_qs, headers, body)
        response, outcome = await relay(request, peer, answer)
        counted.took(outcome)
        return response
