"""Every answer says which config the proxy runs: `Halogen-Config-Version`, the sha256 of the
config file's bytes as loaded (after a reload, the new file's). It equals the `config-version`
annotation `halogen build` writes, so a deploy check (`halogen smoke --config-version`) can tell
the pod serving the new config from one still serving the old."""

from __future__ import annotations

from aiohttp import web

from halogen.runtime.forward.context import runtime_of

HEADER = "Halogen-Config-Version"


async def header(request: web.Request, response: web.StreamResponse) -> None:
    """Set as the headers go out (`on_response_prepare`, after the CORS headers), so streams and
    error answers carry it too, and a reload is seen by the next answer."""
    version = runtime_of(request).resolved.config_version
    if version:
        response.headers[HEADER] = version
        if "Access-Control-Allow-Origin" in response.headers:  # a page of an allowed origin may read it
            response.headers.add("Access-Control-Expose-Headers", HEADER)
