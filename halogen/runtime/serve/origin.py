"""Requests a web page in a browser makes on another site are refused, unless its origin is
allowed (`--allow-origin`).

A page on any site can make a browser send a "simple" request (a GET, or a POST whose body is
`text/plain`, a form or multipart) to any address, with no CORS preflight: it cannot read the
answer, but the request is served all the same. On a LAN box without `apiKeys` that lets any page
a household member opens generate or unload. Browsers say where a request comes from
(`Sec-Fetch-Site`, `Origin`, else `Referer`); curl and the API clients send none of these, so they
are unaffected. This goes beyond llama-swap, which answers any preflight with `*`
(`internal/server/auth.go`, CreateCORSMiddleware): the origins it allows are a command-line
option, so a llama-swap config stays valid.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import SplitResult, urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from halogen.runtime.base.errors import BadRequest, Refusal, clip

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ALLOWED = web.RequestKey("allowed_origin", str)
# A body a page can send with no preflight, which no JSON client sends.
BROWSER_ONLY_TYPES = frozenset({"text/plain", "multipart/form-data"})
# Routes whose body is not JSON, or is the upstream's business.
NOT_JSON = ("/v1/audio/transcriptions", "/v1/images/edits", "/upstream/")
METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
DEFAULT_HEADERS = "Content-Type, Authorization, Accept, X-Requested-With, x-api-key"


class CrossSite(Refusal):
    status = 403
    kind = "invalid_request_error"
    code = "cross_site_request"


class BadHeader(BadRequest):
    code = "invalid_header"


class NotJson(Refusal):
    status = 415
    kind = "invalid_request_error"
    code = "unsupported_media_type"


def normal(origin: str) -> str:
    """An origin as compared: `scheme://host[:port]`, lower case, without a trailing slash."""
    return origin.strip().rstrip("/").lower()


def _own(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}".lower()


def _origin_of(request: web.Request) -> str | None:
    """Where a browser says the request comes from: `Origin`, else the origin of `Referer`.
    A value no browser sends (`http://[::1`, a port past 65535) is a 400: a client's header
    must never be a 500."""
    origin = request.headers.get("Origin")
    if origin is not None:
        _split("Origin", origin)
        return normal(origin)
    referer = request.headers.get("Referer")
    if referer:
        parts = _split("Referer", referer)
        return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else "null"
    return None


def _split(header: str, value: str) -> SplitResult:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - read for the ValueError it raises
    except ValueError as exc:
        raise BadHeader(f"the {header} header {clip(value)} is not a URL: {exc}") from None
    return parts


def middleware(allowed_origins: Iterable[str]) -> Middleware:
    allowed = frozenset(normal(o) for o in allowed_origins)
    any_origin = "*" in allowed

    @web.middleware
    async def refuse_cross_site(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = _origin_of(request)
        if origin is not None and origin != _own(request) and (any_origin or origin in allowed):
            request[ALLOWED] = request.headers.get("Origin") or origin
            if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
                return _preflight(request)
            return await handler(request)
        fetch_site = request.headers.get("Sec-Fetch-Site", "").lower()
        if fetch_site == "cross-site" or (origin is not None and origin != _own(request)):
            raise CrossSite(
                f"a request from a page on {clip(origin) if origin else 'another site'} is refused "
                "(halogen serve --allow-origin ORIGIN allows one)"
            )
        json_route = request.method == "POST" and not request.path.startswith(NOT_JSON)
        if json_route and request.body_exists and request.content_type in BROWSER_ONLY_TYPES:
            raise NotJson(
                f"the body must be JSON, not {request.content_type} (send Content-Type: application/json)"
            )
        return await handler(request)

    return refuse_cross_site


def _preflight(request: web.Request) -> web.Response:
    asked = request.headers.get("Access-Control-Request-Headers", "")
    # Only header names (HTTP tokens) are echoed, as llama-swap's sanitizeAccessControlRequestHeaderValues does.
    names = [name.strip() for name in asked.split(",") if name.strip() and _token(name.strip())]
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": METHODS,
            "Access-Control-Allow-Headers": ", ".join(names) or DEFAULT_HEADERS,
            "Access-Control-Max-Age": "86400",
        },
    )


def _token(name: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in name)


async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer to an allowed origin (streams too: this runs as headers are sent), the
    headers that let its page read it."""
    origin = request.get(ALLOWED)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers.add("Vary", "Origin")
