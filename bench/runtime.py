"""What `halogen serve` adds to a request, next to calling the upstream directly and to LiteLLM's
proxy: latency of small requests, streamed chunks per second, idle memory, and its share of a
model's cold start (the real llama-server, and a stand-in that loads slowly).

    python -m bench.runtime [--write]

Every process binds 127.0.0.1, is started in a session of its own and is ended with that
session, also on Ctrl-C, SIGTERM or an error. LiteLLM (`pip install 'litellm[proxy]'`, a
benchmark-only dependency) is left out when it is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import aiohttp

from tests.ports import free_ports

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "runtime.md"
FAKE = Path(__file__).with_name("fake_fast_upstream.py")
HOST = "127.0.0.1"
MODEL = "fast"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
# Bounds on how long a step may take: a benchmark that hangs measures nothing.
READY_PATIENCE = 120.0
PHASE_PATIENCE = 300.0
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60)
IDLE_SECONDS = 5.0
MAX_STREAMS_PER_WORKER = 10_000
PORT_SLOT = "PORT_SLOT"
# A stand-in model that takes this long to load, spread over one of halogen's longest poll
# intervals (250 ms) across the runs, so the median is not one lucky or unlucky phase.
SLOW_LOAD = 1.0
SLOW_SPREAD = 0.25
# LiteLLM reads these at start-up; with them it connects to nothing but loopback (checked with
# `strace -f -e trace=connect,sendto,sendmsg` when this benchmark was written).
LITELLM_OFFLINE = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "DISABLE_ADMIN_UI": "True",
    # No master key; without this LiteLLM refuses to start keyless.
    "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
}


# --- processes ----------------------------------------------------------------------------


def free_port() -> int:
    (port,) = free_ports(1)
    return port


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: state, ppid, pgrp, session, ..."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def _live(where: int, value: int) -> Iterator[int]:
    """Live processes whose stat field `where` (1: ppid, 3: session) is `value`."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = _stat(int(entry.name))
                if int(fields[where]) == value and fields[0] != "Z":
                    yield int(entry.name)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy, from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = Path("/proc/stat").read_text().split()[1:9]
    return sum(int(v) for v in (user, nice, system, irq, softirq, steal)) / os.sysconf("SC_CLK_TCK")


def own_busy() -> float:
    """CPU seconds of this process and of the children it has reaped (theirs included)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def clean_env() -> dict[str, str]:
    """This environment without HTTP proxies: every connection stays on loopback."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = f"{HOST},localhost"
    return env


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Processes:
    """Every process the benchmark starts, each the leader of a new session, so that stopping
    one ends its whole session (halogen's children stay in halogen's session)."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._running: list[Child] = []

    def start(self, name: str, argv: Sequence[object], env: dict[str, str] | None = None) -> Child:
        log = self._logs / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                [str(a) for a in argv],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**clean_env(), **(env or {})},
                start_new_session=True,
            )
        child = Child(name, popen, log)
        self._running.append(child)
        return child

    def stop(self, child: Child, grace: float = 15.0) -> None:
        """SIGTERM to the leader (halogen stops its own children then), SIGKILL to whatever is
        left of its session after `grace`."""
        if child in self._running:
            self._running.remove(child)
        if child.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(grace)
        for pid in _live(3, child.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if child.popen.poll() is None:
            child.popen.kill()
        child.popen.wait()

    def close(self) -> None:
        for child in reversed(list(self._running)):
            self.stop(child, grace=5.0)


async def wait_ready(child: Child, url: str, *, patience: float = READY_PATIENCE) -> None:
    """Until GET `url` answers 200; fail with the child's log when it exits or takes too long."""
    deadline = time.monotonic() + patience
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            if child.popen.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {child.popen.returncode}:\n{child.tail()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} not ready at {url} within {patience:g} s:\n{child.tail()}")
            await asyncio.sleep(0.05)


def with_port(argv: Sequence[str]) -> str:
    """A llama-swap `cmd` from an argv whose port is `PORT_SLOT`."""
    return shlex.join(argv).replace(PORT_SLOT, "${PORT}")


def write_config(path: Path, models: Mapping[str, Mapping[str, object]], **top: object) -> Path:
    path.write_text(json.dumps({"startPort": free_port(), **top, "models": models}, indent=2))  # JSON is YAML
    return path


def start_halogen(processes: Processes, name: str, config: Path) -> tuple[Child, str]:
    port = free_port()
    argv = [sys.executable, "-m", "halogen", "serve", "--config", config, "--listen", f"{HOST}:{port}"]
    return processes.start(name, argv), f"http://{HOST}:{port}"


# --- the targets --------------------------------------------------------------------------


@dataclass
class Target:
    """Where the client sends its requests: the upstream itself, or a proxy in front of it."""

    name: str
    base: str
    process: Child | None = None
    cpu_pid: int = 0  # whose CPU time is charged to this target: the proxy, or the upstream
    latencies: dict[int, list[float]] = field(default_factory=dict)  # by concurrency
    walls: dict[int, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    streamed: Streamed | None = None
    pinned: Streamed | None = None  # the proxy on a core of its own
    idle_rss: float = 0.0
    idle_cpu: float = 0.0
    loaded_rss: float = 0.0

    @property
    def chat_url(self) -> str:
        return self.base + "/v1/chat/completions"


def litellm_binary() -> Path | None:
    found = Path(sys.executable).parent / "litellm"
    if found.exists():
        return found
    which = shutil.which("litellm")
    return Path(which) if which else None


def start_litellm(processes: Processes, tmp: Path, binary: Path, upstream_port: int) -> Target:
    """LiteLLM's proxy as its docs start it: one uvicorn worker (halogen is one process too), no
    database, no master key, no callbacks, spend logs off."""
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": f"http://{HOST}:{upstream_port}/v1",
                    "api_key": "unused",
                },
            }
        ],
        "litellm_settings": {"callbacks": [], "success_callback": [], "failure_callback": []},
        "general_settings": {"disable_spend_logs": True},
    }
    path = tmp / "litellm.yaml"
    path.write_text(json.dumps(config, indent=2))
    port = free_port()
    argv = [binary, "--config", path, "--host", HOST, "--port", str(port), "--num_workers", "1"]
    child = processes.start("litellm", argv, env=LITELLM_OFFLINE)
    return Target("LiteLLM", f"http://{HOST}:{port}", child, child.pid)


# --- load ---------------------------------------------------------------------------------


def pool(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    return aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT)


async def requests(
    session: aiohttp.ClientSession, url: str, count: int, concurrency: int, into: list[float] | None = None
) -> None:
    """`count` small chat completions from `concurrency` workers; each one's seconds to `into`."""
    body = json.dumps(CHAT).encode()
    headers = {"Content-Type": "application/json"}
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            began = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url}: {response.status} {await response.text()}")
            if into is not None:
                into.append(time.perf_counter() - began)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), PHASE_PATIENCE)


async def latency_phase(targets: list[Target], count: int, concurrency: int, rounds: int) -> None:
    """`count` requests per target, after a warm-up, in `rounds` slices whose order rotates so
    that a drift of the machine falls on every target alike."""
    pairs = [(target, pool(concurrency)) for target in targets]
    try:
        for target, session in pairs:
            await requests(session, target.chat_url, max(200, 8 * concurrency), concurrency)
            target.latencies[concurrency] = []
            target.walls[concurrency] = 0.0
            target.cpu[f"c{concurrency}"] = 0.0
        for r in range(rounds):
            shift = r % len(pairs)
            for target, session in pairs[shift:] + pairs[:shift]:
                cpu, began = cpu_seconds(target.cpu_pid), time.perf_counter()
                await requests(
                    session,
                    target.chat_url,
                    math.ceil(count / rounds),
                    concurrency,
                    target.latencies[concurrency],
                )
                target.walls[concurrency] += time.perf_counter() - began
                target.cpu[f"c{concurrency}"] += cpu_seconds(target.cpu_pid) - cpu
    finally:
        for _, session in pairs:
            await session.close()


def count_events(buffer: bytes) -> tuple[int, bytes]:
    """SSE data events in `buffer`, `data: [DONE]` not counted, and the unfinished rest."""
    parts = buffer.split(b"\n\n")
    rest = parts.pop()
    return sum(1 for p in parts if p.startswith(b"data:") and p.strip() != b"data: [DONE]"), rest


async def one_stream(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, int]:
    """The events of one stream, and the reads the client needed for them."""
    events, reads, rest = 0, 0, b""
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {await response.text()}")
        async for chunk in response.content.iter_any():
            found, rest = count_events(rest + chunk)
            events += found
            reads += 1
    return events, reads


@dataclass
class Streamed:
    events: int
    reads: int  # of the client, each a wakeup with what the socket held
    wall: float
    per_stream: set[int]

    @property
    def rate(self) -> float:
        return self.events / self.wall


async def stream_phase(target: Target, streams: int, chunks: int, seconds: float) -> Streamed:
    """`streams` workers each run streams of `chunks` tokens back to back, starting new ones for
    `seconds`."""
    body = json.dumps({**CHAT, "stream": True, "max_tokens": chunks}).encode()
    runs: list[tuple[int, int]] = []
    async with pool(streams) as session:
        began = time.perf_counter()

        async def worker() -> None:
            for _ in range(MAX_STREAMS_PER_WORKER):
                runs.append(await one_stream(session, target.chat_url, body))
                if time.perf_counter() - began >= seconds:
                    return

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(streams))), PHASE_PATIENCE)
        wall = time.perf_counter() - began
    return Streamed(sum(e for e, _ in runs), sum(r for _, r in runs), wall, {e for e, _ in runs})


# --- cold start ---------------------------------------------------------------------------


@dataclass
class Cold:
    """Seconds per run: spawn → /health 200 and spawn → first token directly, and request →
    first token through halogen for a stopped model."""

    healthy: list[float] = field(default_factory=list)
    direct_token: list[float] = field(default_factory=list)
    proxy_token: list[float] = field(default_factory=list)

    def overhead(self) -> float:
        """Median over runs of (first token through halogen - spawn → healthy), ms."""
        return 1000 * statistics.median(p - h for p, h in zip(self.proxy_token, self.healthy, strict=True))

    def versus_direct(self) -> float:
        """Median over runs of (first token through halogen - first token direct), ms."""
        return 1000 * statistics.median(
            p - d for p, d in zip(self.proxy_token, self.direct_token, strict=True)
        )


async def first_token(session: aiohttp.ClientSession, url: str, body: dict[str, object]) -> float:
    """perf_counter when the first event carrying text arrives; the rest is read to the end."""
    async with session.post(url, json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {await response.text()}")
        rest, seen = b"", None
        async for chunk in response.content.iter_any():
            if seen is not None:
                continue
            parts = (rest + chunk).split(b"\n\n")
            rest = parts.pop()
            for part in parts:
                if seen is None and part.startswith(b"data: {"):
                    for choice in json.loads(part[6:]).get("choices") or []:
                        if choice.get("text") or (choice.get("delta") or {}).get("content"):
                            seen = time.perf_counter()
        if seen is None:
            raise RuntimeError(f"{url}: the stream carried no text")
        return seen


async def direct_cold(
    processes: Processes, argv: list[str], port: int, path: str, body: dict[str, object]
) -> tuple[float, float]:
    """Spawn the server, poll /health every 5 ms until 200, then ask for a token at once:
    (spawn → healthy, spawn → first token) in seconds."""
    base = f"http://{HOST}:{port}"
    poll = aiohttp.ClientTimeout(total=1)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True), timeout=REQUEST_TIMEOUT
    ) as session:
        began = time.perf_counter()
        child = processes.start("direct-" + Path(argv[0]).name, argv)
        try:
            tick = began
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(base + "/health", timeout=poll) as response:
                        if response.status == 200:
                            break
                if child.popen.poll() is not None:
                    raise RuntimeError(f"{argv[0]} exited:\n{child.tail()}")
                if time.perf_counter() - began > READY_PATIENCE:
                    raise RuntimeError(f"{argv[0]} not healthy within {READY_PATIENCE:g} s")
                tick += 0.005
                await asyncio.sleep(max(0.0, tick - time.perf_counter()))
            healthy = time.perf_counter() - began
            token = await first_token(session, base + path, body) - began
        finally:
            processes.stop(child)
    return healthy, token


async def proxy_cold(session: aiohttp.ClientSession, base: str, path: str, body: dict[str, object]) -> float:
    """Request → first token through halogen for a stopped model, which is unloaded again after."""
    began = time.perf_counter()
    token = await first_token(session, base + path, body) - began
    async with session.post(base + "/unload") as response:
        if response.status != 200:
            raise RuntimeError(f"{base}/unload: {response.status}")
    return token


async def cold_start(
    processes: Processes,
    tmp: Path,
    name: str,
    argv_for: dict[float, list[str]],
    path: str,
    body: dict[str, object],
    runs: int,
) -> Cold:
    """One halogen with a model per load delay in `argv_for` (an argv whose port is `PORT_SLOT`);
    a warm-up pair, then `runs` pairs of a direct cold start and one through halogen."""
    delays = sorted(argv_for)
    models: dict[str, dict[str, object]] = {}
    for i, delay in enumerate(delays):
        # A port per model, checked free now: a run of ports from startPort may not be.
        slot = str(free_port())
        models[f"m{i}"] = {
            "cmd": shlex.join(a.replace(PORT_SLOT, slot) for a in argv_for[delay]),
            "proxy": f"http://{HOST}:{slot}",
            "checkEndpoint": "/health",
        }
    config = write_config(tmp / f"halogen-{name}.yaml", models, healthCheckTimeout=60)
    child, base = start_halogen(processes, f"halogen-{name}", config)
    result = Cold()
    try:
        await wait_ready(child, base + "/health")
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
            schedule = [0, *[i % len(delays) for i in range(runs)]]  # first: warm-up (page cache, code paths)
            for run, index in enumerate(schedule):
                argv = argv_for[delays[index]]
                port = free_port()
                healthy, token = await direct_cold(
                    processes, [a.replace(PORT_SLOT, str(port)) for a in argv], port, path, body
                )
                through = await proxy_cold(session, base, path, {**body, "model": f"m{index}"})
                if run:
                    result.healthy.append(healthy)
                    result.direct_token.append(token)
                    result.proxy_token.append(through)
    finally:
        processes.stop(child)
    return result


def fetched(script: str) -> Path:
    """What one of the project's fetch scripts caches (llama-server, the SmolLM2 GGUF)."""
    result = subprocess.run([str(REPO / "scripts" / script)], capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/{script} failed:\n{result.stderr[-2000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


async def cold_llama(processes: Processes, tmp: Path, runs: int) -> Cold:
    binary = fetched("fetch-llama-server")
    gguf = fetched("fetch-smollm2")
    # The runtime tests' command line. The request is the cheapest that yields a token (no chat
    # template, a one-token prompt), so the model's own time to a first token adds little.
    argv = [
        str(binary),
        "--port",
        PORT_SLOT,
        "--host",
        HOST,
        "-m",
        str(gguf),
        "-c",
        "512",
        "-t",
        "1",
        "-ngl",
        "0",
    ]
    body: dict[str, object] = {"prompt": "Hi", "max_tokens": 2, "temperature": 0, "stream": True}
    return await cold_start(processes, tmp, "llama", {0.0: argv}, "/v1/completions", body, runs)


async def cold_slow(processes: Processes, tmp: Path, runs: int) -> Cold:
    argv_for = {
        SLOW_LOAD + SLOW_SPREAD * i / runs: [
            sys.executable,
            str(FAKE),
            "--port",
            PORT_SLOT,
            "--health-delay",
            f"{SLOW_LOAD + SLOW_SPREAD * i / runs:.3f}",
        ]
        for i in range(runs)
    }
    body: dict[str, object] = {**CHAT, "stream": True, "max_tokens": 1}
    return await cold_start(processes, tmp, "slow", argv_for, "/v1/chat/completions", body, runs)


# --- the run ------------------------------------------------------------------------------


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of pid onto cpus (sched_setaffinity moves one thread)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cpus)


@contextlib.contextmanager
def pinned(target: Target, upstream: int) -> Iterator[None]:
    """The client (this process) and the upstream on the first core, a proxy on the second:
    what the proxy costs when it does not take its CPU from the other two."""
    cpus = sorted(os.sched_getaffinity(0))
    everything = set(cpus)
    client_side = {cpus[0]}
    _pin(os.getpid(), client_side)
    _pin(upstream, client_side)
    if target.process is not None:
        _pin(target.cpu_pid, {cpus[1]})
    try:
        yield
    finally:
        for pid in (os.getpid(), upstream, target.cpu_pid):
            _pin(pid, everything)


@dataclass
class Settings:
    c1: int
    c32: int
    rounds: int
    streams: int
    chunks: int
    stream_seconds: float
    cold_runs: int
    slow_runs: int
    litellm: bool
    cold: bool


@dataclass
class Results:
    targets: list[Target]
    llama: Cold | None = None
    slow: Cold | None = None
    streams: int = 0  # concurrent streams the throughput rows were measured with
    minutes: float = 0.0
    foreign: float = 0.0  # share of the machine's CPU time used by processes not ours


async def measure(settings: Settings, processes: Processes, tmp: Path) -> Results:
    began = time.monotonic()
    config = write_config(
        tmp / "halogen.yaml",
        {
            MODEL: {
                "cmd": with_port([sys.executable, str(FAKE), "--port", PORT_SLOT]),
                "proxy": f"http://{HOST}:${{PORT}}",
                "checkEndpoint": "/health",
                # llama-swap's default of 10 would turn most of 32 concurrent requests into 429s.
                "concurrencyLimit": 1000,
            }
        },
        healthCheckTimeout=30,
    )
    child, base = start_halogen(processes, "halogen", config)
    halogen = Target("halogen", base, child, child.pid)
    await wait_ready(child, base + "/health")
    # The first request starts the fake upstream as halogen's child; the direct calls and
    # LiteLLM then use that same process.
    async with pool(1) as session, session.post(halogen.chat_url, json=CHAT) as response:
        if response.status != 200:
            raise RuntimeError(f"halogen: {response.status} {await response.text()}")
    (upstream,) = _live(1, child.pid)
    port = json.loads(config.read_text())["startPort"]
    direct = Target("direct", f"http://{HOST}:{port}", None, upstream)
    targets = [direct, halogen]
    binary = litellm_binary() if settings.litellm else None
    if binary is not None:
        litellm = start_litellm(processes, tmp, binary, port)
        assert litellm.process is not None
        await wait_ready(litellm.process, litellm.base + "/health/liveliness")
        targets.append(litellm)
    say(", ".join(f"{t.name} {t.base}" for t in targets))

    say("warm-up, then idle")
    for t in targets:
        async with pool(32) as session:
            await requests(session, t.chat_url, 500, 32)
        await stream_phase(t, settings.streams, 20, 0.0)
    cpu = {t.name: cpu_seconds(t.cpu_pid) for t in targets}
    await asyncio.sleep(IDLE_SECONDS)
    for t in targets:
        t.idle_cpu = 100 * (cpu_seconds(t.cpu_pid) - cpu[t.name]) / IDLE_SECONDS
        t.idle_rss = rss_mb(t.cpu_pid)

    for concurrency, count in ((1, settings.c1), (32, settings.c32)):
        say(f"latency at concurrency {concurrency}")
        await latency_phase(targets, count, concurrency, settings.rounds)
    for t in targets:
        say(f"streams through {t.name}")
        cpu = {t.name: cpu_seconds(t.cpu_pid)}
        t.streamed = await stream_phase(t, settings.streams, settings.chunks, settings.stream_seconds)
        t.cpu["stream"] = cpu_seconds(t.cpu_pid) - cpu[t.name]
        t.loaded_rss = rss_mb(t.cpu_pid)
    if len(os.sched_getaffinity(0)) >= 2:
        for t in targets:
            say(f"streams through {t.name}, the proxy on a core of its own")
            with pinned(t, upstream):
                t.pinned = await stream_phase(t, settings.streams, settings.chunks, settings.stream_seconds)
    for t in targets:
        if t.process is not None:
            processes.stop(t.process)

    results = Results(targets)
    if settings.cold:
        say("cold starts: llama-server")
        results.llama = await cold_llama(processes, tmp, settings.cold_runs)
        say(f"cold starts: a stand-in that loads for {SLOW_LOAD:g}-{SLOW_LOAD + SLOW_SPREAD:g} s")
        results.slow = await cold_slow(processes, tmp, settings.slow_runs)
    results.minutes = (time.monotonic() - began) / 60
    return results


def say(message: str) -> None:
    print(f"bench.runtime: {message}", file=sys.stderr, flush=True)


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def ms(seconds: list[float]) -> str:
    return f"{1000 * statistics.median(seconds):.0f}"


def table(results: Results) -> tuple[str, list[str]]:
    """The markdown table, and the targets halogen misses."""
    targets = results.targets
    by = {t.name: t for t in targets}
    direct, halogen = by["direct"], by["halogen"]
    proxies = targets[1:]
    missed: list[str] = []

    def verdict(ok: bool, text: str) -> str:
        if not ok:
            missed.append(text)
        return f"{text}: {'met' if ok else '**missed**'}"

    def row(figure: str, cells: dict[str, str], target: str = "") -> str:
        names = ["direct", "halogen", "LiteLLM"]
        return f"| {figure} | " + " | ".join(cells.get(n, "—") for n in names) + f" | {target} |"

    rows = []
    for concurrency in (1, 32):
        for label, q in (("p50", 0.5), ("p99", 0.99)):
            base = 1000 * percentile(direct.latencies[concurrency], q)
            cells = {"direct": f"{base:.2f}"}
            for t in proxies:
                value = 1000 * percentile(t.latencies[concurrency], q)
                cells[t.name] = f"{value:.2f} (+{value - base:.2f})"
            target = ""
            if concurrency == 1 and label == "p50":
                added = 1000 * percentile(halogen.latencies[1], q) - base
                target = verdict(added <= 1.0, "added p50 ≤ 1 ms")
            rows.append(row(f"small request, concurrency {concurrency}: {label} ms (added)", cells, target))
        rows.append(
            row(
                f"small request, concurrency {concurrency}: requests/s",
                {t.name: f"{len(t.latencies[concurrency]) / t.walls[concurrency]:,.0f}" for t in targets},
            )
        )
    rows.append(
        row(
            "CPU per request at concurrency 32, µs (direct: the upstream's)",
            {t.name: f"{1e6 * t.cpu['c32'] / len(t.latencies[32]):.0f}" for t in targets},
        )
    )
    streamed = {t.name: t.streamed for t in targets if t.streamed is not None}
    pinned = {t.name: t.pinned for t in targets if t.pinned is not None}
    for runs, figure in (
        (streamed, f"streamed chunks/s, {results.streams} concurrent streams (% of direct)"),
        (pinned, "the same, client and upstream on core 0, the proxy alone on core 1"),
    ):
        if "direct" not in runs:
            continue
        base_rate = runs["direct"].rate
        cells = {"direct": f"{base_rate:,.0f}"}
        for name, run in runs.items():
            if name != "direct":
                cells[name] = f"{run.rate:,.0f} ({100 * run.rate / base_rate:.0f}%)"
        ok = runs["halogen"].rate >= 0.9 * base_rate
        target = (
            verdict(ok, "≥ 90% of direct") if runs is streamed else f"(≥ 90%: {'met' if ok else 'missed'})"
        )
        rows.append(row(figure, cells, target))
        rows.append(
            row(
                "  events per read of the client" + (" (pinned)" if runs is pinned else ""),
                {name: f"{run.events / run.reads:.1f}" for name, run in runs.items()},
            )
        )
    rows.append(
        row(
            "CPU per streamed chunk, µs (direct: the upstream's)",
            {name: f"{1e6 * by[name].cpu['stream'] / run.events:.1f}" for name, run in streamed.items()},
        )
    )
    if len({frozenset(run.per_stream) for run in streamed.values()}) > 1:
        rows.append(
            row(
                "events per stream",
                {name: "/".join(map(str, sorted(run.per_stream))) for name, run in streamed.items()},
            )
        )
    cells = {t.name: f"{t.idle_rss:.0f}" for t in proxies}
    cells["direct"] = f"({direct.idle_rss:.0f}: the upstream)"
    rows.append(
        row(
            "idle RSS of the proxy process after warm-up, MB",
            cells,
            verdict(halogen.idle_rss <= 60, "≤ 60 MB"),
        )
    )
    cells = {t.name: f"{t.loaded_rss:.0f}" for t in proxies}
    cells["direct"] = f"({direct.loaded_rss:.0f}: the upstream)"
    rows.append(row("RSS after the streams, MB", cells))
    rows.append(
        row(f"idle CPU over {IDLE_SECONDS:g} s, % of a core", {t.name: f"{t.idle_cpu:.1f}" for t in proxies})
    )
    for cold, what, graded in (
        (results.llama, "llama-server (SmolLM2-135M)", True),
        (results.slow, f"stand-in loading {SLOW_LOAD:g}-{SLOW_LOAD + SLOW_SPREAD:g} s", False),
    ):
        if cold is None:
            continue

        rows.append(row(f"{what}: spawn → /health 200, ms (polled every 5 ms)", {"direct": ms(cold.healthy)}))
        rows.append(
            row(
                f"{what}: cold start → first token, ms",
                {"direct": ms(cold.direct_token), "halogen": ms(cold.proxy_token), "LiteLLM": "n/a"},
            )
        )
        overhead = cold.overhead()
        rows.append(
            row(
                f"{what}: cold-start overhead (first token via proxy - spawn → healthy), ms",
                {"halogen": f"{overhead:.0f}", "LiteLLM": "n/a: starts no process"},
                verdict(overhead <= 100, "≤ 100 ms")
                if graded
                else f"(≤ 100 ms: {'met' if overhead <= 100 else 'missed'})",
            )
        )
        rows.append(
            row(
                f"{what}: first token via proxy - first token direct, both cold, ms",
                {"halogen": f"{cold.versus_direct():.0f}"},
            )
        )
    lines = ["| figure | direct | halogen | LiteLLM | target |", "|---|---|---|---|---|", *rows]
    return "\n".join(lines), missed


def per_run(results: Results) -> str:
    """Each cold-start run's figures, so the spread behind the medians is on record."""
    lines = []
    for cold, what in ((results.llama, "llama-server"), (results.slow, "stand-in")):
        if cold is None:
            continue
        runs = zip(cold.healthy, cold.proxy_token, cold.direct_token, strict=True)
        pairs = ", ".join(f"{1000 * h:.0f}/{1000 * (p - h):.0f}/{1000 * (p - d):.0f}" for h, p, d in runs)
        lines.append(f"- {what}: {pairs}")
    if not lines:
        return ""
    return "Cold starts, run by run (spawn → healthy / overhead / versus direct, ms):\n\n" + "\n".join(lines)


def command(args: argparse.Namespace) -> str:
    parts = [
        "python -m bench.runtime",
        f"--requests-c1 {args.requests_c1}",
        f"--requests-c32 {args.requests_c32}",
        f"--rounds {args.rounds}",
        f"--streams {args.streams}",
        f"--chunks {args.chunks}",
        f"--stream-seconds {args.stream_seconds:g}",
        f"--cold-runs {args.cold_runs}",
        f"--slow-runs {args.slow_runs}",
    ]
    parts += ["--no-litellm"] if args.no_litellm else []
    parts += ["--no-cold"] if args.no_cold else []
    return " ".join([*parts, "--write"])


NOTE = """\
## Method

One client process (Python, aiohttp, one pooled connector per target and concurrency) sends
small chat completions straight to the upstream (direct), through `halogen serve`, and through
LiteLLM's proxy. The upstream is `bench/fake_fast_upstream.py`, a bare asyncio HTTP server that
answers in microseconds. halogen starts it as its child (`cmd`, `checkEndpoint`, `proxy`); the
direct calls and LiteLLM (`openai/fast`, `api_base` on the same port) use that same process.
Each target is warmed up, then takes its requests in {rounds} slices whose order rotates, so a
drift of the machine falls on every target alike. Added latency is the proxy's percentile minus
the direct one. CPU figures are user + system time of the process over the phase
(`/proc/<pid>/stat`) divided by the requests or chunks.

Streams: {streams} concurrent SSE streams of {chunks} events each, started back to back for
{seconds:g} s per target; the upstream writes one event at a time and the client counts the
events it receives. The pinned run repeats this with the client and the upstream on the first
core and the proxy alone on the second (`sched_setaffinity` on every thread), so the proxy takes
no CPU from them. "Events per read" is how many events the client got per wakeup: a proxy
forwards each event as it arrives, so the client reads smaller pieces than it does straight from
an upstream that shares its core. Idle RSS is `VmRSS` of the proxy process itself (children not included)
after the warm-up and {idle:g} s without traffic; the upstream's is in brackets.

Cold start: directly, spawn the server, poll `/health` every 5 ms, then ask for a token; through
halogen, a streamed request for a stopped model, then `POST /unload`. One warm-up pair, then
{cold} pairs (llama-server) or {slow_runs} (stand-in), each direct run next to the halogen run
it is compared with; medians of the per-pair differences. For llama-server the request is a
`/v1/completions` with the prompt `Hi`, so that the model's own time to a first token (a few
ms) adds little to "first token via proxy - spawn → healthy", the figure the target is about;
the next row compares cold first tokens both ways. The stand-in (the fast fake with
`--health-delay`) loads for {slow:g}-{slow_end:g} s, spread over the runs, to show the proxy's
share when a model takes longer than a second to load, as larger models do.

## Noise

Client, proxies and upstream share two cores, so every figure includes the others' use of
them, and the Python client is itself a bottleneck at concurrency 32 and in the stream phase:
there, a proxy's CPU comes out of the client's and the upstream's, which lowers the stream ratio
whatever the proxy does. With a core of its own the proxy is not short of CPU, but the client
then gets fewer events per read and spends more per event, which is what the pinned ratio
shows. For scale: 64 streams at SmolLM2's 90 tokens/s on this machine are 5,760 events/s. Read the proxies' figures against direct on this machine, not as
capacity; the CPU-per-request and per-chunk rows are the steadier comparison. Between runs, p99
moves by tens of percent, the stream ratio by ten points or more, p50 less. llama-server's own
load time varies by ±15 ms from one spawn to the next, so a single pair can come out negative.
LiteLLM runs one uvicorn worker (on uvloop, its default), no database, no master key, no
callbacks, spend logs off, its access log on (its default), its look-ups of remote data pointed
at its bundled copies; it idles at under 1% of a core while the others are measured. halogen
runs as deployed (config watcher on, an access line per request to its log file), with `concurrencyLimit: 1000` on the model: llama-swap's
default of 10 would answer most concurrent requests with 429.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests-c1", type=int, default=2000, help="requests per target at concurrency 1")
    parser.add_argument(
        "--requests-c32", type=int, default=5000, help="requests per target at concurrency 32"
    )
    parser.add_argument("--rounds", type=int, default=4, help="slices of the requests, in rotating order")
    parser.add_argument("--streams", type=int, default=64, help="concurrent streams")
    parser.add_argument("--chunks", type=int, default=200, help="events per stream")
    parser.add_argument("--stream-seconds", type=float, default=8.0, help="seconds to keep starting streams")
    parser.add_argument(
        "--cold-runs", type=int, default=5, help="cold starts through halogen, and as many direct"
    )
    parser.add_argument(
        "--slow-runs", type=int, default=10, help="cold starts of the slowly loading stand-in, each way"
    )
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold starts")
    parser.add_argument(
        "--write", action="store_true", help=f"write the table to {RESULTS.relative_to(REPO)}"
    )
    args = parser.parse_args(argv)
    settings = Settings(
        c1=args.requests_c1,
        c32=args.requests_c32,
        rounds=args.rounds,
        streams=args.streams,
        chunks=args.chunks,
        stream_seconds=args.stream_seconds,
        cold_runs=args.cold_runs,
        slow_runs=args.slow_runs,
        litellm=not args.no_litellm,
        cold=not args.no_cold,
    )

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds through the finally blocks that stop every process

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with tempfile.TemporaryDirectory(prefix="halogen-bench-") as tmp:
            processes = Processes(Path(tmp))
            busy, own, began = machine_busy(), own_busy(), time.monotonic()
            try:
                results = asyncio.run(measure(settings, processes, Path(tmp)))
            finally:
                processes.close()
            cores = os.cpu_count() or 1
            foreign = (machine_busy() - busy) - (own_busy() - own)
            results.foreign = max(0.0, foreign) / (cores * (time.monotonic() - began))
    finally:
        signal.signal(signal.SIGTERM, previous)
    results.streams = settings.streams
    text, missed = table(results)
    runs = per_run(results)
    text += "\n\n" + runs if runs else ""
    print(text)
    if missed:
        say(f"halogen misses: {'; '.join(missed)}")
    say(f"other processes used {100 * results.foreign:.1f}% of the machine's CPU time meanwhile")
    if args.write:
        note = NOTE.format(
            rounds=settings.rounds,
            streams=settings.streams,
            chunks=settings.chunks,
            seconds=settings.stream_seconds,
            idle=IDLE_SECONDS,
            cold=settings.cold_runs,
            slow_runs=settings.slow_runs,
            slow=SLOW_LOAD,
            slow_end=SLOW_LOAD + SLOW_SPREAD,
        )
        RESULTS.write_text(
            "# Runtime benchmark\n\n"
            f"`{command(args)}` (2-core machine, about {math.ceil(results.minutes)} minutes; "
            f"processes other than the benchmark's used {100 * results.foreign:.0f}% of the "
            "machine's CPU time meanwhile).\n\n"
            "Targets for halogen: added p50 latency at concurrency 1 ≤ 1 ms; streamed throughput ≥ 90% "
            "of direct; cold-start overhead ≤ 100 ms (llama-swap polls once a second after a 250 ms "
            "wait); idle RSS ≤ 60 MB.\n\n" + text + "\n\n" + note
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
