"""One model's process: readiness, start failures, stopping, and what it leaves behind."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from halogen.llamaswap import io
from halogen.runtime.base.errors import StartFailed
from halogen.runtime.base.logs import Logs
from halogen.runtime.process.upstream import State, Upstream

from .harness import Site, eventually, process_exists


def upstream(
    site: Site,
    model_id: str,
    *,
    timeout: float = 20.0,
    on_exit: Callable[[Upstream], None] | None = None,
    logs: Logs | None = None,
) -> Upstream:
    resolved, _ = io.load(site.write())
    return Upstream(resolved.models[model_id], health_check_timeout=timeout, on_exit=on_exit, logs=logs)


async def test_a_model_is_ready_once_its_health_check_answers_200(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m", "--health-delay", "0.3")
    up = upstream(site, "m")
    await up.start()
    try:
        assert up.state is State.READY
        async with up.pool.session.get(up.url("/health")) as response:
            assert response.status == 200
        assert fake.pids() == [up.pid]
    finally:
        await up.stop()
    assert up.state is State.STOPPED


async def test_a_start_fails_at_once_when_the_child_exits_with_its_last_output(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m", "--exit-at-start", "3")
    # A timeout far longer than any test: only the exit can end this start.
    up = upstream(site, "m", timeout=3600)
    with pytest.raises(StartFailed) as failure:
        await up.start()
    assert "exited with code 3" in failure.value.message
    assert any("failed to load model 'fake.gguf'" in line for line in failure.value.log_tail)
    assert up.state is State.STOPPED


async def test_a_start_that_llama_cpp_aborts_says_the_aborts_message_though_a_backtrace_follows(
    tmp_path: Path,
) -> None:
    # ggml_abort (ggml/src/ggml.c) writes "<file>:<line>: <message>", then a backtrace (gdb's,
    # when gdb is there: 25 lines for llama-server's failed --rpc connection), then aborts.
    site = Site(tmp_path)
    abort = "/src/llama.cpp/ggml/src/ggml-rpc/ggml-rpc.cpp:547: Failed to connect to 127.0.0.1:50052"
    script = f'echo {shlex.quote(abort)} >&2; for i in $(seq 40); do echo "#$i 0x0 in frame ()"; done; kill -ABRT $$'
    site.models["m"] = {"cmd": shlex.join(["sh", "-c", script]), "proxy": "http://127.0.0.1:9"}
    up = upstream(site, "m", timeout=3600)
    with pytest.raises(StartFailed) as failure:
        await up.start()
    assert failure.value.message == (
        "model 'm' exited with code -6 before it was ready: "
        "Failed to connect to 127.0.0.1:50052 (ggml-rpc.cpp:547)"
    )
    assert abort not in failure.value.log_tail  # the tail alone would not have said it


async def test_a_start_fails_after_the_health_check_timeout_and_the_child_is_stopped(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m", "--never-ready", unloadTimeout=1)
    # Long enough for the fake's first line, which the error must carry.
    up = upstream(site, "m", timeout=2)
    with pytest.raises(StartFailed) as failure:
        await up.start()
    assert "not ready within 2 s" in failure.value.message
    assert any("loading model" in line for line in failure.value.log_tail)
    assert not process_exists(fake.last_pid())


async def test_a_command_that_cannot_run_fails_the_start_with_the_reason(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.models["m"] = {"cmd": "/nonexistent/llama-server --port ${PORT}"}
    up = upstream(site, "m")
    with pytest.raises(StartFailed, match=r"cannot run '/nonexistent/llama-server'.*No such file"):
        await up.start()


async def test_the_model_env_is_added_to_the_proxy_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_INHERITED", "from-proxy")
    site = Site(tmp_path)
    fake = site.fake("m", env=["FAKE_OWN=from-model"])
    up = upstream(site, "m")
    await up.start()
    await up.stop()
    assert fake.events("start")[0]["env"] == {"FAKE_INHERITED": "from-proxy", "FAKE_OWN": "from-model"}


async def test_stop_terminates_the_whole_process_group_and_reaps_it(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m", "--grandchild")
    up = upstream(site, "m")
    await up.start()
    await eventually(lambda: bool(fake.events("grandchild")), "the fake spawned its grandchild")
    grandchild = fake.events("grandchild")[0]["child"]
    pid = up.pid
    assert pid is not None
    await up.stop()
    # The proxy is the child's parent: a zombie would still be listed here.
    assert not process_exists(pid)
    await eventually(lambda: not process_exists(grandchild), "the grandchild is gone")
    assert [e["signal"] for e in fake.events("signal")] == ["SIGTERM"]


async def test_a_child_that_ignores_sigterm_is_killed_after_the_unload_timeout(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m", "--ignore-sigterm", unloadTimeout=1)
    logs = Logs(echo_proxy=False)
    up = upstream(site, "m", logs=logs)
    await up.start()
    pid = up.pid
    assert pid is not None
    await up.stop()
    assert not process_exists(pid)
    assert [e["signal"] for e in fake.events("signal-ignored")] == ["SIGTERM"]
    assert any("SIGKILL" in line for line in logs.history())


async def test_cmd_stop_runs_with_the_pid_instead_of_a_signal(tmp_path: Path) -> None:
    site = Site(tmp_path)
    kill = shlex.join(
        [sys.executable, "-c", "import os, signal, sys; os.kill(int(sys.argv[1]), signal.SIGINT)"]
    )
    fake = site.fake("m", cmdStop=kill + " ${PID}")
    up = upstream(site, "m")
    await up.start()
    pid = up.pid
    await up.stop()
    assert fake.events("signal") == [{"event": "signal", "pid": pid, "signal": "SIGINT"}]
    assert pid is not None and not process_exists(pid)


async def test_a_child_that_dies_while_ready_goes_back_to_stopped_and_is_reaped(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    exits: list[str] = []
    up = upstream(site, "m", on_exit=lambda u: exits.append(u.id))
    await up.start()
    pid = up.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await eventually(lambda: up.state is State.STOPPED, "the upstream noticed the death")
    assert exits == ["m"]
    assert up.exit_code == -signal.SIGKILL
    assert not process_exists(pid)
    await up.start()  # and it can start again
    assert up.state is State.READY
    await up.stop()


async def test_an_upstream_without_check_endpoint_is_ready_at_spawn(tmp_path: Path) -> None:
    site = Site(tmp_path)
    # Never ready by its health check; `none` means nobody asks.
    site.fake("m", "--never-ready", checkEndpoint="none")
    up = upstream(site, "m", timeout=3600)
    await up.start()
    assert up.state is State.READY
    await up.stop()


async def test_a_command_that_does_not_name_the_proxy_port_may_proxy_to_a_server_already_there(
    tmp_path: Path,
) -> None:
    # llama-swap's pattern for a server run elsewhere: a placeholder command, the real server
    # at `proxy`. Only a command told to listen on the port is refused when it is taken.
    site = Site(tmp_path)
    server = site.fake("server")
    site.models["m"] = {
        "cmd": shlex.join([sys.executable, "-c", "import time; time.sleep(600)"]),
        "proxy": f"http://127.0.0.1:{server.port}",
    }
    running = upstream(site, "server")
    await running.start()
    try:
        placeholder = upstream(site, "m")
        await placeholder.start()
        assert placeholder.state is State.READY
        await placeholder.stop()
    finally:
        await running.stop()


async def test_a_port_probe_that_connects_to_itself_does_not_count_as_a_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On loopback, a connect from an ephemeral port equal to the port it probes meets itself
    # (TCP's simultaneous open) when nothing listens; CI once saw that flagged as "in use".
    site = Site(tmp_path)
    fake = site.fake("m")
    opened = asyncio.open_connection

    async def from_the_same_port(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await opened(host, port, local_addr=(host, port))

    monkeypatch.setattr(asyncio, "open_connection", from_the_same_port)
    up = upstream(site, "m")
    try:
        await up.start()
        assert up.state is State.READY and fake.starts() == 1
    finally:
        monkeypatch.undo()
        await up.stop()
