"""`sendLoadingState`: while a streamed chat waits for its model to start, the stream carries
progress in the reasoning field (internal/router/loading.go, llama-swap), and /v1/models says
the model is loading, then loaded."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from .harness import PATIENCE, Proxy, Site, eventually, serving


async def statuses(proxy: Proxy) -> dict[str, str]:
    async with proxy.client.get("/v1/models") as response:
        return {row["id"]: row["status"]["value"] for row in (await response.json())["data"]}


async def events(response: aiohttp.ClientResponse, into: list[dict[str, Any]]) -> None:
    async for line in response.content:
        if line.startswith(b"data: {"):
            into.append(json.loads(line[6:]))


def reasoning(event: dict[str, Any]) -> str | None:
    choices = event.get("choices") or [{}]
    value: str | None = choices[0].get("delta", {}).get("reasoning_content")
    return value


async def test_a_slow_start_streams_loading_progress_before_the_first_token(tmp_path: Path) -> None:
    site = Site(tmp_path)
    gate = tmp_path / "ready"
    site.fake("slow", "--ready-gate", str(gate))
    site.fake("other")
    site.top["sendLoadingState"] = True
    async with serving(site.write()) as proxy:
        assert await statuses(proxy) == {"other": "unloaded", "slow": "unloaded"}
        got: list[dict[str, Any]] = []
        async with await proxy.chat("slow", stream=True) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            reader = asyncio.create_task(events(response, got))
            # Progress arrives while the model is still starting, and the listing says so.
            await eventually(lambda: sum(reasoning(e) == "." for e in got) >= 3, "three progress marks")
            assert "loading model: slow" in "".join(reasoning(e) or "" for e in got)
            assert not any(e["choices"][0]["delta"].get("content") for e in got)
            assert (await statuses(proxy))["slow"] == "loading"
            gate.touch()
            await asyncio.wait_for(reader, PATIENCE)
        text = [reasoning(e) for e in got]
        first_token = next(
            i for i, e in enumerate(got) if e["choices"] and e["choices"][0]["delta"].get("content")
        )
        done = next(i for i, t in enumerate(text) if t and "Done! (" in t)
        assert done < first_token
        assert [e["choices"][0]["delta"].get("content") for e in got[first_token:-1]] == [
            "tok0 ",
            "tok1 ",
            "tok2 ",
        ]
        assert await statuses(proxy) == {"other": "unloaded", "slow": "loaded"}
        # Once loaded, a stream starts with the model's own first event.
        async with await proxy.chat("slow", stream=True) as response:
            again: list[dict[str, Any]] = []
            await events(response, again)
        assert reasoning(again[0]) is None and again[0]["choices"][0]["delta"]["content"] == "tok0 "


async def test_no_loading_progress_unless_asked_for_streamed_and_for_chat(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("quiet", sendLoadingState=False)
    site.fake("chatty", "--health-delay", "1")
    site.top["sendLoadingState"] = True
    async with serving(site.write()) as proxy:
        async with await proxy.chat("quiet", stream=True) as response:
            quiet: list[dict[str, Any]] = []
            await events(response, quiet)
        assert all(reasoning(e) is None for e in quiet)
        async with await proxy.chat("chatty") as response:  # not streamed
            assert (await response.json())["object"] == "chat.completion"


async def test_a_model_that_fails_to_start_ends_the_progress_stream_with_an_error_event(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    site.fake("broken", "--exit-at-start", "3", sendLoadingState=True)
    async with serving(site.write()) as proxy, await proxy.chat("broken", stream=True) as response:
        assert response.status == 200
        got: list[dict[str, Any]] = []
        await events(response, got)
    assert "loading model: broken" in (reasoning(got[0]) or "")
    assert got[-1]["error"]["code"] == 502 and "failed to load model" in got[-1]["error"]["message"]


async def test_an_ollama_chat_stream_shows_loading_progress_as_thinking(tmp_path: Path) -> None:
    site = Site(tmp_path)
    gate = tmp_path / "ready"
    site.fake("slow", "--ready-gate", str(gate), sendLoadingState=True)
    body = {"model": "slow", "messages": [{"role": "user", "content": "hi"}]}  # streams by default
    async with serving(site.write()) as proxy:
        lines: list[dict[str, Any]] = []

        async def read(response: aiohttp.ClientResponse) -> None:
            async for line in response.content:
                if line.strip():
                    lines.append(json.loads(line))

        async with proxy.client.post("/api/chat", json=body) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("application/x-ndjson")
            reader = asyncio.create_task(read(response))
            await eventually(lambda: len(lines) >= 3, "three progress lines")
            assert all(line["message"]["content"] == "" and not line["done"] for line in lines)
            gate.touch()
            await asyncio.wait_for(reader, PATIENCE)
    thinking = "".join(line["message"].get("thinking") or "" for line in lines)
    assert thinking.startswith("━━━━━\nloading model: slow\n") and "Done! (" in thinking
    first = next(i for i, line in enumerate(lines) if line["message"].get("content"))
    assert all(line["message"].get("thinking") for line in lines[:first])
    assert "".join(line["message"]["content"] for line in lines[first:]) == "tok0 tok1 tok2 "
    assert lines[-1]["done"] is True and lines[-1]["model"] == "slow"


async def test_a_request_queued_behind_a_busy_model_is_told_its_place_in_the_queue(tmp_path: Path) -> None:
    # base.go (internal/router, llama-swap): "Queue position: #N" from the scheduler's
    # broadcastQueuePositions (scheduler/fifo.go) while the request waits its turn.
    site = Site(tmp_path)
    site.fake("a")
    site.fake("b")
    site.top["sendLoadingState"] = True
    gate = tmp_path / "a-done"
    async with serving(site.write()) as proxy:
        async with await proxy.chat("a", stream=True, headers={"X-Fake-Gate": str(gate)}) as busy:
            assert busy.status == 200
            await busy.content.readline()  # a answers and holds on, so b must wait for it
            got: list[dict[str, Any]] = []
            async with await proxy.chat("b", stream=True) as response:
                reader = asyncio.create_task(events(response, got))
                await eventually(
                    lambda: "Queue position: #1" in "".join(reasoning(e) or "" for e in got),
                    "b's place in the queue",
                )
                gate.touch()
                await busy.read()
                await asyncio.wait_for(reader, PATIENCE)
        said = "".join(reasoning(e) or "" for e in got)
        assert said.count("Queue position: #1") == 1  # told once, until it changes
        assert said.index("Queue position") < said.index("Done! (")
        assert [e["choices"][0]["delta"].get("content") for e in got if e.get("choices")][-4:-1] == [
            "tok0 ",
            "tok1 ",
            "tok2 ",
        ]  # then b answered
