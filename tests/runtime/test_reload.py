"""A changed config file is adopted while serving, keeping models whose command is unchanged."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from halogen.llamaswap import io
from halogen.runtime.base.logs import Logs
from halogen.runtime.scheduling.swapper import Swapper
from halogen.runtime.serve.reload import Watcher
from halogen.runtime.serve.version import HEADER

from .harness import (
    PATIENCE,
    Site,
    eventually,
    free_port_run,
    metric,
    next_event,
    process_exists,
    serving,
    until,
)
from .processes import children, halogen_serve
from .test_hostile import BAD_TOP_VALUES


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
        await next_event(stream)
        old = m.last_pid()
        watcher = Watcher(path, proxy.swapper, Logs(echo_proxy=False))
        site.models["m"]["cmd"] += " --chunks 4"
        site.write()
        assert await watcher.check() is True
        # The new process cannot start while the old one holds the port and serves.
        waiting = asyncio.create_task(proxy.chat("m"))
        await eventually(lambda: proxy.swapper.queued()["m"] == 1, "the request waits for the old process")
        assert process_exists(old) and m.starts() == 1
        # The old process, still streaming, stays visible until it stops (it vanished from
        # /running, /api/ps and halogen_model_running), and the wait is logged with its reason.
        async with proxy.client.get("/running") as response:
            rows = (await response.json())["running"]
        assert [(r["model"], r["state"]) for r in rows] == [("m", "ready")]
        assert "--chunks 4" not in rows[0]["cmd"]
        async with proxy.client.get("/api/ps") as response:
            assert [row["model"] for row in (await response.json())["models"]] == ["m:latest"]
        async with proxy.client.get("/metrics") as response:
            text = await response.text()
        assert metric(text, "halogen_model_running")["m"] == "1"
        assert metric(text, "halogen_requests_queued")["m"] == "1"
        assert metric(text, "halogen_requests_in_flight")["m"] == "2"
        assert any(
            "requests for 'm' wait: a process the config reload replaced is finishing 1 requests" in line
            for line in proxy.swapper.logs.history()
        )
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


async def test_a_reload_applies_a_changed_health_check_timeout_unless_it_is_overridden(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    site.fake("kept")
    site.fake("changed")
    site.top["healthCheckTimeout"] = 30
    resolved, _ = io.load(site.write())
    by_config, overridden = Swapper(resolved), Swapper(resolved, health_check_timeout=2)
    kept = by_config.upstream("kept")
    assert kept.health_check_timeout == 30 and overridden.upstream("kept").health_check_timeout == 2

    site.top["healthCheckTimeout"] = 90
    site.models["changed"]["cmd"] += " --chunks 5"
    site.fake("new")
    resolved, _ = io.load(site.write())
    try:
        for swapper in (by_config, overridden):
            swapper.reload(resolved)
        assert by_config.upstream("kept") is kept  # same command: the same process would go on
        ids = ("kept", "changed", "new")
        # The next start of every model waits as long as the new config says...
        assert {m: by_config.upstream(m).health_check_timeout for m in ids} == dict.fromkeys(ids, 90)
        # ...unless the command line overrode the config's, for good.
        assert {m: overridden.upstream(m).health_check_timeout for m in ids} == dict.fromkeys(ids, 2)
    finally:
        await by_config.close()
        await overridden.close()


# --- the watcher survives every bad config --------------------------------------------------


def _laughs(levels: int = 9) -> str:
    """Billion laughs: each alias lists the previous one nine times."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def bad_configs(good: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Every kind of broken config a hand edit or a hostile one makes, from a valid `good`."""

    def edited(**top: Any) -> bytes:
        return yaml.safe_dump({**good, **top}, sort_keys=False).encode()

    def with_model(macros: dict[str, str] | None = None, **keys: Any) -> bytes:
        (model_id, model), *_ = good["models"].items()
        return edited(macros=macros or {}, models={model_id: {**model, **keys}})

    peer = {"models": ["far"]}
    return [
        ("broken YAML", b"models: [\n"),
        ("empty file", b""),
        ("a list", b"- models\n"),
        ("not UTF-8", b"models:\n  a:\n    cmd: \xff\xfe\n"),
        ("a NUL byte", b"models: {}\x00\n"),
        ("alias bomb", _laughs().encode()),
        ("64-bit overflow", edited(startPort=2**64)),
        ("macro cycle", with_model({"x": "${y}", "y": "${x}"}, cmd=good["models"]["a"]["cmd"] + " ${x}")),
        *((f"{key}={value!r}", edited(**{key: value})) for key, value in BAD_TOP_VALUES),
        ("proxy with a bracket left open", with_model(proxy="http://[::1")),
        ("proxy port out of range", with_model(proxy="http://127.0.0.1:99999")),
        ("proxy port not a number", with_model(proxy="http://127.0.0.1:port")),
        ("proxy with no host", with_model(proxy="http://:8080")),
        ("peer proxy with a bracket left open", edited(peers={"far": {**peer, "proxy": "http://[::1"}})),
        ("peer proxy port out of range", edited(peers={"far": {**peer, "proxy": "https://x.lan:70000"}})),
    ]


async def test_the_watcher_survives_every_bad_config_and_adopts_the_next_valid_one(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("a")
    path = site.write()
    good = {**site.top, "models": dict(site.models)}
    async with serving(path) as proxy:
        logs = Logs(echo_proxy=False)
        watcher = Watcher(path, proxy.swapper, logs, interval=0.02)
        watcher.start()
        try:
            for number, (what, text) in enumerate(bad_configs(good), start=1):
                path.write_bytes(text)
                await eventually(
                    lambda n=number: _kept(logs) == n,  # type: ignore[misc]
                    f"the watcher to refuse config {number} ({what})",
                )
            assert not any(line for line in logs.history() if "reload failed" in line)
            site.fake("b")
            site.write()
            await eventually(lambda: "b" in proxy.swapper.resolved.models, "the valid config adopted")
            async with await proxy.chat("b") as response:
                assert response.status == 200
        finally:
            await watcher.close()


def _kept(logs: Logs) -> int:
    return sum("keeping the running config" in line for line in logs.history())


async def test_a_malformed_proxy_url_in_a_reload_is_logged_at_its_position(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("a")
    path = site.write()
    async with serving(path) as proxy:
        logs = Logs(echo_proxy=False)
        watcher = Watcher(path, proxy.swapper, logs)
        site.models["a"]["proxy"] = "http://[::1"
        site.write()
        assert await watcher.check() is False
        line = 1 + path.read_text().splitlines().index("    proxy: http://[::1")
        assert any(f"{path}:{line}:5: models.a.proxy: invalid proxy URL" in x for x in logs.history())


async def test_a_loader_that_fails_unexpectedly_is_logged_and_the_watcher_keeps_going(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = Site(tmp_path)
    site.fake("a")
    path = site.write()
    real_load = io.load
    failures = iter([RuntimeError("the loader tripped")])

    def flaky_load(config: Path) -> Any:
        for exc in failures:
            raise exc
        return real_load(config)

    async with serving(path) as proxy:
        monkeypatch.setattr(io, "load", flaky_load)
        logs = Logs(echo_proxy=False)
        watcher = Watcher(path, proxy.swapper, logs, interval=0.02)
        watcher.start()
        try:
            site.top["logLevel"] = "warn"
            site.write()
            await eventually(lambda: _kept(logs) == 1, "the failure logged")
            assert any("RuntimeError: the loader tripped" in line for line in logs.history())
            site.fake("b")
            site.write()
            await eventually(lambda: "b" in proxy.swapper.resolved.models, "the next config adopted")
        finally:
            await watcher.close()


def test_halogen_serve_exits_1_naming_a_malformed_proxy_url_at_its_position(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("a")
    site.models["a"]["proxy"] = "http://[::1"
    path = site.write()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("halogen")), "serve", "--config", str(path), "--no-watch"],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    line = 1 + path.read_text().splitlines().index("    proxy: http://[::1")
    assert done.returncode == 1, done.stderr
    assert (
        f"{path}:{line}:5: models.a.proxy: invalid proxy URL 'http://[::1': Invalid IPv6 URL" in done.stderr
    )
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


# --- the config version serve reports --------------------------------------------------------


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_every_answer_names_the_config_it_was_served_under_and_a_reload_changes_it(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    site.fake("a")
    path = site.write()
    async with serving(path) as proxy:
        loaded = sha256_of(path)
        async with proxy.client.get("/api/version") as response:
            body = await response.json()
            assert response.headers[HEADER] == loaded
        assert body["configVersion"] == loaded and body["version"]  # Ollama's field is kept
        async with await proxy.chat("nope") as response:  # an error answer
            assert response.status == 404 and response.headers[HEADER] == loaded
        async with await proxy.chat("a", stream=True) as response:  # a stream: headers sent early
            assert response.status == 200 and response.headers[HEADER] == loaded
            await response.read()

        watcher = Watcher(path, proxy.swapper, Logs(echo_proxy=False))
        site.top["logLevel"] = "warn"
        site.write()
        assert await watcher.check() is True
        reloaded = sha256_of(path)
        assert reloaded != loaded
        async with proxy.client.get("/api/version") as response:
            assert response.headers[HEADER] == reloaded
            assert (await response.json())["configVersion"] == reloaded
        # A config the watcher refuses changes nothing: the version is the running config's.
        path.write_text("models: [\n")
        assert await watcher.check() is False
        async with proxy.client.get("/health") as response:
            assert response.headers[HEADER] == reloaded


async def test_a_page_of_an_allowed_origin_may_read_the_config_version(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("a")
    path = site.write()
    allowed = "http://chat.lan:3000"
    async with serving(path, allow_origins=(allowed,)) as proxy:
        headers = {"Origin": allowed, "Sec-Fetch-Site": "cross-site"}
        async with proxy.client.get("/api/version", headers=headers) as response:
            assert response.headers[HEADER] == sha256_of(path)
            assert response.headers["Access-Control-Expose-Headers"] == HEADER
        async with proxy.client.get("/api/version") as response:  # no page: nothing to expose
            assert "Access-Control-Expose-Headers" not in response.headers


async def test_the_watcher_reloads_a_file_changed_between_serve_s_load_and_its_first_look(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    site.fake("a")
    path = site.write()
    async with serving(path) as proxy:
        site.fake("b")
        site.write()  # after the load, before the watcher exists
        watcher = Watcher(path, proxy.swapper, Logs(echo_proxy=False))
        assert await watcher.check() is True
        assert "b" in proxy.swapper.resolved.models
        assert proxy.swapper.resolved.config_version == sha256_of(path)


class KubeletVolume:
    """A ConfigMap volume as the kubelet writes it (pkg/volume/util/atomic_writer.go): the files
    in a timestamped folder, `..data` a symlink to it, each key a symlink through `..data`; an
    update writes a new folder and renames a new `..data` symlink over the old one."""

    def __init__(self, root: Path, key: str = "config.yaml") -> None:
        self.root = root
        self.key = key
        self.serial = 0
        root.mkdir()

    @property
    def path(self) -> Path:
        return self.root / self.key

    def write(self, text: str) -> None:
        self.serial += 1
        folder = self.root / f"..2026_12_06_01_00_{self.serial:02d}.{self.serial:09d}"
        folder.mkdir()
        (folder / self.key).write_text(text)
        old = os.readlink(self.root / "..data") if (self.root / "..data").is_symlink() else None
        (self.root / "..data_tmp").symlink_to(folder.name)
        os.replace(self.root / "..data_tmp", self.root / "..data")
        if not self.path.is_symlink():
            self.path.symlink_to(f"..data/{self.key}")
        if old is not None:
            for file in (self.root / old).iterdir():
                file.unlink()
            (self.root / old).rmdir()


def llama_server_pid(serve_pid: int, marker: str) -> int | None:
    """The llama-server under `serve_pid` whose command line holds `marker`."""
    for pid in children(serve_pid, "llama-server"):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in argv:
            return pid
    return None


def get(url: str) -> tuple[dict[str, Any], str]:
    request = urllib.request.Request(url, headers={"Host": "127.0.0.1"})
    with urllib.request.urlopen(request, timeout=PATIENCE * 4) as response:
        return json.load(response), response.headers[HEADER]


def chat(url: str, model: str) -> str:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    request = urllib.request.Request(
        url + "/v1/chat/completions",
        data=body.encode(),
        headers={"Content-Type": "application/json", "Host": "127.0.0.1"},
    )
    with urllib.request.urlopen(request, timeout=PATIENCE * 4) as response:
        assert response.status == 200
        return str(response.headers[HEADER])


@pytest.mark.real
def test_a_kubelet_configmap_update_restarts_only_the_changed_model_and_serve_reports_the_new_version(
    tmp_path: Path, llama_server: Path, smollm2_gguf: Path
) -> None:
    base = f"{llama_server} --port ${{PORT}} --host 127.0.0.1 -m {smollm2_gguf} -t 1 -ngl 0"
    config: dict[str, Any] = {
        "startPort": free_port_run(3),
        "healthCheckTimeout": 60,
        # The same GGUF under two ids with different args, allowed to run together.
        "models": {"kept": {"cmd": f"{base} -c 512"}, "changed": {"cmd": f"{base} -c 256"}},
        "groups": {"both": {"swap": False, "exclusive": False, "members": ["kept", "changed"]}},
    }
    volume = KubeletVolume(tmp_path / "config")
    volume.write(yaml.safe_dump(config, sort_keys=False))
    first = sha256_of(volume.path)
    with halogen_serve(volume.path, tmp_path / "serve.log") as served:  # --watch: the default
        assert chat(served.url, "kept") == first and chat(served.url, "changed") == first
        kept = llama_server_pid(served.process.pid, "512")
        changed = llama_server_pid(served.process.pid, "256")
        assert kept and changed

        config["models"]["changed"]["cmd"] = f"{base} -c 384"
        volume.write(yaml.safe_dump(config, sort_keys=False))
        second = sha256_of(volume.path)
        assert second != first

        until(
            lambda: get(served.url + "/api/version")[1] == second,
            "serve to report the new config",
            interval=0.2,
        )
        body, header = get(served.url + "/api/version")
        assert body["configVersion"] == header == second
        until(
            lambda: not process_exists(changed), "the changed model's old llama-server to stop", interval=0.1
        )
        assert chat(served.url, "changed") == second
        restarted = llama_server_pid(served.process.pid, "384")
        assert restarted and restarted != changed
        # The unchanged model kept its process through the reload, and still answers from it.
        assert process_exists(kept) and llama_server_pid(served.process.pid, "512") == kept
        assert chat(served.url, "kept") == second
        assert llama_server_pid(served.process.pid, "512") == kept
        assert "restarting ['changed']" in served.output()
