"""A household's load on the real path: two SmolLM2 chat models in one swap group and an
embedding model beside them, run by real llama-server processes under `halogen serve`, with
16 clients for at least 120 s.

    python -m bench.soak [--seconds 120] [--write]

Reports the status counts per model (a 502 is a failure of the proxy or of a model), the
longest time a request for the second chat model took (it waits while the first holds the
group), and the proxy's RSS and open fds at the start and at the end. Everything binds
127.0.0.1; clients stop sending at the end of the run and what they still wait for is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.hostile import fds
from bench.runtime import (
    HOST,
    PORT_SLOT,
    Processes,
    _live,
    fetched,
    free_port,
    rss_mb,
    wait_ready,
    with_port,
    write_config,
)

RESULTS = Path(__file__).resolve().parent / "results" / "soak.md"
CLIENTS = {"smol-a": 8, "smol-b": 4, "embed": 4}  # 16 clients
# After the run, requests still waiting get this long before they are given up (and counted).
FINISH_PATIENCE = 240.0
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=FINISH_PATIENCE + 600)


def config(tmp: Path) -> Path:
    binary, gguf = str(fetched("fetch-llama-server")), str(fetched("fetch-smollm2"))
    base = [binary, "--port", PORT_SLOT, "--host", HOST, "-m", gguf, "-c", "1024", "-t", "1", "-ngl", "0"]
    # Each model may hold all 16 clients: a 429 here would be the limit, not the proxy.
    chat = {"proxy": "http://127.0.0.1:${PORT}", "concurrencyLimit": 16}
    models = {
        "smol-a": {"cmd": with_port(base), **chat},
        "smol-b": {"cmd": with_port(base), **chat},
        "embed": {"cmd": with_port([*base, "--embeddings", "--pooling", "mean"]), **chat},
    }
    groups = {
        "chat": {"swap": True, "exclusive": True, "members": ["smol-a", "smol-b"]},
        "embeddings": {"swap": False, "exclusive": False, "persistent": True, "members": ["embed"]},
    }
    return write_config(tmp / "config.yaml", models, groups=groups, healthCheckTimeout=120)


@dataclass
class Tally:
    statuses: dict[str, Counter[str]] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, model: str, status: str, took: float) -> None:
        self.statuses.setdefault(model, Counter())[status] += 1
        self.seconds.setdefault(model, []).append(took)


async def one(session: aiohttp.ClientSession, base: str, model: str, n: int) -> str:
    if model == "embed":
        body: dict[str, object] = {"model": model, "input": f"a short sentence number {n}"}
        path = "/v1/embeddings"
    else:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": f"Say a word about the number {n}."}],
            "max_tokens": 8,
            "temperature": 0,
            "stream": n % 2 == 0,
        }
        path = "/v1/chat/completions"
    async with session.post(base + path, json=body) as response:
        data = await response.read()
        if response.status == 200 and body.get("stream") and b"[DONE]" not in data:
            return "200 cut short"
        if response.status == 200 and b'"error"' in data[-400:] and body.get("stream"):
            return "200 with an error event"
        return str(response.status)


async def client(base: str, model: str, until: float, tally: Tally) -> None:
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        n = 0
        while time.monotonic() < until:
            began = time.monotonic()
            try:
                status = await one(session, base, model, n)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = f"client error: {type(exc).__name__}"
            tally.add(model, status, time.monotonic() - began)
            n += 1


@dataclass
class Soak:
    seconds: float
    start: tuple[int, float]
    end: tuple[int, float]
    tally: Tally
    unfinished: int
    children_left: int
    ran: float


async def soak(processes: Processes, tmp: Path, seconds: float) -> Soak:
    port = free_port()
    child = processes.start(
        "halogen",
        [sys.executable, "-m", "halogen", "serve", "--config", config(tmp), "--listen", f"{HOST}:{port}"],
    )
    base = f"http://{HOST}:{port}"
    try:
        await wait_ready(child, base + "/health")
        start = (fds(child.pid), rss_mb(child.pid))
        tally = Tally()
        began = time.monotonic()
        until = began + seconds
        tasks = [
            asyncio.create_task(client(base, model, until, tally))
            for model, count in CLIENTS.items()
            for _ in range(count)
        ]
        _, pending = await asyncio.wait(tasks, timeout=seconds + FINISH_PATIENCE)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)
        ran = time.monotonic() - began
        await asyncio.sleep(2.0)
        end = (fds(child.pid), rss_mb(child.pid))
    finally:
        pid = child.pid
        processes.stop(child)
    left = sum(1 for _ in _live(3, pid))
    return Soak(seconds, start, end, tally, len(pending), left, ran)


def report(result: Soak) -> str:
    lines = ["| model | clients | requests | statuses | p50 s | longest s |", "|---|---|---|---|---|---|"]
    total: Counter[str] = Counter()
    for model, count in CLIENTS.items():
        statuses = result.tally.statuses.get(model, Counter())
        total.update(statuses)
        took = result.tally.seconds.get(model, [])
        shown = ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items()))
        p50 = f"{statistics.median(took):.2f}" if took else "—"
        longest = f"{max(took):.1f}" if took else "—"
        lines.append(f"| {model} | {count} | {sum(statuses.values())} | {shown} | {p50} | {longest} |")
    b_longest = max(result.tally.seconds.get("smol-b", [0.0]))
    lines += [
        "",
        f"- all requests: {', '.join(f'{status}: {n}' for status, n in sorted(total.items()))}; "
        f"502s: {total.get('502', 0)}",
        f"- longest wait of a request for smol-b (the second chat model): {b_longest:.1f} s",
        f"- requests still unanswered {FINISH_PATIENCE:g} s after the clients stopped sending: "
        f"{result.unfinished} (given up)",
        f"- proxy at the start: {result.start[0]} fds, RSS {result.start[1]:.0f} MB; at the end: "
        f"{result.end[0]} fds, RSS {result.end[1]:.0f} MB",
        f"- processes left in the proxy's session after it stopped: {result.children_left}",
        f"- run: {result.seconds:g} s of sending, {result.ran:.0f} s until the last answer",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the clients send")
    parser.add_argument("--note", default="", help="a line about the code measured, for the results")
    parser.add_argument("--write", action="store_true", help="write bench/results/soak.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="halogen-soak-") as tmp:
        processes = Processes(Path(tmp))
        try:
            result = asyncio.run(soak(processes, Path(tmp), args.seconds))
        finally:
            processes.close()
    text = report(result)
    print(text)
    if args.write:
        clients = ", ".join(f"{n} on {model}" for model, n in CLIENTS.items())
        RESULTS.write_text(
            "# Soak: real llama-server, two chat models in a swap group and an embedding model\n\n"
            f"`python -m bench.soak --seconds {args.seconds:g} --write` (2-core machine shared with other "
            f"work). SmolLM2-135M-Instruct Q4_1 under llama-server, `-c 1024 -t 1`; smol-a and smol-b in "
            "one swap group, embed (`--embeddings --pooling mean`) in a persistent group of its own; "
            f"`concurrencyLimit: 16`. 16 clients ({clients}), each sending one request after the other: "
            "chat completions of 8 tokens, every other one streamed, and one-sentence embeddings."
            + (f"\n\n{args.note}" if args.note else "")
            + "\n\n"
            + text
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
