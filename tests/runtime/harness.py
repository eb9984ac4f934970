"""Building blocks of the runtime tests: configs whose models are fake llama-servers run as
real processes, and the proxy served in-process on a real socket."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from halogen.llamaswap import io
from halogen.runtime.base.logs import Logs
from halogen.runtime.serve.listen import Limits
from halogen.runtime.serve.server import Server
from tests.ports import free_port_run, free_ports

FAKE = Path(__file__).with_name("fake_upstream.py")
# A bound on how long a condition may take to come true; never a measure of speed.
PATIENCE = 30.0


def fake_argv(port: int, name: str, record: Path | None, *flags: str) -> list[str]:
    """The command line of a fake llama-server on `port`, recording its events in `record`
    (when given)."""
    recording = ["--record", str(record)] if record is not None else []
    return [sys.executable, str(FAKE), "--port", str(port), "--name", name, *recording, *flags]


def fake_commands(delays: Mapping[str, float]) -> dict[str, dict[str, str]]:
    """A model's `cmd` and `proxy` for a fake llama-server per model id in `delays`, on
    consecutive free ports, each answering /health 200 after its delay in seconds."""
    start = free_port_run(len(delays))
    out = {}
    for i, (model_id, delay) in enumerate(sorted(delays.items())):
        argv = fake_argv(start + i, model_id, None, "--health-delay", f"{delay:.3f}")
        out[model_id] = {"cmd": shlex.join(argv), "proxy": f"http://127.0.0.1:{start + i}"}
    return out


@contextmanager
def fake_process(port: int, name: str, record: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A fake llama-server started by hand, outside any config (a squatter on a model's port,
    say); killed when the block ends."""
    process = subprocess.Popen(fake_argv(port, name, record), stdout=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.kill()
        process.wait(PATIENCE)


@dataclass
class Fake:
    """One fake llama-server in a config, and what it recorded."""

    model_id: str
    port: int
    record: Path

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        rows = [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]
        return [row for row in rows if kind is None or row["event"] == kind]

    def starts(self) -> int:
        return len(self.events("start"))

    def pids(self) -> list[int]:
        return [row["pid"] for row in self.events("start")]

    def last_pid(self) -> int:
        pids = self.pids()
        assert pids, f"{self.model_id} never started"
        return pids[-1]


@dataclass
class Site:
    """A llama-swap config under construction, written as YAML."""

    root: Path
    top: dict[str, Any] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    fakes: dict[str, Fake] = field(default_factory=dict)

    def fake(self, model_id: str, *flags: str, **keys: Any) -> Fake:
        """Add a model run by the fake upstream; `keys` are extra llama-swap model keys."""
        (port,) = free_ports(1)
        fake = Fake(model_id, port, self.root / f"{model_id.replace('/', '_')}.events")
        argv = fake_argv(port, model_id, fake.record, *flags)
        self.models[model_id] = {"cmd": shlex.join(argv), "proxy": f"http://127.0.0.1:{port}", **keys}
        self.fakes[model_id] = fake
        return fake

    def write(self, name: str = "config.yaml") -> Path:
        path = self.root / name
        path.write_text(yaml.safe_dump({**self.top, "models": self.models}, sort_keys=False))
        return path


@dataclass
class Proxy:
    server: Server
    client: aiohttp.ClientSession

    @property
    def swapper(self) -> Any:
        return self.server.swapper

    async def chat(
        self, model: str, *, headers: dict[str, str] | None = None, **body: Any
    ) -> aiohttp.ClientResponse:
        payload = {"model": model, "messages": [{"role": "user", "content": "hi"}], **body}
        return await self.client.post("/v1/chat/completions", json=payload, headers=headers)

    async def served_by(self, model: str, **headers: str) -> str:
        """Which fake answered a chat for `model`; the answer must be a 200."""
        async with await self.chat(model, headers=headers or None) as response:
            body = await response.json()
            assert response.status == 200, body
            return str(body["served_by"])

    async def metrics(self) -> str:
        async with self.client.get("/metrics") as response:
            return await response.text()

    async def running(self) -> dict[str, str]:
        async with self.client.get("/running") as response:
            assert response.status == 200
            rows = (await response.json())["running"]
        return {row["model"]: row["state"] for row in rows}


@asynccontextmanager
async def serving(
    config: Path,
    *,
    health_check_timeout: float = 20.0,
    max_body: int | None = None,
    logs: Logs | None = None,
    limits: Limits | None = None,
    allow_origins: tuple[str, ...] = (),
) -> AsyncIterator[Proxy]:
    resolved, _ = io.load(config)
    extra: dict[str, Any] = {} if max_body is None else {"max_body": max_body}
    if limits is not None:
        extra["limits"] = limits
    if allow_origins:
        extra["allow_origins"] = allow_origins
    server = Server(
        resolved,
        host="127.0.0.1",
        port=0,
        health_check_timeout=health_check_timeout,
        logs=logs or Logs(echo_proxy=False),
        **extra,
    )
    await server.start()
    try:
        async with aiohttp.ClientSession(base_url=server.url) as client:
            yield Proxy(server, client)
    finally:
        await server.close()


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, patience: float = PATIENCE
) -> None:
    """Wait until `condition` holds; fail naming `what` if it does not within `patience`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.02)


def until(
    condition: Callable[[], object],
    what: str | Callable[[], str],
    patience: float = PATIENCE,
    interval: float = 0.02,
) -> None:
    """`eventually` for synchronous code: wait until `condition()` is true; fail naming `what`
    (called then, when it is a function: the state at the time of failure) if it is not within
    `patience`."""
    deadline = time.monotonic() + patience
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what() if callable(what) else what}")
        time.sleep(interval)


def metric(text: str, name: str) -> dict[str, str]:
    """The samples of metric `name` labelled only by model in a /metrics `text`, read with
    prometheus_client's parser; a whole number is written without its fraction (the library
    writes 2 as 2.0)."""
    rows = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and set(sample.labels) == {"model"}:
                value = sample.value
                rows[sample.labels["model"]] = str(int(value)) if float(value).is_integer() else repr(value)
    return rows


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name` with exactly `labels` in a /metrics `text` (parsed with
    prometheus_client's parser); None when there is none."""
    for family in text_string_to_metric_families(text):
        for row in family.samples:
            if row.name == name and row.labels == labels:
                return float(row.value)
    return None


@dataclass
class Joined:
    """Families as a collector, for `prometheus_client.generate_latest`."""

    families: list[Metric]

    def collect(self) -> list[Metric]:
        return self.families


def process_exists(pid: int) -> bool:
    """True while `pid` is in the process table, zombies included (a zombie is a leak too)."""
    return os.path.exists(f"/proc/{pid}")


EVENT_LIMIT = 30.0  # seconds: a stream that sends nothing for this long has stopped flushing


async def next_event(response: aiohttp.ClientResponse, limit: float = EVENT_LIMIT) -> bytes:
    """The next server-sent event of a stream, failing after `limit` seconds instead of waiting
    for the test's timeout: a proxy that buffers a stream fails here, at once, by name."""
    try:
        return await asyncio.wait_for(response.content.readuntil(b"\n\n"), limit)
    except TimeoutError:
        raise AssertionError(f"no event within {limit} s: is the stream buffered?") from None


# The routes of llama-swap's UI API: a browser is asked for the key (internal/server/auth.go).
LLAMA_SWAP_UI = (
    "/api/models/unload",
    "/api/profiles",
    "/api/events",
    "/api/metrics/",
    "/api/inflight/",
    "/api/captures/",
    "/api/performance",
    "/api/hardware",
    # halogen's web UI: its pages and its own document (halogen/runtime/ui).
    "/ui",
    "/api/halogen/",
)


def challenge(path: str) -> str:
    return 'Basic realm="llama-swap"' if path.startswith(LLAMA_SWAP_UI) else "Bearer"
