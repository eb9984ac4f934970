"""`halogen serve` as a process: exit codes, messages, and nothing left behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from halogen.commands import serve as serve_command
from halogen.runtime.process import deathsig

from .harness import PATIENCE, Site, process_exists, until
from .processes import ROOT, halogen_serve, listen_port, runtime, state, stop_serving, wait_healthy

HALOGEN = Path(sys.executable).with_name("halogen")


def post(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=PATIENCE) as response:
        answer: dict[str, object] = json.load(response)
        return answer


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_to_the_proxy_stops_every_child_and_grandchild_before_it_exits(
    tmp_path: Path, sig: signal.Signals
) -> None:
    site = Site(tmp_path)
    a = site.fake("a", "--grandchild")
    b = site.fake("b", "--ignore-sigterm", unloadTimeout=1)
    site.top["groups"] = {"side": {"swap": False, "exclusive": False, "members": ["a", "b"]}}
    with halogen_serve(site.write(), tmp_path / "serve.log", "--no-watch") as serving:
        for model in ("a", "b"):
            assert post(serving.url + "/v1/chat/completions", {"model": model})["served_by"] == model
        until(lambda: a.events("grandchild"), "a started its grandchild")
        pids = [a.last_pid(), b.last_pid(), a.events("grandchild")[0]["child"]]
        status = serving.stop(sig)
    output = serving.output()
    assert status == 0, output
    assert "Traceback" not in output
    # The grandchild was orphaned when `a` died; init reaps it, so allow it a moment.
    until(
        lambda: not any(process_exists(pid) for pid in pids),
        lambda: f"every process ended; left: {[pid for pid in pids if process_exists(pid)]}",
    )
    assert [e["signal"] for e in b.events("signal-ignored")] == ["SIGTERM"]


def test_an_invalid_config_exits_1_with_positioned_diagnostics_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "models:\n  m:\n    cmd: srv --port ${PORT}\n    aliases: [x]\n  n:\n    cmd: srv ${PORT}\n    aliases: [x]\n"
    )
    result = runtime(config)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{config}:7:" in result.stderr and "alias 'x' is already used" in result.stderr


def test_a_missing_config_exits_1_with_the_reason(tmp_path: Path) -> None:
    result = runtime(tmp_path / "nope.yaml")
    assert result.returncode == 1
    assert "cannot read config" in result.stderr and "Traceback" not in result.stderr


def test_a_port_in_use_exits_1_with_the_reason(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    config = site.write()
    with halogen_serve(config, tmp_path / "serve.log", "--no-watch") as serving:
        port = serving.url.rsplit(":", 1)[1]
        result = runtime(config, "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr


def test_the_serve_command_refuses_a_bad_listen_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve_command.run(tmp_path / "config.yaml", "localhost:http") == 2
    assert "--listen 'localhost:http'" in capsys.readouterr().err


@pytest.mark.parametrize(("level", "shown"), [("info", True), ("warn", False)])
def test_the_configs_log_level_governs_what_the_process_prints(
    tmp_path: Path, level: str, shown: bool
) -> None:
    site = Site(tmp_path)
    site.fake("m")
    site.top["logLevel"] = level
    with halogen_serve(site.write(), tmp_path / "serve.log", "--no-watch") as serving:
        assert post(serving.url + "/v1/chat/completions", {"model": "m"})["served_by"] == "m"
        assert serving.stop() == 0
    output = serving.output()
    assert ("starting model 'm'" in output) == shown, output
    assert ('"POST /v1/chat/completions" 200 model=m' in output) == shown, output


def _stream_until_gate(url: str, gate: Path) -> tuple[Any, Any]:
    """A streamed chat that sends one event, then waits for `gate` to exist; the open response
    and its first event."""
    request = urllib.request.Request(
        url + "/v1/chat/completions",
        json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode(),
        {"Content-Type": "application/json", "X-Fake-Gate": str(gate), "X-Fake-Chunks": "3"},
    )
    response = urllib.request.urlopen(request, timeout=PATIENCE)
    return response, response.readline()


def _refused(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/health", timeout=1).close()
    except urllib.error.URLError as exc:
        return isinstance(exc.reason, ConnectionRefusedError)
    except (ConnectionResetError, TimeoutError):
        # A connection still in the backlog when the listener closes is reset, or on a loaded
        # machine left unanswered until the read times out: poll again.
        return False
    return False


def test_on_sigterm_the_drain_stops_listening_and_lets_a_stream_in_flight_finish(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    gate = tmp_path / "gate"
    with halogen_serve(site.write(), tmp_path / "serve.log", "--no-watch", "--drain", "60") as serving:
        response, first = _stream_until_gate(serving.url, gate)
        assert first.startswith(b"data: ")
        serving.process.send_signal(signal.SIGTERM)
        # No new connection is taken.
        until(lambda: _refused(serving.url), "halogen serve stopped listening to drain", interval=0.05)
        assert serving.process.poll() is None and process_exists(fake.last_pid())
        gate.touch()
        rest = response.read()
        response.close()
        assert serving.process.wait(timeout=PATIENCE) == 0
    assert b'"error"' not in rest and rest.rstrip().endswith(b"data: [DONE]")
    output = serving.output()
    assert "draining: 1 requests in flight" in output and "drained: every request" in output
    assert not process_exists(fake.last_pid())


@pytest.mark.parametrize("how", ["timeout", "second signal"])
def test_a_drain_that_runs_out_or_is_cut_short_ends_the_stream_with_an_error(
    tmp_path: Path, how: str
) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    drain = "0.5" if how == "timeout" else "600"
    with halogen_serve(site.write(), tmp_path / "serve.log", "--no-watch", "--drain", drain) as serving:
        response, _ = _stream_until_gate(serving.url, tmp_path / "never")
        serving.process.send_signal(signal.SIGTERM)
        if how == "second signal":
            until(lambda: "draining:" in serving.output(), "halogen serve began to drain", interval=0.05)
            serving.process.send_signal(signal.SIGINT)
        assert serving.process.wait(timeout=PATIENCE) == 0  # long before 600 s
        rest = response.read()
        response.close()
    assert b'data: {"error":' in rest
    assert "drain cut short with 1 requests in flight" in serving.output()
    assert not process_exists(fake.last_pid())


@pytest.mark.skipif(not deathsig.supported(), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_proxy_killed_with_sigkill_takes_its_model_servers_with_it(tmp_path: Path) -> None:
    """SIGKILL cannot be handled: the children ask the kernel to kill them when their parent
    dies, so no orphan keeps the model's port (the next serve would get 'already in use')."""
    site = Site(tmp_path)
    a = site.fake("a")
    b = site.fake("b")
    site.top["groups"] = {"side": {"swap": False, "exclusive": False, "members": ["a", "b"]}}
    path = site.write()
    port = listen_port(path)
    log = tmp_path / "serve.log"
    argv = [str(HALOGEN), "serve", "--config", str(path), "--listen", f"127.0.0.1:{port}", "--no-watch"]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    children: list[int] = []
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(process, url, log.read_text)
        for model in ("a", "b"):
            assert post(url + "/v1/chat/completions", {"model": model})["served_by"] == model
        children += [a.last_pid(), b.last_pid()]
        process.kill()
        process.wait(PATIENCE)
        killed = time.monotonic()
        until(
            lambda: all(state(pid) in (None, "Z") for pid in children),  # a zombie holds no port
            lambda: f"the model servers died with the proxy; left: {[(p, state(p)) for p in children]}",
            patience=5,
        )
        assert time.monotonic() - killed < 2.0
        for fake in (a, b):
            with pytest.raises(OSError), socket.create_connection(("127.0.0.1", fake.port), timeout=1):
                pass
    finally:
        stop_serving(process)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
