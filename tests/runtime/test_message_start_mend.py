"""The proxy's mend of an Anthropic stream that llama-server began without `message_start`
(runtime/message_start.py): on the versionless `/v/messages` route as on `/v1/messages`, and
with a bound on what it holds back while the first event is incomplete."""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from halogen.runtime.forward.message_start import MessageStart
from tests.ports import free_ports

from .harness import Site, serving
from .test_message_start import HEADLESS, events

KiB = 1024


def test_a_first_event_that_never_ends_is_passed_on_once_64_kib_are_held() -> None:
    mender = MessageStart("m")
    piece = b"data: " + b"x" * (KiB - 6)  # one KiB of a line that never reaches its blank line
    out = b""
    for _ in range(64):
        out += mender.feed(piece)
    assert out == b"" and not mender.done  # held: the first event may still turn out headless
    out = mender.feed(piece)
    assert mender.done and out == piece * 65  # past 64 KiB it flows, unchanged


@contextlib.asynccontextmanager
async def headless_upstream() -> AsyncIterator[str]:
    """A stand-in for llama-server that answers every Anthropic request with a stream whose
    first token was an emoji (no `message_start`); its URL."""

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def messages(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in HEADLESS.split(b"\n\n")[:-1]:
            await response.write(event + b"\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/messages", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    (port,) = free_ports(1)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("route", ["/v1/messages", "/v/messages"])
async def test_a_headless_anthropic_stream_gets_message_start_on_either_route(
    tmp_path: Path, route: str
) -> None:
    async with headless_upstream() as url:
        site = Site(tmp_path)
        sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
        site.models["claude"] = {"cmd": shlex.join(sleeper), "proxy": url}
        async with serving(site.write()) as proxy:
            body = {
                "model": "claude",
                "max_tokens": 8,
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            }
            async with proxy.client.post(route, json=body) as response:
                assert response.status == 200
                stream = await response.read()
    kinds = [e["type"] for e in events(stream)]
    assert kinds[0] == "message_start" and kinds[1:] == [e["type"] for e in events(HEADLESS)]
