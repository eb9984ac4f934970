"""One relay for every stream (`halogen.runtime.forward.relay`): a peer that fails after its
stream began ends it the way a local model that fails does, with the API's own last event
(llama-server's `format_error`, tools/server/server-context.cpp; Ollama's last `{"error"}`
line), for each API; never a stream simply cut off. And a peer's stream passes as a local
model's does: with Cache-Control and the `message_start` llama-server may leave out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .harness import Proxy, Site, serving
from .test_message_start import HEADLESS, events
from .test_message_start_mend import headless_upstream
from .test_peers import near_site, peer_fake

HI = [{"role": "user", "content": "hi"}]
# Each API's streamed request: its path and body (the model is set per request).
APIS: dict[str, tuple[str, dict[str, Any]]] = {
    "openai": ("/v1/chat/completions", {"messages": HI, "stream": True}),
    "responses": ("/v1/responses", {"input": "hi", "stream": True}),
    "anthropic": ("/v1/messages", {"max_tokens": 8, "messages": HI, "stream": True}),
    "ollama": ("/api/chat", {"messages": HI, "stream": True}),
}
# The target sends two chunks of five, then its process dies.
DIES = {"X-Fake-Die-After": "2", "X-Fake-Chunks": "5", "X-Fake-Events": "1"}


async def broken_stream(proxy: Proxy, api: str, model: str) -> tuple[list[bytes], Any]:
    """The events (or lines) a stream from `model` that fails after two chunks carries before
        its end; and the headers that say how to treat a stream (Content-Type, Cache-Control,
    X-Accel-Buffering) with its last event, the error's message left out (it names the target)."""
    path, body = APIS[api]
    async with proxy.client.post(path, json={"model": model, **body}, headers=DIES) as response:
        assert response.status == 200
        raw = await response.read()  # it ends cleanly: never cut off
        kept = {
            name: response.headers.get(name)
            for name in ("Content-Type", "Cache-Control", "X-Accel-Buffering")
        }
    ndjson = api == "ollama"
    parts = raw.splitlines() if ndjson else raw.split(b"\n\n")
    *before, last = [part for part in parts if part.strip()]
    lines = last.decode().splitlines()
    data = json.loads(lines[-1].removeprefix("data: "))
    error = data["error"]
    if isinstance(error, dict):
        assert "failed mid-answer" in error.pop("message")
    else:
        assert "failed mid-answer" in error
        data["error"] = "…"
    return before, (kept, lines[:-1], data)


@pytest.mark.parametrize("api", sorted(APIS))
async def test_a_peer_that_fails_mid_stream_ends_it_with_the_same_error_event_as_a_local_model(
    tmp_path: Path, api: str
) -> None:
    async with peer_fake(tmp_path, "p") as (_, url):
        near = near_site(tmp_path, url, ["p"], "m")
        async with serving(near.write()) as proxy:
            local_before, local_end = await broken_stream(proxy, api, "m")
            peer_before, peer_end = await broken_stream(proxy, api, "box2/p")
    assert len(peer_before) == len(local_before) == 2
    assert peer_end == local_end


async def test_a_peers_anthropic_stream_gets_the_message_start_and_the_headers_of_a_local_one(
    tmp_path: Path,
) -> None:
    async with headless_upstream() as url:
        near = Site(tmp_path)
        near.top["peers"] = {"box2": {"proxy": url, "models": ["claude"]}}
        async with serving(near.write()) as proxy:
            body = {"model": "box2/claude", "max_tokens": 8, "stream": True, "messages": HI}
            async with proxy.client.post("/v1/messages", json=body) as response:
                assert response.status == 200
                assert response.headers.get("Cache-Control") == "no-cache"
                stream = await response.read()
    kinds = [e["type"] for e in events(stream)]
    assert kinds[0] == "message_start" and kinds[1:] == [e["type"] for e in events(HEADLESS)]
