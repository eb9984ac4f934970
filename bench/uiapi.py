"""What llama-swap's UI API costs `halogen serve`: CPU per proxied request at concurrency 32 with
the activity log and captures on, next to the same proxy before the UI API (a git commit, run from
an archive of it) and with captures off; and 50 /api/events clients during a soak of 32 streams:
every activity event reaches every client, and the streams' p50 with and without them.

    python -m bench.uiapi [--base COMMIT] [--write]

Every process binds 127.0.0.1 and is ended with its session (bench/runtime.py's Processes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.runtime import (
    CHAT,
    FAKE,
    HOST,
    MODEL,
    PORT_SLOT,
    REPO,
    Child,
    Processes,
    cpu_seconds,
    free_port,
    pool,
    requests,
    wait_ready,
    with_port,
    write_config,
)

RESULTS = Path(__file__).resolve().parent / "results" / "uiapi.md"
# The commit this branch started from: halogen without the UI API.
BASE = "85dc810"


@dataclass
class Variant:
    name: str
    captures: int  # captureBuffer MB
    pythonpath: str = ""  # a checkout of another commit, or "" for this one
    child: Child | None = None
    base: str = ""
    cpu: float = 0.0
    requests: int = 0

    @property
    def per_request_us(self) -> float:
        return 1e6 * self.cpu / self.requests


def config(tmp: Path, name: str, captures: int, with_ui_keys: bool) -> Path:
    models = {
        MODEL: {
            "cmd": with_port([sys.executable, str(FAKE), "--port", PORT_SLOT]),
            "proxy": f"http://{HOST}:${{PORT}}",
            "checkEndpoint": "/health",
            "concurrencyLimit": 1000,
        }
    }
    top: dict[str, object] = {"healthCheckTimeout": 30, "logToStdout": "none"}
    if with_ui_keys:
        top["captureBuffer"] = captures
    return write_config(tmp / f"{name}.yaml", models, **top)


def checkout(commit: str, tmp: Path) -> str:
    """The `halogen` package of `commit`, unpacked under `tmp`: its PYTHONPATH."""
    where = tmp / f"halogen-{commit}"
    where.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "halogen"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    return str(where)


async def start(processes: Processes, variant: Variant, tmp: Path) -> None:
    path = config(tmp, variant.name.replace(" ", "-"), variant.captures, not variant.pythonpath)
    port = free_port()
    # -P: the working directory (this checkout) is not put first on sys.path, so PYTHONPATH's
    # archive is the halogen imported for the commit before.
    argv = [sys.executable, "-P", "-m", "halogen", "serve", "--config", path, "--listen", f"{HOST}:{port}"]
    argv.append("--no-watch")
    env = {"PYTHONPATH": variant.pythonpath} if variant.pythonpath else {}
    variant.child = processes.start(variant.name.replace(" ", "-"), argv, env)
    variant.base = f"http://{HOST}:{port}"
    await wait_ready(variant.child, variant.base + "/health")


async def cpu_phase(variants: list[Variant], count: int, rounds: int, concurrency: int) -> None:
    """`count` requests per variant at `concurrency`, in `rounds` slices whose order rotates."""
    sessions = [pool(concurrency) for _ in variants]
    try:
        for variant, session in zip(variants, sessions, strict=True):
            await requests(session, variant.base + "/v1/chat/completions", 8 * concurrency, concurrency)
        for r in range(rounds):
            order = list(zip(variants, sessions, strict=True))
            order = order[r % len(order) :] + order[: r % len(order)]
            for variant, session in order:
                assert variant.child is not None
                before = cpu_seconds(variant.child.pid)
                await requests(session, variant.base + "/v1/chat/completions", count // rounds, concurrency)
                variant.cpu += cpu_seconds(variant.child.pid) - before
                variant.requests += count // rounds
    finally:
        for session in sessions:
            await session.close()


@dataclass
class Soak:
    clients: int
    streams_done: int = 0
    durations: list[float] = field(default_factory=list)
    activity_ids: set[int] = field(default_factory=set)
    per_client: list[set[int]] = field(default_factory=list)


async def event_client(
    session: aiohttp.ClientSession, base: str, seen: set[int], ready: asyncio.Event
) -> None:
    async with session.get(base + "/api/events") as response:
        buffer = b""
        async for chunk in response.content.iter_any():
            ready.set()
            buffer += chunk
            *messages, buffer = buffer.split(b"\n\n")
            for message in messages:
                envelope = json.loads(message.split(b"data:", 1)[1])
                if envelope["type"] == "activity":
                    seen.add(json.loads(envelope["data"])["id"])


async def soak(base: str, clients: int, streams: int, chunks: int, seconds: float) -> Soak:
    """`streams` workers stream back to back for `seconds` while `clients` read /api/events."""
    result = Soak(clients)
    body = json.dumps({**CHAT, "stream": True, "max_tokens": chunks}).encode()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
    ) as session:
        readers = []
        for _ in range(clients):
            seen: set[int] = set()
            ready = asyncio.Event()
            result.per_client.append(seen)
            readers.append(asyncio.create_task(event_client(session, base, seen, ready)))
            await asyncio.wait_for(ready.wait(), 30)
        began = time.perf_counter()
        ids: list[int] = []

        async def worker() -> None:
            while time.perf_counter() - began < seconds:
                started = time.perf_counter()
                async with session.post(
                    base + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    await response.read()
                    assert response.status == 200
                result.durations.append(time.perf_counter() - started)
                result.streams_done += 1

        await asyncio.gather(*(worker() for _ in range(streams)))
        async with session.get(base + f"/api/metrics/activity?limit={min(999, result.streams_done)}") as page:
            ids = [row["id"] for row in (await page.json())["data"]]
        await asyncio.sleep(1.0)  # the last events on their way
        for task in readers:
            task.cancel()
        for task in readers:
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await task
    result.activity_ids = set(ids[: result.streams_done])
    return result


def p50_ms(values: Sequence[float]) -> float:
    return 1000 * statistics.median(values)


async def measure(args: argparse.Namespace, processes: Processes, tmp: Path) -> list[str]:
    variants = [
        Variant(f"before the UI API ({args.base})", 0, checkout(args.base, tmp)),
        Variant("UI API, captures off (captureBuffer 0)", 0),
        Variant("UI API, captures on (captureBuffer 5)", 5),
    ]
    for variant in variants:
        await start(processes, variant, tmp)
    await cpu_phase(variants, args.requests, args.rounds, 32)
    lines = [
        "| proxy | requests | CPU per request | vs before |",
        "| --- | ---: | ---: | ---: |",
    ]
    before = variants[0].per_request_us
    for variant in variants:
        change = 100 * (variant.per_request_us / before - 1)
        lines.append(
            f"| {variant.name} | {variant.requests} | {variant.per_request_us:.0f} us | {change:+.1f}% |"
        )
    for variant in variants[:2]:
        assert variant.child is not None
        processes.stop(variant.child)
    ui = variants[2]
    soaks: list[Soak] = []
    for r in range(args.soak_rounds):
        for clients in (0, 50) if r % 2 == 0 else (50, 0):
            soaks.append(await soak(ui.base, clients, 32, args.chunks, args.soak_seconds))
    lines += [
        "",
        "| /api/events clients | streams | stream p50 | events lost (per client, of the streams' rows) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for run in soaks:
        lost = max((len(run.activity_ids - seen) for seen in run.per_client), default=0)
        lines.append(
            f"| {run.clients} | {run.streams_done} | {p50_ms(run.durations):.1f} ms | "
            + (f"{lost}" if run.clients else "-")
            + " |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--base", default=BASE, help="the commit without the UI API")
    parser.add_argument("--requests", type=int, default=6000, help="requests per proxy at concurrency 32")
    parser.add_argument("--rounds", type=int, default=6, help="slices of the requests, in rotating order")
    parser.add_argument("--chunks", type=int, default=50, help="events per stream in the soak")
    parser.add_argument("--soak-seconds", type=float, default=6.0, help="seconds of one soak run")
    parser.add_argument(
        "--soak-rounds", type=int, default=3, help="pairs of soak runs, with and without clients"
    )
    parser.add_argument(
        "--write", action="store_true", help=f"append the tables to {RESULTS.relative_to(REPO)}"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="halogen-bench-uiapi-") as tmp:
        processes = Processes(Path(tmp))
        try:
            lines = asyncio.run(measure(args, processes, Path(tmp)))
        finally:
            processes.close()
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    text = "\n".join(
        [
            f"At {head.stdout.strip()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end:",
            "",
            *lines,
        ]
    )
    print(text)
    if args.write:
        with RESULTS.open("a") as out:
            out.write("\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
