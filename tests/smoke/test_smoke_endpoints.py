"""`halogen smoke` against a stand-in endpoint: each kind's checks, the figures, one model at
a time, the config version it waits for, the API key, and the report formats."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import junitparser
import pytest
from aiohttp import web

from .endpoint import Endpoint, endpoint
from .run import environment, smoke

OLD, NEW = "a" * 64, "b" * 64


async def test_each_kind_gets_its_checks_and_the_speeds_come_from_llama_servers_timings() -> None:
    models = [
        {"id": "chat"},
        {"id": "embedder", "ollama": ["embedding"]},
        {"id": "ranker", "capabilities": {"reranker": True}},
    ]
    # Each answer waits 20 ms before it begins: on a fast machine the stand-in's first token
    # would otherwise come within the report's millisecond.
    async with endpoint(Endpoint(models=models, delay=0.02)) as server:
        ran = await smoke(server.url, "--format", "json")
    assert ran.code == 0, ran.both
    assert ran.err == ""
    report = json.loads(ran.out)
    rows = {m["id"]: m for m in report["models"]}
    assert {m: r["kind"] for m, r in rows.items()} == {
        "chat": "chat",
        "embedder": "embedding",
        "ranker": "reranker",
    }
    assert [c["name"] for c in rows["chat"]["checks"]] == [
        "openai-chat",
        "openai-chat-stream",
        "ollama-chat",
        "ollama-chat-stream",
    ]
    assert [c["name"] for c in rows["embedder"]["checks"]] == ["embeddings"]
    assert [c["name"] for c in rows["ranker"]["checks"]] == ["rerank"]
    chat = rows["chat"]
    # 120 prompt tokens in 60 ms, 32 generated in 400 ms: the stand-in's timings.
    assert (chat["promptTokensPerSecond"], chat["generationTokensPerSecond"], chat["speedFrom"]) == (
        2000.0,
        80.0,
        "timings",
    )
    assert chat["ttftSeconds"] >= 0.02
    # Its /running never lists a model: the load is timed to the first answer's headers.
    assert chat["loadFrom"] == "first-byte" and chat["loadSeconds"] >= 0
    assert report["passed"] is True and report["error"] is None


async def test_without_timings_the_speeds_come_from_usage_and_the_wall_time() -> None:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.json_response(
                {"choices": [{"message": {"content": "one"}}], "usage": {"completion_tokens": 3}}
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in ("one", ", two", ", three"):
            await asyncio.sleep(0.05)
            event = {"choices": [{"delta": {"content": piece}}]}
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        usage = {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 3}}
        await response.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        return response

    async with endpoint(Endpoint(overrides={"/v1/chat/completions": chat})) as server:
        ran = await smoke(server.url, "--format", "json")
    assert ran.code == 0, ran.both
    (row,) = json.loads(ran.out)["models"]
    assert row["speedFrom"] == "usage"
    # 50 prompt tokens over the time to the first token (50 ms at least), two more tokens over
    # the 100 ms at least after it: bounded above by those waits, whatever the machine's speed.
    assert 0 < row["promptTokensPerSecond"] <= 50 / 0.05
    assert 0 < row["generationTokensPerSecond"] <= 2 / 0.1
    assert row["ttftSeconds"] >= 0.05


async def test_models_are_tested_one_at_a_time_unless_concurrency_is_asked() -> None:
    models = [{"id": f"m{i}"} for i in range(3)]
    async with endpoint(Endpoint(models=models, delay=0.2)) as server:
        ran = await smoke(server.url)
        assert ran.code == 0, ran.both
        assert server.most_in_flight == 1
        order = [model for _, path, model in server.seen if path == "/v1/chat/completions"]
        assert order == ["m0", "m0", "m1", "m1", "m2", "m2"]  # each model's checks together
        ran = await smoke(server.url, "--concurrency", "3")
        assert ran.code == 0, ran.both
        assert server.most_in_flight >= 2


async def test_only_the_models_named_are_tested_and_selectors_and_peers_are_not_by_default() -> None:
    models = [
        {"id": "a"},
        {"id": "b"},
        {"id": "fast", "meta": {"llamaswap": {"type": "selector"}}},
        {"id": "box2/c", "meta": {"llamaswap": {"type": "peer"}}},
    ]
    async with endpoint(Endpoint(models=models)) as server:
        ran = await smoke(server.url, "--format", "json")
        assert [m["id"] for m in json.loads(ran.out)["models"]] == ["a", "b"]
        ran = await smoke(server.url, "b", "fast", "--format", "json")
        assert [m["id"] for m in json.loads(ran.out)["models"]] == ["b", "fast"]
    assert ran.code == 0, ran.both


async def test_it_waits_for_the_config_version_asked_for_then_tests() -> None:
    for json_only in (False, True):
        async with endpoint(Endpoint(version=OLD, version_in_json_only=json_only)) as server:

            async def reload(server: Endpoint = server) -> float:
                # Once the old version has been asked for and answered: a reload under way.
                while not server.requests("/api/version"):
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.2)
                server.version = NEW
                return time.monotonic()

            flip = asyncio.create_task(reload())
            # Upper case is the same sha256.
            ran = await smoke(server.url, "--config-version", NEW.upper(), "--wait", "30", "--format", "json")
            reloaded_at = await flip
        assert ran.code == 0, ran.both
        chats = server.requests("/v1/chat/completions")
        assert chats and all(at >= reloaded_at for at, _, _ in chats)
        assert len(server.requests("/api/version")) >= 2
        assert json.loads(ran.out)["configVersion"] == NEW


async def test_a_config_version_never_reported_exits_1_saying_what_the_server_reported() -> None:
    async with endpoint(Endpoint(version=OLD)) as server:
        ran = await smoke(server.url, "--config-version", NEW, "--wait", "1")
        assert server.requests("/v1/chat/completions") == []
    assert ran.code == 1
    assert (
        f"did not report config version {NEW} within 1 s (--wait): it reports config version {OLD}" in ran.err
    )
    async with endpoint(Endpoint()) as server:
        ran = await smoke(server.url, "--config-version", NEW, "--wait", "0")
    assert ran.code == 1 and "it reports no config version" in ran.err


async def test_the_api_key_is_sent_from_the_environment_or_the_flag_and_never_printed() -> None:
    key = "sk-smoke-0123456789"

    async with endpoint(Endpoint(api_key=key)) as server:
        assert (await smoke(server.url, env=environment(HALOGEN_API_KEY=key))).code == 0
        assert (await smoke(server.url, "--api-key", key)).code == 0
        refused = await smoke(server.url, env=environment(HALOGEN_API_KEY="sk-wrong-key"))

        async def quoting(request: web.Request) -> web.Response:
            return web.json_response(
                {"error": {"message": f"no: {request.headers['Authorization']}"}}, status=400
            )

        server.overrides["/v1/chat/completions"] = quoting
        quoted = await smoke(server.url, "--format", "junit", env=environment(HALOGEN_API_KEY=key))
    assert refused.code == 1
    assert "cannot list the models: HTTP 401: Invalid API Key" in refused.err
    assert "sk-wrong-key" not in refused.both
    assert quoted.code == 1
    assert key not in quoted.both
    assert "no: Bearer <api key>" in quoted.err


async def test_the_junit_report_has_a_failure_per_failed_check_of_each_model() -> None:
    async def broken(request: web.Request) -> web.Response:
        body = await request.json()
        if body["model"] == "bad":
            return web.json_response({"error": {"message": "model crashed", "code": 500}}, status=500)
        return web.json_response(
            {"choices": [{"message": {"content": "ok"}}], "usage": {"completion_tokens": 1}}
        )

    async with endpoint(Endpoint(models=[{"id": "bad"}, {"id": "good"}])) as server:
        server.overrides["/v1/chat/completions"] = broken
        ran = await smoke(server.url, "--format", "junit")
    assert ran.code == 1
    xml = junitparser.JUnitXml.fromstring(ran.out)
    suites = {suite.name: suite for suite in xml}
    assert set(suites) == {"bad", "good"}
    failed: dict[str, dict[str, Any]] = {}
    for name, suite in suites.items():
        for case in suite:
            failed.setdefault(name, {})[case.name] = [r.message for r in case.result]
    assert failed["bad"]["openai-chat"] == ["HTTP 500: model crashed"]
    assert failed["bad"]["openai-chat-stream"] == ["HTTP 500: model crashed"]
    assert failed["bad"]["ollama-chat"] == [] and failed["bad"]["ollama-chat-stream"] == []
    # The streamed chat of `good` got a JSON answer: a stream it is not.
    assert failed["good"] == {
        "openai-chat": [],
        "openai-chat-stream": ["the stream ended without `data: [DONE]`"],
        "ollama-chat": [],
        "ollama-chat-stream": [],
    }
    assert suites["bad"].failures == 2 and suites["good"].failures == 1
    assert "bad: openai-chat, openai-chat-stream: HTTP 500: model crashed" in ran.err


@pytest.mark.parametrize("fmt", ["table", "json", "junit"])
async def test_the_report_goes_to_the_output_file_and_the_failures_to_stderr(tmp_path: Any, fmt: str) -> None:
    async def refused(request: web.Request) -> web.Response:
        return web.json_response({"error": "model 'm' not found"}, status=404)

    out = tmp_path / "report"
    async with endpoint(Endpoint(overrides={"/api/chat": refused})) as server:
        ran = await smoke(server.url, "--format", fmt, "--output", str(out))
    assert ran.code == 1 and ran.out == ""
    assert "m: ollama-chat, ollama-chat-stream: HTTP 404: model 'm' not found" in ran.err
    assert "ollama-chat" in out.read_text()
