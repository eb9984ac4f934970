"""The error body each route family's clients parse, declared where the family registers its
routes: the error boundary (`middleware.error_middleware`) answers in the shape of the route a
request reached, never in one guessed from its URL.

A family registers through `Routes`, which records each route's resource with the family's
`Shape`. A request no route took (an unknown path, a method the path does not take) answers in
the shape of the route its path belongs to, else of the family that claims the path's prefix
(`Routes.claim`), else in OpenAI's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# status, message, the OpenAI error type, the code: what a `Refusal` carries.
Shape = Callable[[int, str, str, str | int], dict[str, Any]]


def openai(status: int, message: str, kind: str, code: str | int) -> dict[str, Any]:
    """`{"error": {"message", "type", "code"}}`, as OpenAI's API and its clients have it."""
    return {"error": {"message": message, "type": kind, "code": code}}


def ollama(status: int, message: str, kind: str, code: str | int) -> dict[str, Any]:
    """`{"error": "..."}`, as Ollama's server answers (api/client.go in ollama reads it)."""
    return {"error": message}


def llama_swap(status: int, message: str, kind: str, code: str | int) -> dict[str, Any]:
    """`{"src": "llama-swap", "error": "..."}`: SendResponse in llama-swap's
    internal/shared/http.go, through which the handlers of its `/api/` group answer
    (internal/server/apigroup.go). `src` keeps llama-swap's value: it says the proxy answered,
    not a model, to the clients of llama-swap's API that halogen stands in for. (SendResponse
    answers text or HTML to a client that asks for it with Accept; halogen always answers JSON.)"""
    return {"src": "llama-swap", "error": message}


# Anthropic's error types by HTTP status (its API reference, "Errors"); any other 4xx is an
# invalid request, any other 5xx an API error.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic(status: int, message: str, kind: str, code: str | int) -> dict[str, Any]:
    """`{"type": "error", "error": {"type", "message"}}`, the type by the status."""
    kind = _ANTHROPIC_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


# A path that no route takes and no family claims.
UNCLAIMED: Shape = openai


@dataclass
class Declared:
    """The shapes the families declared: per route resource, and per claimed path prefix."""

    routes: dict[web.AbstractResource, Shape] = field(default_factory=dict)
    prefixes: dict[str, Shape] = field(default_factory=dict)


DECLARED = web.AppKey("error_shapes", Declared)


class Routes:
    """One family's routes: registered on the application's router (the same calls, the same
    defaults) with the family's error shape."""

    def __init__(self, application: web.Application, shape: Shape) -> None:
        if DECLARED not in application:
            application[DECLARED] = Declared()
        self._declared = application[DECLARED]
        self._router = application.router
        self.shape = shape

    def _declare(self, route: web.AbstractRoute) -> None:
        assert route.resource is not None
        known = self._declared.routes.setdefault(route.resource, self.shape)
        if known is not self.shape:
            raise ValueError(f"{route.resource.canonical} is declared with two error shapes")

    def add_get(self, path: str, handler: Handler) -> None:
        self._declare(self._router.add_get(path, handler))

    def add_post(self, path: str, handler: Handler) -> None:
        self._declare(self._router.add_post(path, handler))

    def add_put(self, path: str, handler: Handler) -> None:
        self._declare(self._router.add_put(path, handler))

    def add_delete(self, path: str, handler: Handler) -> None:
        self._declare(self._router.add_delete(path, handler))

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        self._declare(self._router.add_route(method, path, handler))

    def claim(self, prefix: str) -> None:
        """Paths under `prefix` that no route takes answer in this family's shape too (the
        longest claimed prefix wins)."""
        known = self._declared.prefixes.setdefault(prefix, self.shape)
        if known is not self.shape:
            raise ValueError(f"{prefix} is claimed by two error shapes")


async def shape_of(request: web.Request) -> Shape:
    """The error shape of the family whose route `request` reached, or whose path it asked."""
    declared = request.app.get(DECLARED)
    if declared is None:
        return UNCLAIMED
    resource = request.match_info.route.resource
    if resource is None:
        # No route took the request; a 405 still belongs to the route of its path.
        resource = await _resource_of_path(request)
    if resource is not None and resource in declared.routes:
        return declared.routes[resource]
    path = request.path
    claims = [prefix for prefix in declared.prefixes if path.startswith(prefix)]
    return declared.prefixes[max(claims, key=len)] if claims else UNCLAIMED


async def _resource_of_path(request: web.Request) -> web.AbstractResource | None:
    """The resource whose path `request` matches, whatever its method: only on the way to an
    error, so a walk of every resource costs nothing a served request pays."""
    for resource in request.app.router.resources():
        match, methods = await resource.resolve(request)
        if match is not None or methods:
            return resource
    return None
