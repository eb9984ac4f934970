"""`halogen serve` as a child of the test, and the process table under it."""

from __future__ import annotations

import contextlib
import os
import re
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
def halogen_serve(config: Path, log: Path, *extra: str, port: int | None = None) -> Iterator[Serving]:
    """`halogen serve` on a free loopback port (or `port`: a node's, that the other nodes'
    configs name), its output in `log`, once it answers /health; stopped as the kubelet stops
    it when the block ends."""
    port = port or listen_port(config)
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


# rpc-server (tools/rpc/rpc-server.cpp, llama.cpp): with GGML_RPC_DEBUG set, ggml-rpc.cpp's
# rpc_server::alloc_buffer logs each buffer a client has it allocate, as
# "[alloc_buffer] device: 0, size: 48234496 -> remote_ptr: ..., remote_size: ...".
ALLOCATED = re.compile(r"\[alloc_buffer\] device: \d+, size: (\d+) -> remote_ptr")


@dataclass
class RpcServer:
    """One rpc-server on loopback, its output (stdout and stderr) in `log`."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def endpoint(self) -> str:
        """What llama-server's `--rpc` names it by."""
        return f"127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def allocations(self) -> list[int]:
        """The sizes (bytes) of the buffers clients had it allocate, in order."""
        return [int(size) for size in ALLOCATED.findall(self.output())]

    def rss(self) -> int:
        """Its resident memory now, in bytes (VmRSS in /proc/PID/status)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"rpc-server {self.process.pid} has no VmRSS")


def listening(port: int) -> bool:
    """Whether a socket listens on 127.0.0.1:`port` (/proc/net/tcp, state 0A), asked without
    connecting: rpc-server serves one client at a time and logs each it accepts."""
    wanted = f"0100007F:{port:04X}"
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(row.split()[1] == wanted and row.split()[3] == "0A" for row in rows)


@contextlib.contextmanager
def rpc_serving(binary: Path, log: Path, *extra: str, port: int | None = None) -> Iterator[RpcServer]:
    """rpc-server bound to 127.0.0.1 on `port` or a free one (`-H 127.0.0.1 -p PORT -t 1`), with
    GGML_RPC_DEBUG set so that it logs what it allocates; once it listens. Killed when the block
    ends (it handles no signal: SIGTERM ends it)."""
    port = port or free_ports(1)[0]
    argv = [str(binary), "-H", "127.0.0.1", "-p", str(port), "-t", "1", *extra]
    env = {**os.environ, "GGML_RPC_DEBUG": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = RpcServer(process, port, log)
    try:

        def up() -> bool:
            assert process.poll() is None, f"rpc-server exited {process.returncode}:\n{server.output()}"
            return listening(port)

        until(up, lambda: f"rpc-server never listened on {port}:\n{server.output()}")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
