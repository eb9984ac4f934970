"""A changed config file is adopted while serving, keeping models whose command is unchanged."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

import yaml

from halogen.runtime.logs import Logs
from halogen.runtime.reload import Watcher

from .harness import PATIENCE, Site, eventually, process_exists, serving
from .processes import halogen_serve


async def test_a_reload_keeps_unchanged_commands_running_and_restarts_changed_ones(tmp_path: Path) -> None:
    site = Site(tmp_path)
    a = site.fake("a")
    b = site.fake("b")
    gone = site.fake("gone")
    site.top["groups"] = {"side": {"swap": False, "exclusive": False, "members": ["a", "b", "gone"]}}
    path = site.write()
    async with serving(path) as proxy:
        for model in ("a", "b", "gone"):
            async with await proxy.chat(model) as response:
                assert response.status == 200
        old_b = b.last_pid()
        logs = Logs(echo_proxy=False)
        watcher = Watcher(path, proxy.swapper, logs)
        assert await watcher.check() is False  # nothing changed yet

        site.models["a"]["ttl"] = 1234  # a setting, not the command
        site.top["logLevel"] = "warn"
        site.models["b"]["cmd"] += " --chunks 5"
        del site.models["gone"]
        site.top["groups"]["side"]["members"].remove("gone")
        site.fake("new")
        site.top["groups"]["side"]["members"].append("new")
        site.write()
        assert await watcher.check() is True
        assert logs.level == "warn"

        await eventually(lambda: not process_exists(old_b), "b's old process stopped")
        await eventually(lambda: not process_exists(gone.last_pid()), "the removed model stopped")
        assert await proxy.running() == {"a": "ready"}
        assert a.starts() == 1 and proxy.swapper.slot("a").runnable.ttl == 1234
        async with await proxy.chat("b") as response:
            assert response.status == 200
        assert b.starts() == 2 and b.events("start")[-1]["argv"][-2:] == ["--chunks", "5"]
        async with await proxy.chat("gone") as response:
            assert response.status == 404
        async with await proxy.chat("new") as response:
            assert response.status == 200


async def test_an_invalid_new_config_is_logged_and_the_running_one_kept(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("a")
    path = site.write()
    async with serving(path) as proxy:
        logs = Logs(echo_proxy=False)
        watcher = Watcher(path, proxy.swapper, logs)
        path.write_text("models:\n  a:\n    cmd: [not, a, string]\n")
        assert await watcher.check() is False
        assert any("invalid; keeping the running config" in line for line in logs.history())
        assert any(f"{path}:3:" in line for line in logs.history())
        async with await proxy.chat("a") as response:
            assert response.status == 200


async def test_a_model_whose_command_changed_finishes_its_requests_before_it_stops(tmp_path: Path) -> None:
    site = Site(tmp_path)
    m = site.fake("m")
    gate = tmp_path / "gate"
    path = site.write()
    async with serving(path) as proxy:
        stream = await proxy.chat("m", stream=True, headers={"X-Fake-Gate": str(gate)})
        await stream.content.readuntil(b"\n\n")
        old = m.last_pid()
        watcher = Watcher(path, proxy.swapper, Logs(echo_proxy=False))
        site.models["m"]["cmd"] += " --chunks 4"
        site.write()
        assert await watcher.check() is True
        # The new process cannot start while the old one holds the port and serves.
        waiting = asyncio.create_task(proxy.chat("m"))
        await eventually(lambda: proxy.swapper.slot("m").queued == 1, "the request waits for the old process")
        assert process_exists(old) and m.starts() == 1
        gate.touch()
        assert (await stream.read()).endswith(b"data: [DONE]\n\n")
        stream.release()
        async with await waiting as response:
            assert response.status == 200
        assert m.starts() == 2 and not process_exists(old)


def test_the_served_process_picks_up_a_changed_file_by_itself(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("a")
    path = site.write()
    with halogen_serve(path, tmp_path / "serve.log") as serving:
        site.fake("b")
        text = yaml.safe_dump({**site.top, "models": site.models}, sort_keys=False)
        # Replaced the way the kubelet updates a ConfigMap volume: a new file moved in place.
        (tmp_path / "next.yaml").write_text(text)
        (tmp_path / "next.yaml").replace(path)
        deadline = time.monotonic() + PATIENCE
        while True:
            with urllib.request.urlopen(serving.url + "/v1/models", timeout=PATIENCE) as response:
                ids = [row["id"] for row in json.load(response)["data"]]
            if ids == ["a", "b"]:
                break
            assert time.monotonic() < deadline, ids
            time.sleep(0.1)
