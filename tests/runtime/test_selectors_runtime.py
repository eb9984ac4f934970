"""Selectors and profiles while serving: a selector id is resolved per request, selectors are
listed, and profiles are listed and switched through llama-swap's HTTP API
(internal/server/apigroup.go, internal/server/profiles.go)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from .harness import Proxy, Site, serving


def selector_site(tmp_path: Path) -> Site:
    site = Site(tmp_path)
    for model in ("a", "b", "c"):
        site.fake(model)
    site.top["groups"] = {"side": {"swap": False, "exclusive": False, "members": ["a", "b", "c"]}}
    site.top["selectors"] = {
        "best": {"strategy": "warm", "targets": ["a", "b"], "name": "Best", "description": "the warm one"},
        "fixed": {"strategy": "pin", "targets": ["c"]},
    }
    site.top["profiles"] = {"night": {"description": "small at night", "pins": {"best": "c", "a": None}}}
    return site


async def get(proxy: Proxy, path: str) -> Any:
    async with proxy.client.get(path) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def put_profile(proxy: Proxy, body: Any) -> tuple[int, Any]:
    async with proxy.client.put("/api/profiles/active", json=body) as response:
        return response.status, await response.json()


async def test_a_warm_selector_sends_each_request_to_its_first_ready_target(tmp_path: Path) -> None:
    async with serving(selector_site(tmp_path).write()) as proxy:
        # Nothing runs: the first target is started cold.
        assert await proxy.served_by("best") == "a"
        assert await proxy.served_by("fixed") == "c"
        await proxy.swapper.unload("a")
        assert await proxy.served_by("b") == "b"
        # b is ready and a is not: warm picks b without starting a.
        assert await proxy.served_by("best") == "b"
        assert "a" not in await proxy.running()


async def test_selectors_are_listed_with_their_name_and_description(tmp_path: Path) -> None:
    async with serving(selector_site(tmp_path).write()) as proxy:
        rows = {row["id"]: row for row in (await get(proxy, "/v1/models"))["data"]}
        assert rows["best"]["name"] == "Best" and rows["best"]["description"] == "the warm one"
        assert rows["best"]["meta"]["llamaswap"]["type"] == "selector"
        assert rows["fixed"]["meta"]["llamaswap"]["targets"] == ["c"]
        tags = {row["name"]: row for row in (await get(proxy, "/api/tags"))["models"]}
        assert tags["best:latest"]["description"] == "the warm one"
        assert {"a:latest", "b:latest", "c:latest", "fixed:latest"} <= set(tags)


async def test_profiles_are_listed_switched_and_none_is_active_at_start_or_after_a_reload(
    tmp_path: Path,
) -> None:
    site = selector_site(tmp_path)
    async with serving(site.write()) as proxy:
        listing = await get(proxy, "/api/profiles")
        assert listing == {
            "active": None,
            "profiles": [{"id": "night", "description": "small at night", "pins": {"best": "c", "a": ""}}],
        }
        assert await put_profile(proxy, {"name": "night"}) == (200, {"active": "night"})
        assert (await get(proxy, "/api/profiles"))["active"] == "night"
        # The pin rewrites the selector id; a pin to nothing disables the id.
        assert await proxy.served_by("best") == "c"
        async with await proxy.chat("a") as response:
            assert response.status == 404
        # llama-swap answers its /api/ routes through swaputil.SendResponse (internal/server/apigroup.go).
        refused = (404, {"src": "llama-swap", "error": "profile 'nope' not found"})
        assert await put_profile(proxy, {"name": "nope"}) == refused
        assert (await put_profile(proxy, {}))[0] == 400
        assert (await put_profile(proxy, {"name": 3}))[0] == 400
        assert await put_profile(proxy, {"name": None}) == (200, {"active": None})
        assert await proxy.served_by("a") == "a"

        assert await put_profile(proxy, {"name": "night"}) == (200, {"active": "night"})
        proxy.swapper.reload(proxy.swapper.resolved)
        assert (await get(proxy, "/api/profiles"))["active"] is None


def last_body(site: Site, model: str) -> Any:
    """The JSON body of the last request `model`'s upstream received."""
    return site.fakes[model].events("request")[-1]["body"]


async def test_the_upstream_sees_the_target_a_selector_or_a_profile_chose_and_its_params(
    tmp_path: Path,
) -> None:
    # ReplaceRequestModel after selector.go and profiles.go (internal/server, llama-swap): the
    # body names what was chosen, and the filters of that name apply.
    site = selector_site(tmp_path)
    site.models["c"]["filters"] = {"setParamsByID": {"c-brief": {"max_tokens": 2}}}
    site.top["selectors"]["brief"] = {"strategy": "pin", "targets": ["c-brief"]}
    async with serving(site.write()) as proxy:
        assert await proxy.served_by("best") == "a"
        assert last_body(site, "a")["model"] == "a"
        assert await proxy.served_by("brief") == "c"
        assert last_body(site, "c")["model"] == "c-brief" and last_body(site, "c")["max_tokens"] == 2
        async with proxy.client.post(
            "/api/chat",
            json={"model": "brief", "messages": [{"role": "user", "content": "hi"}], "stream": False},
        ) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["model"] == "brief"  # Ollama's answer repeats the name asked
        assert last_body(site, "c")["model"] == "c" and last_body(site, "c")["max_tokens"] == 2
        assert await put_profile(proxy, {"name": "night"}) == (200, {"active": "night"})
        assert await proxy.served_by("best") == "c"
        assert last_body(site, "c")["model"] == "c" and "max_tokens" not in last_body(site, "c")


async def test_a_selector_named_in_a_form_goes_upstream_as_its_target(tmp_path: Path) -> None:
    site = selector_site(tmp_path)
    async with serving(site.write()) as proxy:
        form = aiohttp.FormData()
        form.add_field("model", "fixed")
        form.add_field("file", b"RIFF", filename="a.wav", content_type="audio/wav")
        async with proxy.client.post("/v1/audio/transcriptions", data=form) as response:
            assert response.status == 200, await response.text()
        raw = site.fakes["c"].events("request")[-1]["raw"]
        assert 'name="model"\r\n\r\nc\r\n' in raw and "fixed" not in raw


async def test_a_selector_named_in_a_get_routes_query_goes_upstream_as_its_target(tmp_path: Path) -> None:
    # GET /props?model=<selector> as in internal/server/selector_test.go (llama-swap); the query's
    # model is replaced (ReplaceRequestModel, internal/swaputil/http.go), the rest kept.
    site = selector_site(tmp_path)
    async with serving(site.write()) as proxy:
        assert (await get(proxy, "/props?model=fixed&x=1"))["served_by"] == "c"
        seen = site.fakes["c"].events("request")[-1]
        assert (seen["path"], seen["query"]) == ("/props", "x=1&model=c")
