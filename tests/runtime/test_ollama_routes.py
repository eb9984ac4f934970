"""Ollama's routes over the runtime: same Swapper, same keys, Ollama's own errors and streams."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from halogen.runtime.process.upstream import State

from .harness import Proxy, Site, eventually, serving


async def ndjson(response: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    text = (await response.read()).decode()
    assert text.endswith("\n") and "\n\n" not in text
    return [json.loads(line) for line in text.splitlines()]


async def post(proxy: Proxy, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with proxy.client.post(path, json=body) as response:
        return response.status, await response.json()


async def post_get(proxy: Proxy, path: str) -> tuple[int, Any]:
    async with proxy.client.get(path) as response:
        return response.status, await response.json()


async def test_the_root_answers_like_ollama_for_get_and_head(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        async with proxy.client.get("/") as response:
            assert (response.status, await response.text()) == (200, "Ollama is running")
        async with proxy.client.head("/") as response:
            assert response.status == 200


async def test_a_streamed_chat_is_ndjson_with_counts_from_llama_server_timings(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        body = {"model": "m:latest", "messages": [{"role": "user", "content": "hi"}]}
        async with proxy.client.post("/api/chat", json=body, headers={"X-Fake-Chunks": "4"}) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/x-ndjson"
            lines = await ndjson(response)
    assert "".join(line["message"]["content"] for line in lines) == "tok0 tok1 tok2 tok3 "
    assert all(line["model"] == "m:latest" for line in lines)
    *chunks, last = lines
    assert not any(chunk["done"] for chunk in chunks)
    assert last["done"] is True and last["done_reason"] == "stop"
    assert (last["prompt_eval_count"], last["eval_count"]) == (11, 4)
    assert last["load_duration"] > 0  # this request started the model


async def test_durations_are_nanoseconds_and_done_reason_follows_the_finish_reason(tmp_path: Path) -> None:
    # Ollama's durations are nanoseconds (api/types.go): one read as milliseconds would be a
    # million times too small, and the load of a process is no less than a millisecond.
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        started = time.monotonic_ns()
        headers = {"X-Fake-Chunks": "2", "X-Fake-Finish": "length"}
        async with proxy.client.post("/api/chat", json=body, headers=headers) as response:
            *_, last = await ndjson(response)
        elapsed = time.monotonic_ns() - started
        async with proxy.client.post("/api/chat", json=body, headers={"X-Fake-Chunks": "2"}) as response:
            *_, again = await ndjson(response)
    assert (last["done_reason"], again["done_reason"]) == ("length", "stop")
    assert 1_000_000 <= last["load_duration"] <= last["total_duration"] <= elapsed
    assert again["total_duration"] > 0 and again.get("load_duration", 0) < last["load_duration"]


async def test_a_chat_without_streaming_is_one_object(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m", useModelName="upstream-name")
    async with serving(site.write()) as proxy:
        status, answer = await post(
            proxy,
            "/api/chat",
            {
                "model": "m",
                "stream": False,
                "messages": [{"role": "user", "content": "hi"}],
                "options": {"num_predict": 5, "num_ctx": 99},
            },
        )
    assert status == 200
    assert answer["message"] == {"role": "assistant", "content": "hello from m"}
    assert answer["done"] is True and answer["eval_count"] == 3
    sent = fake.events("request")[0]["body"]
    assert sent["model"] == "upstream-name" and sent["max_tokens"] == 5 and "num_ctx" not in sent


async def test_generate_with_an_empty_prompt_loads_and_with_keep_alive_0_unloads(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        status, loaded = await post(proxy, "/api/generate", {"model": "m"})
        assert status == 200 and (loaded["done"], loaded["done_reason"], loaded["response"]) == (
            True,
            "load",
            "",
        )
        assert await proxy.running() == {"m": "ready"}
        status, unloaded = await post(proxy, "/api/generate", {"model": "m", "keep_alive": 0})
        assert status == 200 and unloaded["done_reason"] == "unload"
        assert await proxy.running() == {}
        status, loaded = await post(proxy, "/api/chat", {"model": "m", "messages": []})
        assert loaded["done_reason"] == "load" and loaded["message"]["content"] == ""
        assert fake.starts() == 2 and not fake.events("request")


async def test_keep_alive_replaces_the_ttl_until_the_model_stops_and_each_request_sets_its_own(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")  # no ttl: the config keeps it up for ever
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    async with serving(site.write()) as proxy:
        status, _ = await post(proxy, "/api/chat", {**chat, "keep_alive": "-1"})
        assert status == 200 and proxy.swapper.slot("m").ttl == math.inf
        status, _ = await post(proxy, "/api/generate", {"model": "m", "keep_alive": "1h30m"})
        assert status == 200 and proxy.swapper.slot("m").ttl == 5400
        status, ps = await post_get(proxy, "/api/ps")
        expires = datetime.fromisoformat(ps["models"][0]["expires_at"])
        assert timedelta(minutes=89) < expires - datetime.now(UTC) <= timedelta(minutes=90)
        async with proxy.client.get("/running") as response:
            assert (await response.json())["running"][0]["ttl"] == 5400
        # An OpenAI request names no keep_alive: the config's ttl again.
        async with await proxy.chat("m") as response:
            assert response.status == 200
        assert proxy.swapper.slot("m").ttl == math.inf
        # A short keep_alive unloads the model once it is idle, and the next start forgets it.
        status, _ = await post(proxy, "/api/chat", {**chat, "keep_alive": "300ms"})
        assert status == 200
        # The process is STOPPED a moment before the Swapper forgets the keep_alive (in the stop
        # task's `finally`): wait for both, or this races the reset under load.
        slot = proxy.swapper.slot("m")
        await eventually(
            lambda: slot.upstream.state is State.STOPPED and slot.keep_alive is None, "keep_alive unload"
        )
        assert slot.ttl == math.inf  # the config's ttl again
        # keep_alive 0 on a request with a prompt: answered, then unloaded.
        status, answer = await post(
            proxy, "/api/generate", {"model": "m", "prompt": "hi", "keep_alive": 0, "stream": False}
        )
        assert status == 200 and answer["done"] is True
        await eventually(lambda: proxy.swapper.slot("m").upstream.state is State.STOPPED, "keep_alive 0")
        assert fake.starts() == 2  # the first, and the one after the 300 ms keep_alive


async def test_a_keep_alive_that_is_not_a_duration_is_a_400_that_says_how_to_write_one(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        for bad in ("5 minutes", True, [1], {"s": 1}):
            status, answer = await post(
                proxy, "/api/generate", {"model": "m", "prompt": "hi", "keep_alive": bad}
            )
            assert status == 400 and "keep_alive" in answer["error"], (bad, answer)
        assert fake.starts() == 0


async def test_generate_streams_completions(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with (
        serving(site.write()) as proxy,
        proxy.client.post(
            "/api/generate", json={"model": "m", "prompt": "Once", "system": "Be brief."}
        ) as response,
    ):
        lines = await ndjson(response)
    assert "".join(line["response"] for line in lines) == "tok0 tok1 tok2 "
    assert lines[-1]["done"] is True
    assert fake.events("request")[0]["path"] == "/v1/completions"


async def test_ollama_requests_swap_models_through_the_same_groups(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("a")
    site.fake("b")
    async with serving(site.write()) as proxy:
        for model in ("a", "b"):
            status, _ = await post(
                proxy,
                "/api/chat",
                {"model": model, "stream": False, "messages": [{"role": "user", "content": "x"}]},
            )
            assert status == 200
            assert await proxy.running() == {model: "ready"}


async def test_embed_and_legacy_embeddings_answer_in_ollama_shape(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("e")
    async with serving(site.write()) as proxy:
        status, embed = await post(proxy, "/api/embed", {"model": "e", "input": ["a"]})
        assert (
            status == 200 and embed["embeddings"] == [[0.25, -0.5, 1.0]] and embed["prompt_eval_count"] == 4
        )
        status, legacy = await post(proxy, "/api/embeddings", {"model": "e", "prompt": "a"})
        assert status == 200 and legacy == {"embedding": [0.25, -0.5, 1.0]}


async def test_unknown_models_get_404_and_missing_ones_400_as_ollama_errors(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        for path in ("/api/chat", "/api/generate", "/api/embed", "/api/show"):
            status, error = await post(
                proxy, path, {"model": "nope", "messages": [{"role": "user", "content": "x"}], "prompt": "x"}
            )
            assert (status, error) == (404, {"error": "model 'nope' not found"}), path
            status, error = await post(proxy, path, {"prompt": "x"})
            assert status == 400 and isinstance(error["error"], str), path


async def test_model_management_routes_that_halogen_does_not_offer_answer_501(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        for path in ("/api/push", "/api/create", "/api/copy"):  # /api/pull: test_model_files.py
            status, error = await post(proxy, path, {"model": "m"})
            assert status == 501 and "not supported" in error["error"], path
        async with proxy.client.delete("/api/delete", json={"model": "m"}) as response:
            assert response.status == 501


async def test_tags_and_ps_report_the_model_file_size_and_the_ttl_expiry(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(1000))
    site = Site(tmp_path)
    site.fake("m", "-m", str(gguf), ttl=600)
    site.fake("other")
    async with serving(site.write()) as proxy:
        async with proxy.client.get("/api/tags") as response:
            listed = {entry["name"]: entry for entry in (await response.json())["models"]}
        assert listed["m:latest"]["size"] == 1004 and listed["other:latest"]["size"] == 0
        await post(proxy, "/api/generate", {"model": "m"})
        async with proxy.client.get("/api/ps") as response:
            (running,) = (await response.json())["models"]
    assert running["name"] == "m:latest" and running["size"] == 1004
    expires = datetime.fromisoformat(running["expires_at"].replace("Z", "+00:00"))
    left = (expires - datetime.now(UTC)).total_seconds()
    assert 0 < left <= 600


async def test_a_model_that_dies_before_answering_gives_an_ollama_error_with_its_last_output(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with (
        serving(site.write()) as proxy,
        proxy.client.post(
            "/api/chat",
            json={"model": "m", "stream": False, "messages": [{"role": "user", "content": "x"}]},
            headers={"X-Fake-Die-After": "0"},
        ) as response,
    ):
        assert response.status == 502
        error = (await response.json())["error"]
    assert isinstance(error, str) and "crashing on purpose before answering" in error
