"""The routes of the web UI: `/ui/` and its assets, read once from this package's `static/`
folder (a fixed list: no path from a request ever reaches the file system), and the memory
document. llama-swap serves its UI at /ui/ behind the same key check as its API
(internal/server/server.go, `GET /ui/`); so does halogen (`serve.middleware.key_middleware`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from halogen.runtime.base import shapes
from halogen.runtime.ui import memory

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page runs only this package's scripts and styles and talks only to this server: no inline
# script, no CDN, no frame around it.
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file of `static/`, by its path under it (`app.js`, `pages/models.js`)."""
    assets: dict[str, Asset] = {}
    root = resources.files(__package__) / "static"

    def walk(folder: resources.abc.Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, prefix + entry.name + "/")
                continue
            suffix = "." + entry.name.rsplit(".", 1)[-1]
            if suffix in TYPES:
                body = entry.read_bytes()
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                assets[prefix + entry.name] = Asset(body, TYPES[suffix], etag)

    walk(root, "")
    return assets


ASSETS = web.AppKey("ui_assets", dict)


def register(application: web.Application) -> None:
    application[ASSETS] = load_assets()
    # As management.register: llama-swap's routes outside /api/ answer errors in the OpenAI shape,
    # those under /api/ as llama-swap does.
    pages = shapes.Routes(application, shapes.openai)
    pages.add_get("/ui", to_ui)
    pages.add_get("/ui/", page)
    pages.add_get("/ui/{asset:.+}", page)
    api = shapes.Routes(application, shapes.llama_swap)
    api.add_get("/api/halogen/memory", memory.memory)


async def to_ui(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently("/ui/")


async def page(request: web.Request) -> web.Response:
    assets: dict[str, Asset] = request.app[ASSETS]
    name = request.match_info.get("asset", "") or "index.html"
    asset = assets.get(name)
    if asset is None:
        raise web.HTTPNotFound(reason=f"no UI asset {name!r}")
    headers = {**HEADERS, "ETag": asset.etag}
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=asset.body,
        content_type=asset.content_type.split(";")[0],
        charset="utf-8" if "charset" in asset.content_type else None,
        headers=headers,
    )
