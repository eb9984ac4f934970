"""The web UI's routes without a browser: /api/halogen/memory (the budget, each model's estimate
beside its PSS, the sets that fit together with the one in use marked, the queue with its
places), the pages' Content-Security-Policy and assets, and the key a browser is asked for."""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import re
import tomllib
from pathlib import Path

import pytest

from halogen.runtime.apis import observed
from halogen.runtime.ui.routes import load_assets

from .harness import Site, eventually, serving

MiB = 1024 * 1024


async def test_memory_shows_the_budget_each_estimate_beside_its_pss_and_the_group_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(observed.BUDGET_ENV, str(8 * 1024 * MiB))
    site = Site(tmp_path)
    site.fake("small", metadata={"memory": 300 * MiB, "architecture": "llama", "fileSize": 200 * MiB})
    site.fake("large", metadata={"memory": 900 * MiB})
    site.fake("apart")
    site.top["groups"] = {
        "chat": {"swap": True, "exclusive": False, "members": ["small", "large"]},
        "side": {"swap": False, "exclusive": False, "members": ["apart"]},
    }
    async with serving(site.write()) as proxy:
        assert (await proxy.chat("small")).status == 200
        async with proxy.client.get("/api/halogen/memory") as response:
            assert response.status == 200
            doc = await response.json()
    assert doc["budget"] == 8 * 1024 * MiB and doc["router"] == "group"
    models = {m["id"]: m for m in doc["models"]}
    small = models["small"]
    assert small["state"] == "ready" and small["estimate"] == 300 * MiB
    assert small["pid"] == site.fakes["small"].last_pid()
    assert small["observed"] > MiB  # the fake upstream's own PSS, read from /proc
    assert small["facts"] == {"architecture": "llama", "fileSize": 200 * MiB}
    assert models["large"]["state"] == "stopped" and models["large"]["observed"] is None
    assert models["apart"]["estimate"] is None
    sets = {s["name"]: s for s in doc["sets"]}
    # A swapping group holds its largest member at most; the one with a running model is in use.
    assert sets["chat"] == {
        "name": "chat",
        "rule": "swap",
        "models": ["large", "small"],
        "estimate": 900 * MiB,
        "current": True,
    }
    assert sets["side"]["current"] is False and sets["side"]["estimate"] is None
    assert doc["waiting"] == []


async def test_memory_marks_the_matrix_set_the_running_models_are_in(tmp_path: Path) -> None:
    site = Site(tmp_path)
    for mid, size in (("gemma", 4), ("tts", 1), ("big", 20)):
        site.fake(mid, metadata={"memory": size * 1024 * MiB})
    site.top["routing"] = {
        "router": {"use": "matrix", "settings": {"matrix": {"sets": {"voice": "gemma & tts", "full": "big"}}}}
    }
    async with serving(site.write()) as proxy:
        for model in ("gemma", "tts"):
            assert (await proxy.chat(model)).status == 200
        async with proxy.client.get("/api/halogen/memory") as response:
            doc = await response.json()
    assert doc["router"] == "matrix"
    assert doc["sets"] == [
        {
            "name": "voice",
            "rule": "gemma & tts",
            "models": ["gemma", "tts"],
            "estimate": 5 * 1024 * MiB,
            "current": True,
        },
        {"name": "full", "rule": "big", "models": ["big"], "estimate": 20 * 1024 * MiB, "current": False},
    ]


async def test_memory_lists_a_request_waiting_for_room_with_its_place_in_the_queue(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("a")
    site.fake("b")
    site.top["groups"] = {"one": {"swap": True, "exclusive": True, "members": ["a", "b"]}}
    gate = tmp_path / "gate"
    async with serving(site.write()) as proxy:
        holding = asyncio.ensure_future(proxy.chat("a", stream=True, headers={"X-Fake-Gate": str(gate)}))
        await eventually(lambda: proxy.swapper.in_flight()["a"] == 1, "a is held")
        waiting = asyncio.ensure_future(proxy.chat("b"))
        await eventually(lambda: proxy.swapper.queued()["b"] == 1, "b waits")
        async with proxy.client.get("/api/halogen/memory") as response:
            doc = await response.json()
        gate.touch()
        for task in (holding, waiting):
            answer = await task
            await answer.read()
            assert answer.status == 200
    assert doc["waiting"] == [{"position": 1, "model": "b", "priority": 0}]
    assert {m["id"]: m["queued"] for m in doc["models"]} == {"a": 0, "b": 1}


async def test_the_page_runs_only_its_own_scripts_under_a_strict_policy(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        async with proxy.client.get("/ui", allow_redirects=False) as response:
            assert response.status == 301 and response.headers["Location"] == "/ui/"
        async with proxy.client.get("/ui/") as response:
            assert response.status == 200 and response.content_type == "text/html"
            policy = response.headers["Content-Security-Policy"]
            page = await response.text()
            etag = response.headers["ETag"]
        async with proxy.client.get("/ui/", headers={"If-None-Match": etag}) as response:
            assert response.status == 304
        for path in ("app.js", "pages/memory.js", "style.css"):
            async with proxy.client.get(f"/ui/{path}") as response:
                assert response.status == 200, path
                assert response.headers["X-Content-Type-Options"] == "nosniff"
        for path in ("nope.js", "../halogen.yaml", "%2e%2e/config.yaml", "static/app.js"):
            async with proxy.client.get(f"/ui/{path}") as response:
                assert response.status == 404, path
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts and all(' src="' in tag for tag in scripts)  # no inline script
    assert "style=" not in page


def test_every_asset_is_text_the_package_ships_and_no_script_writes_html() -> None:
    assets = load_assets()
    assert {"index.html", "app.js", "live.js", "dom.js", "ansi.js", "style.css"} <= set(assets)
    assert {
        f"pages/{p}.js" for p in ("activity", "models", "playground", "logs", "performance", "memory")
    } <= set(assets)
    for name, asset in assets.items():
        text = asset.body.decode()
        # Text from the server only ever reaches the page as text nodes.
        assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML\(|document\.write\(", text), name
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), name  # nothing from elsewhere
        assert "https://" not in text, name


async def test_with_api_keys_a_browser_is_asked_for_the_key_as_the_basic_password(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    site.top["apiKeys"] = ["sk-ui"]
    browser = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "none"}

    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async with serving(site.write()) as proxy:
        for path in ("/ui/", "/api/halogen/memory", "/v1/models"):
            async with proxy.client.get(path, headers=browser) as response:
                assert response.status == 401, path
                assert response.headers["WWW-Authenticate"] == 'Basic realm="llama-swap"'
                assert "sk-ui" not in await response.text()
        # An API client keeps the Bearer challenge it always had, but on llama-swap's /api/ routes.
        async with proxy.client.get("/v1/models") as response:
            assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        async with proxy.client.get("/api/halogen/memory") as response:
            assert (
                response.status == 401 and response.headers["WWW-Authenticate"] == 'Basic realm="llama-swap"'
            )
        for user in ("", "anyone"):
            async with proxy.client.get(
                "/ui/", headers={**browser, "Authorization": basic(user, "sk-ui")}
            ) as response:
                assert response.status == 200
            async with proxy.client.get(
                "/api/halogen/memory", headers={"Authorization": basic(user, "sk-ui")}
            ) as response:
                assert response.status == 200
        for wrong in (
            basic("sk-ui", ""),
            basic("user", "sk-nope"),
            "Basic !!!",
            "Basic " + base64.b64encode(b"sk-ui").decode(),
        ):
            async with proxy.client.get("/ui/", headers={**browser, "Authorization": wrong}) as response:
                assert response.status == 401, wrong


def test_every_asset_is_listed_as_package_data_so_the_image_installs_it() -> None:
    root = Path(__file__).resolve().parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())
    assert "halogen.runtime.ui" in data["tool"]["setuptools"]["packages"]
    globs = data["tool"]["setuptools"]["package-data"]["halogen.runtime.ui"]
    static = root / "halogen" / "runtime" / "ui"
    files = [p.relative_to(static).as_posix() for p in (static / "static").rglob("*") if p.is_file()]
    assert files
    unlisted = [
        f for f in files if not any(fnmatch.fnmatchcase(f, g) and f.count("/") == g.count("/") for g in globs)
    ]
    assert unlisted == []
    assert set(load_assets()) == {f.removeprefix("static/") for f in files}
