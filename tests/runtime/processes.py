"""`halogen serve` as a child of the test, and the process table under it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .harness import PATIENCE, free_ports, until

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Row:
    pid: int
    name: str
    state: str
    ppid: int


def row(pid: int) -> Row | None:
    """`pid`'s entry in the process table, from /proc/PID/stat; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
    return Row(pid, name, state, int(ppid))


def state(pid: int) -> str | None:
    """`pid`'s state (R, S, Z for a zombie, ...); None once it is gone."""
    found = row(pid)
    return None if found is None else found.state


def table() -> Iterator[Row]:
    """The live process table, from /proc (a process that ends while it is read is left out)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := row(int(entry.name))) is not None:
            yield found


def children(pid: int, name: str | None = None) -> list[int]:
    """Processes whose parent is `pid` (named `name`, when given), zombies included."""
    return [r.pid for r in table() if r.ppid == pid and name in (None, r.name)]


def serve_argv(config: str | Path, *args: str | Path) -> list[str]:
    """The shipped command line: `halogen serve --config CONFIG ARGS`."""
    return [sys.executable, "-m", "halogen", "serve", "--config", str(config), *map(str, args)]


def runtime(config: str | Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`halogen serve --config CONFIG ARGS` run to its end, its output captured."""
    return subprocess.run(
        serve_argv(config, *args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )


def wait_healthy(process: subprocess.Popen[Any], url: str, output: Callable[[], str] = lambda: "") -> None:
    """Wait until the proxy `process` answers `url`/health with a 200; fail with its `output()`
    if it exits first or never does."""

    def healthy() -> bool:
        assert process.poll() is None, f"halogen serve exited:\n{output()}"
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError):
            return False

    until(healthy, lambda: f"halogen serve never answered /health:\n{output()}")


@dataclass
class Serving:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send `sig` and wait for the exit status."""
        self.process.send_signal(sig)
        return self.process.wait(timeout=PATIENCE)


def listen_port(config: Path) -> int:
    """A free port outside the ones the config's `${PORT}` hands its models, which are free
    too until the models start."""
    data = yaml.safe_load(config.read_text()) or {}
    start, count = int(data.get("startPort", 5800)), len(data.get("models") or {})
    while True:
        (port,) = free_ports(1)
        if not start <= port < start + count:
            return port


@contextlib.contextmanager
def halogen_serve(config: Path, log: Path, *extra: str) -> Iterator[Serving]:
    """`halogen serve` on a free loopback port, its output in `log`, once it answers
    /health; stopped as the kubelet stops it when the block ends."""
    port = listen_port(config)
    argv = serve_argv(config, "--listen", f"127.0.0.1:{port}", *extra)
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    serving = Serving(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_healthy(process, serving.url, serving.output)
        yield serving
    finally:
        stop_serving(process)


@contextlib.contextmanager
def serving_config(root: Path, config: dict[str, Any]) -> Iterator[Serving]:
    """`halogen serve` on `config`, written to `root`/config.yaml, without the file watcher."""
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with halogen_serve(path, root / "serve.log", "--no-watch") as serving:
        yield serving


def stop_serving(process: subprocess.Popen[Any]) -> None:
    """Stop the proxy the way the kubelet does, so it stops its models; SIGKILL (which it
    cannot handle) only if it does not exit, and then its children's groups too, so a failing
    test leaves no llama-server behind."""
    if process.poll() is not None:
        return
    running = children(process.pid)
    process.terminate()
    try:
        process.wait(timeout=PATIENCE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        for child in running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child, signal.SIGKILL)
