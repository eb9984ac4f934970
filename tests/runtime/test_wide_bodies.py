"""`halogen serve` under wide JSON bodies: millions of tiny values never hold the event loop (the
health probe answers throughout), a body that is only routed is never parsed, and a body that
must be parsed is refused past the element limit in the route's own error shape."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from halogen.runtime.serve.listen import Limits

from .harness import Site, serving
from .processes import halogen_serve

# About 2.8 M empty objects in 8 MiB: parsed and walked per container, this froze the loop for
# seconds.
WIDE = b"{},"
COUNT = 8 * 1024 * 1024 // len(WIDE)


def wide(model: str, *, model_first: bool = True) -> bytes:
    values = b'"a":[' + WIDE * COUNT + b"{}]"
    name = b'"model":"' + model.encode() + b'"'
    return b"{" + (name + b"," + values if model_first else values + b"," + name) + b"}"


async def test_health_answers_within_a_second_while_wide_bodies_are_read(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    cases = [
        ("/v1/chat/completions", wide("nope"), 404),
        ("/v1/responses", wide("nope", model_first=False), 404),
        ("/v1/messages", wide("nope", model_first=False), 404),
        ("/api/chat", wide("m"), 413),
    ]
    # A process of its own: a probe from this event loop could not see that one stalls.
    with halogen_serve(site.write(), tmp_path / "serve.log", "--no-watch") as served:
        async with aiohttp.ClientSession(served.url) as client:
            for path, body, status in cases:
                headers = {"Content-Type": "application/json"}
                sending = asyncio.ensure_future(client.post(path, data=body, headers=headers))
                slowest = 0.0
                while not sending.done():
                    began = time.perf_counter()
                    async with client.get("/health") as health:
                        assert health.status == 200
                    slowest = max(slowest, time.perf_counter() - began)
                    await asyncio.sleep(0.02)
                async with await sending as response:
                    assert response.status == status, (path, await response.text())
                assert slowest < 1.0, (path, slowest)
    assert fake.starts() == 0


async def test_a_body_past_the_element_limit_is_a_413_in_the_route_s_error_shape(tmp_path: Path) -> None:
    site = Site(tmp_path)
    # Filters change more than the model: such a model's bodies are parsed.
    site.fake("m", filters={"setParams": {"top_k": 5}})
    body = wide("m")
    async with serving(site.write()) as proxy:
        shapes = {
            "/api/chat": lambda error: error["error"],
            "/api/generate": lambda error: error["error"],
            "/v1/chat/completions": lambda error: error["error"]["message"],
            "/v1/messages": lambda error: error["error"]["message"],
        }
        for path, message in shapes.items():
            async with proxy.client.post(
                path, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 413, path
                error = await response.json()
                assert "more than 16384 elements" in message(error), (path, error)
                if path == "/v1/messages":
                    assert error["error"]["type"] == "request_too_large"
        # A body within the limit goes on, its filters applied.
        async with await proxy.chat("m", x=[{}] * 1000) as response:
            assert response.status == 200
            echo = (await response.json())["echo"]["body"]
            assert echo["top_k"] == 5 and len(echo["x"]) == 1000


async def test_a_routed_body_goes_upstream_byte_for_byte_but_for_a_renamed_model(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m", useModelName="org/real:Q4")
    body = b'{ "messages": [{"role":"user","content":"hi","model":"inner"}],\n  "model" : "m", "n":1.50 }'
    async with serving(site.write()) as proxy:
        headers = {"Content-Type": "application/json"}
        async with proxy.client.post("/v1/chat/completions", data=body, headers=headers) as response:
            assert response.status == 200
            raw = (await response.json())["echo"]["raw"]
    assert raw == body.replace(b'"m",', b'"org/real:Q4",').decode()


async def test_a_large_body_waits_for_room_while_another_is_held_and_small_ones_do_not(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    site.fake("m")
    limits = Limits(header_timeout=5.0, idle_timeout=5.0, body_timeout=3.0, max_connections=16)
    head = b'{"model":"nope","a":"'
    large = head + b"x" * (900_000 - len(head) - 2) + b'"}'
    async with serving(site.write(), max_body=1024 * 1024, limits=limits) as proxy:
        # A body of 900 kB declared and trickled: it holds room for 900 kB until its 408.
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 900000\r\n\r\n{"
        )
        await writer.drain()
        await asyncio.sleep(1.0)
        headers = {"Content-Type": "application/json"}
        waiting = asyncio.ensure_future(
            proxy.client.post("/v1/chat/completions", data=large, headers=headers)
        )
        async with await proxy.chat("nope") as small:
            assert small.status == 404  # a small body is never kept waiting
        await asyncio.sleep(0.5)
        assert not waiting.done()  # no room for a second 900 kB body yet
        status_line = await asyncio.wait_for(reader.readline(), 5.0)
        assert b" 408 " in status_line
        writer.close()
        async with await asyncio.wait_for(waiting, 5.0) as response:
            assert response.status == 404, await response.text()
