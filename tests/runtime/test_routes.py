"""The HTTP surface: listings, rewrites, keys, management routes and their errors."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from halogen.runtime.base.logs import Logs

from .harness import PATIENCE, Proxy, Site, challenge, metric, serving


async def echo_of(response: aiohttp.ClientResponse) -> dict[str, Any]:
    async with response:
        body = await response.json()
        assert response.status == 200, body
        echo: dict[str, Any] = body["echo"]
        return echo


async def raw_status(proxy: Proxy, target: str) -> int:
    """The status for a request line sent byte for byte (clients normalise `..` away)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


async def test_the_model_list_has_the_documented_shape_sorted_without_unlisted_models(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake(
        "zeta",
        name="Zeta 7B",
        description="the last one",
        metadata={"family": "llama", "contextLength": 4096},
    )
    site.fake("alpha", aliases=["a"])
    site.fake("hidden", unlisted=True)
    async with serving(site.write()) as proxy, proxy.client.get("/v1/models") as response:
        listing = await response.json()
    assert listing["object"] == "list"
    assert [row["id"] for row in listing["data"]] == ["alpha", "zeta"]
    zeta = listing["data"][1]
    created = zeta.pop("created")
    assert isinstance(created, int) and created > 0
    assert zeta == {
        "id": "zeta",
        "object": "model",
        "owned_by": "halogen",
        "name": "Zeta 7B",
        "description": "the last one",
        "meta": {"llamaswap": {"family": "llama", "contextLength": 4096}},
        "status": {"value": "unloaded"},
    }


async def test_aliases_are_listed_when_the_config_asks(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("model", aliases=["gpt-4o", "b-alias"])
    site.top["includeAliasesInList"] = True
    async with serving(site.write()) as proxy, proxy.client.get("/v1/models") as response:
        ids = [row["id"] for row in (await response.json())["data"]]
    assert ids == ["b-alias", "gpt-4o", "model"]


async def test_a_model_answers_to_its_id_its_aliases_and_latest_and_unlisted_ones_too(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("model", aliases=["gpt-4o"])
    site.fake("hidden", unlisted=True)
    async with serving(site.write()) as proxy:
        for name in ("model", "gpt-4o", "model:latest", "gpt-4o:latest"):
            echo = await echo_of(await proxy.chat(name))
            assert echo["body"]["model"] == name  # the client's name goes upstream unchanged
        assert fake.starts() == 1
        async with await proxy.chat("hidden") as response:
            assert (await response.json())["served_by"] == "hidden"


async def test_path_query_and_body_reach_the_upstream_byte_for_byte(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    body = b'{ "model" : "m",  "prompt":"caf\\u00e9", "n_predict": 3 ,"z":1}'
    async with serving(site.write()) as proxy:
        response = await proxy.client.post(
            "/completion?slot=1&x=%20y",
            data=body,
            headers={"Content-Type": "application/json", "X-Trace": "abc"},
        )
        echo = await echo_of(response)
    assert echo["path"] == "/completion"
    assert echo["query"] == "slot=1&x=%20y"
    assert echo["raw"] == body.decode()
    assert echo["headers"]["x-trace"] == "abc"


@pytest.mark.parametrize(
    "route",
    [
        "/v1/completions",
        "/v1/embeddings",
        "/v1/rerank",
        "/v1/reranking",
        "/rerank",
        "/reranking",
        "/infill",
        "/completion",
        "/v1/responses",
        "/v1/responses/input_tokens",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/audio/speech",
        "/v1/audio/voices",
        "/v1/images/generations",
        "/sdapi/v1/txt2img",
        "/sdapi/v1/img2img",
    ],
)
async def test_every_openai_route_reaches_the_model_it_names(tmp_path: Path, route: str) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        echo = await echo_of(await proxy.client.post(route, json={"model": "m", "input": "x"}))
    assert echo["path"] == route


# Versionless routes (issue #728) and audio.cpp's task API lose their prefix upstream:
# TestStripVersionPrefix and TestStripAudioAPIPrefix in internal/server/extras_test.go (llama-swap).
@pytest.mark.parametrize(
    ("route", "upstream"),
    [
        ("/v/chat/completions", "/chat/completions"),
        ("/v/responses", "/responses"),
        ("/v/completions", "/completions"),
        ("/v/messages", "/messages"),
        ("/v/messages/count_tokens", "/messages/count_tokens"),
        ("/v/embeddings", "/embeddings"),
        ("/v/rerank", "/rerank"),
        ("/v/reranking", "/reranking"),
        ("/audioapi/v1/tasks/run", "/v1/tasks/run"),
    ],
)
async def test_versionless_and_audio_api_routes_reach_the_model_without_their_prefix(
    tmp_path: Path, route: str, upstream: str
) -> None:
    site = Site(tmp_path)
    site.fake("m", useModelName="served-name")
    async with serving(site.write()) as proxy:
        echo = await echo_of(await proxy.client.post(route + "?slot=2", json={"model": "m", "x": 1}))
    assert (echo["path"], echo["query"]) == (upstream, "slot=2")
    assert echo["body"] == {"model": "served-name", "x": 1}


# modelGetRoutes in internal/server/server.go (llama-swap): the model is the `model` query
# parameter (extractContext in internal/swaputil/http.go); the query goes on as sent.
@pytest.mark.parametrize("route", ["/props", "/v1/audio/voices", "/sdapi/v1/loras"])
async def test_get_routes_take_the_model_from_the_query(tmp_path: Path, route: str) -> None:
    site = Site(tmp_path)
    site.fake("m", aliases=["alias"], useModelName="served-name")
    site.fake("other")
    async with serving(site.write()) as proxy:
        echo = await echo_of(await proxy.client.get(route + "?model=alias&lang=en"))
        assert (echo["method"], echo["path"], echo["query"]) == ("GET", route, "model=alias&lang=en")
        assert echo["body"] is None
        assert (await proxy.running()) == {"m": "ready"}
        for query, status in (("", 400), ("?model=", 400), ("?model=nope", 404)):
            async with proxy.client.get(route + query) as response:
                assert response.status == status, query


async def test_use_model_name_rewrites_only_the_model_field(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m", useModelName="org/real-model:Q4")
    async with serving(site.write()) as proxy:
        echo = await echo_of(await proxy.chat("m", temperature=0.5))
    assert echo["body"] == {
        "model": "org/real-model:Q4",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.5,
    }


async def test_filters_strip_and_force_body_keys_but_never_touch_model(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake(
        "m",
        filters={
            "stripParams": "temperature, top_p, model",
            "setParams": {"top_k": 5, "model": "other", "seed": 42},
        },
    )
    async with serving(site.write()) as proxy:
        echo = await echo_of(await proxy.chat("m", temperature=2.0, top_p=0.1, seed=1, max_tokens=8))
    assert echo["body"] == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "seed": 42,
        "max_tokens": 8,
        "top_k": 5,
    }


async def test_audio_transcriptions_take_the_model_from_the_form(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("whisper", useModelName="whisper-large")
    form = aiohttp.FormData()
    form.add_field("file", b"RIFF\x00\x01binary", filename="a.wav", content_type="audio/wav")
    form.add_field("model", "whisper")
    form.add_field("language", "en")
    async with serving(site.write()) as proxy:
        echo = await echo_of(await proxy.client.post("/v1/audio/transcriptions", data=form))
    assert echo["path"] == "/v1/audio/transcriptions"
    raw = echo["raw"]
    assert 'name="model"\r\n\r\nwhisper-large\r\n' in raw
    assert 'name="language"\r\n\r\nen\r\n' in raw
    assert "RIFF\x00\x01binary" in raw


async def test_image_edits_take_the_model_from_the_form(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("sd", useModelName="sd-xl")
    form = aiohttp.FormData()
    form.add_field("image", b"\x89PNG\r\n\x00binary", filename="a.png", content_type="image/png")
    form.add_field("model", "sd")
    form.add_field("prompt", "a red hat")
    async with serving(site.write()) as proxy:
        echo = await echo_of(await proxy.client.post("/v1/images/edits", data=form))
    assert echo["path"] == "/v1/images/edits"
    assert 'name="model"\r\n\r\nsd-xl\r\n' in echo["raw"]
    assert 'name="prompt"\r\n\r\na red hat\r\n' in echo["raw"]


async def test_one_model_is_retrieved_by_its_id_or_alias_and_an_unknown_id_is_a_404(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("org/model", aliases=["short"], name="Org Model")
    site.fake("hidden", unlisted=True)
    async with serving(site.write()) as proxy:
        for name in ("org/model", "short", "hidden"):
            async with proxy.client.get(f"/v1/models/{name}") as response:
                assert response.status == 200
                record = await response.json()
            assert record["id"] == name and record["object"] == "model"
        async with proxy.client.get("/v1/models/short") as response:
            assert (await response.json())["name"] == "Org Model"
        async with proxy.client.get("/v1/models/nope") as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    "route", ["/v1/messages", "/v1/messages/count_tokens", "/v/messages", "/v/messages/count_tokens"]
)
async def test_anthropic_routes_answer_errors_in_anthropics_shape(tmp_path: Path, route: str) -> None:
    site = Site(tmp_path)
    site.fake("m")
    site.top["apiKeys"] = ["k1"]
    key = {"x-api-key": "k1"}
    async with serving(site.write()) as proxy:
        cases = [
            ({"model": "nope", "messages": []}, key, 404, "not_found_error", "'nope'"),
            ({"messages": []}, key, 400, "invalid_request_error", '"model"'),
            ({"model": "m"}, {"x-api-key": "wrong"}, 401, "authentication_error", "API key"),
        ]
        for body, headers, status, kind, said in cases:
            async with proxy.client.post(route, json=body, headers=headers) as response:
                assert response.status == status
                error = await response.json()
            assert error["type"] == "error" and error["error"]["type"] == kind
            assert said in error["error"]["message"]
        async with proxy.client.post(route, data=b"{not json", headers=key) as response:
            assert response.status == 400
            assert (await response.json())["error"]["type"] == "invalid_request_error"


EVERY_ROUTE = [
    ("GET", "/v1/models", None),
    ("POST", "/v1/chat/completions", {"model": "m"}),
    ("POST", "/v1/embeddings", {"model": "m"}),
    ("POST", "/v1/messages", {"model": "m"}),
    ("POST", "/v1/responses", {"model": "m"}),
    ("GET", "/v1/models/m", None),
    ("GET", "/running", None),
    ("GET", "/unload", None),
    ("POST", "/unload/m", None),
    ("GET", "/upstream/m/props", None),
    ("GET", "/metrics", None),
    ("GET", "/logs", None),
    ("GET", "/logs/stream", None),
    ("GET", "/logs/stream/proxy", None),
    ("GET", "/models", None),
    ("POST", "/api/models/unload", None),
    ("POST", "/api/models/unload/m", None),
    ("GET", "/props?model=m", None),
    ("POST", "/v/chat/completions", {"model": "m"}),
    ("GET", "/", None),
    ("HEAD", "/", None),
    ("GET", "/api/version", None),
    ("GET", "/api/tags", None),
    ("POST", "/api/show", {"model": "m"}),
    ("GET", "/api/ps", None),
    ("POST", "/api/chat", {"model": "m"}),
    ("POST", "/api/generate", {"model": "m"}),
    ("POST", "/api/embed", {"model": "m"}),
    ("POST", "/api/embeddings", {"model": "m"}),
    ("POST", "/api/pull", {"model": "m"}),
]


async def test_api_keys_guard_every_route_but_health(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    site.top["apiKeys"] = ["sk-first", "sk-second"]
    async with serving(site.write()) as proxy:
        async with proxy.client.get("/health") as response:
            assert response.status == 200
        for method, path, body in EVERY_ROUTE:
            for headers in (
                {},
                {"Authorization": "Bearer sk-wrong"},
                {"x-api-key": "sk-firs"},
                {"Authorization": "sk-first"},
            ):
                async with proxy.client.request(method, path, json=body, headers=headers) as response:
                    assert response.status == 401, (method, path, headers)
                    assert response.headers["WWW-Authenticate"] == challenge(path)
                    if method != "HEAD":
                        error = (await response.json())["error"]
                        ollama_route = path == "/" or path.startswith("/api/")
                        assert (
                            isinstance(error, str)
                            if ollama_route
                            else error["type"] == "authentication_error"
                        )
        assert fake.starts() == 0
        for headers in ({"Authorization": "Bearer sk-second"}, {"x-api-key": "sk-first"}):
            echo = await echo_of(await proxy.chat("m", headers=headers))
            # The proxy's own key stays with the proxy.
            assert "authorization" not in echo["headers"] and "x-api-key" not in echo["headers"]
        async with proxy.client.get("/api/tags", headers={"Authorization": "Bearer sk-first"}) as response:
            assert response.status == 200


async def test_the_upstream_route_reaches_only_paths_of_that_models_server(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("org/model")
    async with serving(site.write()) as proxy:
        echo = await echo_of(await proxy.client.get("/upstream/org/model/props?fields=a%20b"))
        assert (echo["method"], echo["path"], echo["query"]) == ("GET", "/props", "fields=a%20b")
        echo = await echo_of(await proxy.client.put("/upstream/org/model/slots/0", data=b"raw"))
        assert (echo["method"], echo["path"], echo["raw"]) == ("PUT", "/slots/0", "raw")
        for target in (
            "/upstream/org/model/../../etc/passwd",
            "/upstream/org/model/%2e%2e/x",
            "/upstream/org/model//evil.example/x",
            "/upstream/org/model/http://evil.example/x",
            "/upstream/org/model/a%2Fb",
            "/upstream/org/model/a/./b",
            "/upstream/org/model/a%5cb",
        ):
            assert await raw_status(proxy, target) == 400, target
        assert await raw_status(proxy, "/upstream/nope/props") == 404


async def test_metrics_count_requests_errors_swaps_load_time_and_tokens_per_model(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        await echo_of(await proxy.chat("m"))
        async with await proxy.chat("m", stream=True, headers={"X-Fake-Chunks": "4"}) as response:
            await response.read()
        async with proxy.client.get("/metrics") as response:
            assert response.content_type == "text/plain"
            text = await response.text()
    assert metric(text, "halogen_requests_total")["m"] == "2"
    assert metric(text, "halogen_request_errors_total")["m"] == "0"
    assert metric(text, "halogen_swaps_total")["m"] == "1"
    assert float(metric(text, "halogen_load_seconds_total")["m"]) > 0
    # 7 + 11 prompt tokens and 3 + 4 generated, as the fake reported them.
    assert metric(text, "halogen_prompt_tokens_total")["m"] == "18"
    assert metric(text, "halogen_generated_tokens_total")["m"] == "7"
    assert metric(text, "halogen_model_running")["m"] == "1"
    assert "# TYPE halogen_requests_total counter" in text


async def test_metrics_count_ollama_requests_under_the_status_they_ended_with(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    chat = {"model": "m:latest", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    async with serving(site.write()) as proxy:
        async with proxy.client.post("/api/chat", json=chat) as response:
            assert response.status == 200
        async with proxy.client.post("/api/chat", json=chat, headers={"X-Fake-Status": "500"}) as response:
            assert response.status == 500
        async with proxy.client.post("/api/generate", json={"model": "m", "prompt": "hi"}) as response:
            assert response.status == 200
            await response.read()  # a stream, the Ollama default
        text = await proxy.metrics()
    assert metric(text, "halogen_requests_total")["m"] == "3"
    assert metric(text, "halogen_request_errors_total")["m"] == "1"


async def test_logs_hold_proxy_and_upstream_output_and_the_stream_follows_new_lines(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        follow = await proxy.client.get("/logs/stream")
        assert follow.status == 200
        await echo_of(await proxy.chat("m"))
        seen = b""
        while b"[m] fake-upstream[m]: listening" not in seen:
            seen += await follow.content.readany()
        follow.close()
        async with proxy.client.get("/logs") as response:
            history = await response.text()
    assert "[halogen] starting model 'm'" in history
    assert "[m] fake-upstream[m]: loading model" in history


async def test_the_log_stream_shows_the_proxys_lines_every_models_or_one_models(tmp_path: Path) -> None:
    # getLogger and handleLogStream in internal/server/log.go (llama-swap): /logs/stream/proxy,
    # /logs/stream/upstream, /logs/stream/<model id or alias>; anything else is a 400.
    site = Site(tmp_path)
    site.fake("a", aliases=["first"])
    site.fake("b")
    site.top["groups"] = {"both": {"swap": False, "members": ["a", "b"]}}

    async def shown(source: str, *until: str) -> list[str]:
        """The lines `/logs/stream/<source>` shows, read until each of `until` was seen."""
        async with asyncio.timeout(PATIENCE), proxy.client.get(f"/logs/stream/{source}") as response:
            assert response.status == 200, source
            seen = ""
            while not seen.endswith("\n") or not all(marker in seen for marker in until):
                seen += (await response.content.readany()).decode()
            return seen.splitlines()

    loaded = {m: f"[{m}] fake-upstream[{m}]: loading model" for m in ("a", "b")}
    async with serving(site.write()) as proxy:
        await echo_of(await proxy.chat("a"))
        await echo_of(await proxy.chat("b"))
        proxy_lines = await shown("proxy", "model 'b' is ready")
        assert all(line.startswith("[halogen] ") for line in proxy_lines)
        for source, models in (("upstream", {"a", "b"}), ("b", {"b"}), ("first", {"a"})):
            lines = await shown(source, *(loaded[m] for m in models))
            assert {line.split()[0] for line in lines} == {f"[{m}]" for m in models}, source
        async with proxy.client.get("/logs/stream/nope") as response:
            assert response.status == 400
            assert "'proxy', 'upstream' or a model's ID" in (await response.json())["error"]["message"]
        # A live line reaches the views it belongs to, and only those.
        await proxy.swapper.unload_all()
        only_b = await proxy.client.get("/logs/stream/b?no-history")
        await echo_of(await proxy.chat("a"))
        await echo_of(await proxy.chat("b"))
        seen = b""
        async with asyncio.timeout(PATIENCE):
            while loaded["b"].encode() not in seen:
                seen += await only_b.content.readany()
        only_b.close()
    assert b"[a]" not in seen and b"[halogen]" not in seen


async def test_the_api_unload_routes_stop_every_model_or_one(tmp_path: Path) -> None:
    # handleAPIUnloadAll and handleAPIUnloadModel in internal/server/apigroup.go (llama-swap).
    site = Site(tmp_path)
    site.fake("a", aliases=["first"])
    site.fake("b")
    site.top["groups"] = {"both": {"swap": False, "members": ["a", "b"]}}
    async with serving(site.write()) as proxy:
        await echo_of(await proxy.chat("a"))
        await echo_of(await proxy.chat("b"))
        async with proxy.client.post("/api/models/unload/first") as response:
            assert (response.status, await response.text()) == (200, "OK")
        assert await proxy.running() == {"b": "ready"}
        async with proxy.client.post("/api/models/unload/nope") as response:
            assert response.status == 404
        async with proxy.client.post("/api/models/unload") as response:
            assert (response.status, await response.json()) == (200, {"msg": "ok"})
        assert await proxy.running() == {}
        async with proxy.client.get("/models") as response:
            assert [row["id"] for row in (await response.json())["data"]] == ["a", "b"]


async def test_the_access_log_has_a_stdout_line_per_request_and_stays_out_of_the_history(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    site.fake("m")
    out = io.StringIO()
    async with serving(site.write(), logs=Logs(out=out)) as proxy:
        await echo_of(await proxy.chat("m"))
        async with proxy.client.post("/api/chat", json={"model": "m:latest", "stream": False}) as response:
            assert response.status == 200  # no messages: a load
        async with await proxy.chat("nope") as response:
            assert response.status == 404
        async with proxy.client.get("/health?probe=1") as response:
            assert response.status == 200
        async with proxy.client.get("/logs") as response:
            history = await response.text()
    lines = [line for line in out.getvalue().splitlines() if '"' in line]
    assert [re.sub(r" [0-9.]+ ms$", " T", line) for line in lines] == [
        '[halogen] 127.0.0.1 "POST /v1/chat/completions" 200 model=m T',
        '[halogen] 127.0.0.1 "POST /api/chat" 200 model=m T',
        '[halogen] 127.0.0.1 "POST /v1/chat/completions" 404 T',
        '[halogen] 127.0.0.1 "GET /logs" 200 T',
    ]  # /health is a probe's: debug
    assert "[halogen] starting model 'm'" in out.getvalue() and "starting model 'm'" in history
    assert '"POST' not in history


async def test_log_level_drops_the_proxys_lines_below_it_from_stdout_and_the_history(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    for level, shown in (("debug", True), ("info", True), ("warn", False), ("error", False)):
        out = io.StringIO()
        async with serving(site.write(), logs=Logs(out=out, level=level)) as proxy:
            await echo_of(await proxy.chat("m"))
            async with await proxy.chat("nope") as response:
                assert response.status == 404
            async with proxy.client.get("/health") as response:
                assert response.status == 200
            async with proxy.client.get("/logs") as response:
                history = await response.text()
        printed = out.getvalue()
        assert ("starting model 'm'" in printed) == ("starting model 'm'" in history) == shown, level
        assert ('"POST /v1/chat/completions" 200' in printed) == shown, level
        assert ('"GET /health" 200' in printed) == (level == "debug"), level
        assert "[m] fake-upstream" in history  # the models' output is not the proxy's to filter


async def test_a_body_over_the_size_limit_is_refused_with_413(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write(), max_body=1024) as proxy:
        async with await proxy.chat("m", padding="x" * 2048) as response:
            assert response.status == 413
            assert "error" in await response.json()
        assert fake.starts() == 0
        await echo_of(await proxy.chat("m", padding="x" * 100))


async def test_running_lists_state_command_proxy_and_ttl(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m", ttl=300)
    async with serving(site.write()) as proxy:
        await echo_of(await proxy.chat("m"))
        async with proxy.client.get("/running") as response:
            rows = (await response.json())["running"]
    assert len(rows) == 1
    row = rows[0]
    assert (row["model"], row["state"], row["ttl"]) == ("m", "ready", 300)
    assert row["proxy"] == f"http://127.0.0.1:{fake.port}"
    assert "fake_upstream.py" in row["cmd"] and f"--port {fake.port}" in row["cmd"]


async def test_health_answers_without_auth_and_without_starting_anything(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    site.top["apiKeys"] = ["sk-key"]
    async with serving(site.write()) as proxy:
        for path in ("/health", "/wol-health"):  # handleHealth in internal/server/api.go
            async with proxy.client.get(path) as response:
                assert response.status == 200
                assert await response.text() == "OK"
    assert fake.starts() == 0


async def test_a_head_of_the_log_stream_answers_its_headers_and_ends(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
        # Two requests on one connection: the second is answered only if the HEAD ended.
        writer.write(
            b"HEAD /logs/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        async with asyncio.timeout(PATIENCE):  # a bound, not a measure
            answer = await reader.read()
        writer.close()
    head, health = answer.split(b"HTTP/1.1 ")[1:]
    assert head.startswith(b"200 ") and head.endswith(b"\r\n\r\n")  # no body after the headers
    assert health.startswith(b"200 ") and health.endswith(b"\r\n\r\nOK")
