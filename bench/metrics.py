"""What /metrics costs, and what the histograms cost a request: the latency and the proxy's CPU
time of one scrape with N running models (each a stand-in that answers /metrics as llama-server
does, so the scrape also merges their series), and the proxy's CPU time per proxied chat
(whole and streamed), for two source trees of halogen: the code before the prometheus_client
/metrics (`--before DIR`, e.g. a `git archive` of that commit) and this one.

    python -m bench.metrics --before DIR [--rounds 3] [--write]

The two run in turn, round after round, so a machine whose load changes shows it as spread.
Every process binds 127.0.0.1 and is ended with its session.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.runtime import (
    FAKE,
    HOST,
    PORT_SLOT,
    Child,
    Processes,
    cpu_seconds,
    free_port,
    wait_ready,
    with_port,
    write_config,
)
from tests.ports import free_port_run

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "metrics.md"
MODELS = (1, 4, 16)
SCRAPES = 200
CHATS = 2000
CONCURRENCY = 8
TIMEOUT = aiohttp.ClientTimeout(total=60)


@dataclass
class Figures:
    """One tree's figures over the rounds: each list has one value per round."""

    scrape_ms: dict[int, list[float]] = field(default_factory=dict)  # median wall, by models
    scrape_p95_ms: dict[int, list[float]] = field(default_factory=dict)
    scrape_cpu_ms: dict[int, list[float]] = field(default_factory=dict)
    scrape_bytes: dict[int, int] = field(default_factory=dict)
    chat_cpu_ms: dict[str, list[float]] = field(default_factory=dict)  # by whole / streamed


def start_serve(processes: Processes, tree: Path, name: str, config: Path) -> tuple[Child, str]:
    """`halogen serve` from `tree`'s sources (python -m halogen, run in that folder)."""
    port = free_port()
    # -P: the tree on PYTHONPATH comes first, not the current folder.
    argv = [sys.executable, "-P", "-m", "halogen", "serve", "--config", config, "--listen", f"{HOST}:{port}"]
    child = processes.start(name, argv, env={"PYTHONPATH": str(tree)})
    return child, f"http://{HOST}:{port}"


def config_of(tmp: Path, models: int) -> Path:
    cmd = with_port([sys.executable, str(FAKE), "--port", PORT_SLOT, "--metrics"])
    ids = [f"m{i:02d}" for i in range(models)]
    group = {"all": {"swap": False, "exclusive": False, "members": ids}}
    # A run of free ports for the models' `${PORT}`s, handed out before the proxy's own.
    path = tmp / f"config-{models}.yaml"
    return write_config(path, {m: {"cmd": cmd} for m in ids}, groups=group, startPort=free_port_run(models))


async def chat(session: aiohttp.ClientSession, url: str, model: str, stream: bool) -> None:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 16,
        "stream": stream,
    }
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        await response.read()
        assert response.status == 200, response.status


async def scrape_phase(child: Child, url: str, models: int, figures: Figures) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for i in range(models):  # every model running, each histogram observed once
            await chat(session, url, f"m{i:02d}", stream=True)
        async with session.get(url + "/metrics") as response:
            figures.scrape_bytes[models] = len(await response.read())
        walls = []
        cpu = cpu_seconds(child.pid)
        for _ in range(SCRAPES):
            began = time.perf_counter()
            async with session.get(url + "/metrics") as response:
                await response.read()
            walls.append(time.perf_counter() - began)
        cpu = cpu_seconds(child.pid) - cpu
    walls.sort()
    figures.scrape_ms.setdefault(models, []).append(1000 * statistics.median(walls))
    figures.scrape_p95_ms.setdefault(models, []).append(1000 * walls[int(len(walls) * 0.95)])
    figures.scrape_cpu_ms.setdefault(models, []).append(1000 * cpu / SCRAPES)


async def chat_phase(child: Child, url: str, figures: Figures) -> None:
    async with aiohttp.ClientSession(
        timeout=TIMEOUT, connector=aiohttp.TCPConnector(limit=CONCURRENCY)
    ) as session:
        for stream in (False, True):
            for _ in range(50):  # warm: connections, first-call paths
                await chat(session, url, "m00", stream)
            cpu = cpu_seconds(child.pid)
            left = iter(range(CHATS))

            async def worker(stream: bool = stream, left: Iterator[int] = left) -> None:
                for _ in left:
                    await chat(session, url, "m00", stream)

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            cpu = cpu_seconds(child.pid) - cpu
            figures.chat_cpu_ms.setdefault("streamed" if stream else "whole", []).append(1000 * cpu / CHATS)


async def one_round(processes: Processes, tmp: Path, tree: Path, figures: Figures) -> None:
    for models in MODELS:
        child, url = start_serve(processes, tree, f"serve-{models}", config_of(tmp, models))
        try:
            await wait_ready(child, url + "/health")
            await scrape_phase(child, url, models, figures)
            if models == 1:
                await chat_phase(child, url, figures)
        except AssertionError as exc:
            raise RuntimeError(f"{child.name} answered {exc}:\n{child.tail()}") from None
        finally:
            processes.stop(child)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def table(before: Figures, after: Figures, rounds: int, command: str) -> str:
    lines = [
        "# /metrics and the histograms: before and after prometheus_client",
        "",
        f"`{command}` (branch h-metrics): before = the tree `--before` names, after = this one.",
        f"Median of {rounds} rounds, the two trees in turn, (min-max) across rounds; the machine's two",
        "cores were shared with other work, so the spread is the noise to read differences against.",
        "",
        f"## One scrape of /metrics ({SCRAPES} in a row), N running models",
        "",
        "Each model a stand-in answering /metrics with llama-server's 15 series (bench/fake_fast_upstream.py",
        "--metrics): after merges them, before does not ask. CPU is the proxy's own (its children excluded).",
        "",
        "| models | before: median ms | after: median ms | before: p95 ms | after: p95 ms "
        "| before: CPU ms/scrape | after: CPU ms/scrape | before: bytes | after: bytes |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for models in MODELS:
        lines.append(
            f"| {models} | {spread(before.scrape_ms[models])} | {spread(after.scrape_ms[models])} "
            f"| {spread(before.scrape_p95_ms[models])} | {spread(after.scrape_p95_ms[models])} "
            f"| {spread(before.scrape_cpu_ms[models])} | {spread(after.scrape_cpu_ms[models])} "
            f"| {before.scrape_bytes[models]} | {after.scrape_bytes[models]} |"
        )
    lines += [
        "",
        f"## The proxy's CPU per proxied chat ({CHATS} chats, {CONCURRENCY} at a time, 16 tokens)",
        "",
        "| answer | before: CPU ms/request | after: CPU ms/request |",
        "|---|---:|---:|",
    ]
    for kind in ("whole", "streamed"):
        lines.append(f"| {kind} | {spread(before.chat_cpu_ms[kind])} | {spread(after.chat_cpu_ms[kind])} |")
    return "\n".join(lines) + "\n"


async def run(before_tree: Path, rounds: int) -> tuple[Figures, Figures]:
    before, after = Figures(), Figures()
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as folder:
        tmp = Path(folder)
        processes = Processes(tmp)
        try:
            for _ in range(rounds):
                await one_round(processes, tmp, before_tree, before)
                await one_round(processes, tmp, REPO, after)
        finally:
            processes.close()
    return before, after


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a source tree of halogen to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(REPO)}")
    args = parser.parse_args(argv)
    before, after = asyncio.run(run(args.before.resolve(), args.rounds))
    command = "python -m bench.metrics --before DIR" + (
        f" --rounds {args.rounds}" if args.rounds != 3 else ""
    )
    text = table(before, after, args.rounds, command)
    print(text)
    if args.write:
        RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
