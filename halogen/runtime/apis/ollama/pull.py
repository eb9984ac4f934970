"""Ollama's /api/pull: what is on disk for a declared model, in Ollama's progress shape."""

from __future__ import annotations

import json

from aiohttp import web

from halogen.runtime.apis.ollama import to_openai
from halogen.runtime.forward.context import MODEL, read_json, runtime_of
from halogen.runtime.process import model_files

NDJSON = "application/x-ndjson"


async def pull(request: web.Request) -> web.StreamResponse:
    """Streamed (the default) as NDJSON progress lines, an error as a last `{"error": ...}` line;
    with `"stream": false`, the last status alone, or the error with status 503, as Ollama's
    waitForStream does with its own (server/routes.go)."""
    runtime = runtime_of(request)
    body = await read_json(request)
    name = to_openai.model_name(body)
    model_id = runtime.naming.model_id(name)  # a model the config does not declare is a 404
    request[MODEL] = model_id
    events = model_files.pull_progress(runtime.resolved.models[model_id])
    if body.get("stream") is False:
        last = events[-1]
        if "error" in last:
            return web.json_response({"error": last["error"]}, status=503)
        return web.json_response(last)
    response = web.StreamResponse(headers={"Content-Type": NDJSON})
    await response.prepare(request)
    for event in events:
        await response.write(json.dumps(event).encode() + b"\n")
    await response.write_eof()
    return response
