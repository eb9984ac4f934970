"""`halogen serve` under two attacks from the LAN, with its default limits: slow and idle clients
(500 idle connections, 5 slowloris senders, 5 slow-body senders, a request declaring 10 GB and
sending nothing), and a log flood (80 requests naming a 4 MiB model, then `GET /logs`). Measures
the proxy's open file descriptors and RSS during and after each, and `/health` latency during.

    python -m bench.hostile [--write]

Everything runs on 127.0.0.1; every loop is bounded; every process is ended with its session.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.runtime import (
    FAKE,
    HOST,
    PORT_SLOT,
    Processes,
    free_port,
    rss_mb,
    wait_ready,
    with_port,
    write_config,
)

RESULTS = Path(__file__).resolve().parent / "results" / "hostile.md"
IDLE = 500
SLOWLORIS = 5
SLOW_BODY = 5
DRIP_SECONDS = 2.0  # one byte every this many seconds, as the attackers sent
HUGE_NAME = 4 * 1024 * 1024
FLOOD = 80


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Samples:
    """The proxy's fds and RSS and the latency of `/health`, sampled once a second."""

    fds: list[int] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    health_failed: int = 0

    def summary(self) -> str:
        if not self.fds:
            return "no samples"
        p50 = statistics.median(self.health_ms) if self.health_ms else float("nan")
        worst = max(self.health_ms) if self.health_ms else float("nan")
        return (
            f"fds {min(self.fds)}-{max(self.fds)}, RSS {min(self.rss):.0f}-{max(self.rss):.0f} MB, "
            f"/health p50 {p50:.1f} ms, max {worst:.1f} ms, {self.health_failed} failed"
        )


async def sample(pid: int, base: str, samples: Samples, stop: asyncio.Event) -> None:
    # One kept-alive connection opened before the attack: a client that was already there.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while not stop.is_set():
            samples.fds.append(fds(pid))
            samples.rss.append(rss_mb(pid))
            began = time.perf_counter()
            try:
                async with session.get(base + "/health") as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                samples.health_ms.append(1000 * (time.perf_counter() - began))
            else:
                samples.health_failed += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


@dataclass
class Attacker:
    """One attacking connection and when the proxy ended it (None: still open)."""

    kind: str
    began: float
    closed_after: float | None = None
    answer: bytes = b""


async def attack_connection(port: int, kind: str, deadline: float) -> Attacker:
    attacker = Attacker(kind, time.monotonic())
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        attacker.closed_after = 0.0
        attacker.answer = b"(refused)"
        return attacker
    try:
        if kind == "huge":
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 10000000000\r\n\r\n"
            )
        elif kind == "slow-body":
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000000\r\n\r\n"
            )
        drip = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 10_000
        sent = 0
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRIP_SECONDS if kind in ("slowloris", "slow-body") else 1.0):
                    chunk = await reader.read(65536)
                    attacker.answer += chunk
                    if not chunk:
                        attacker.closed_after = time.monotonic() - attacker.began
                        return attacker
            if kind == "slowloris" and sent < len(drip):
                writer.write(drip[sent : sent + 1])
                sent += 1
            elif kind == "slow-body":
                writer.write(b" ")
        return attacker
    except (ConnectionError, OSError):
        attacker.closed_after = time.monotonic() - attacker.began
        return attacker
    finally:
        writer.close()


@dataclass
class SlowResult:
    before: tuple[int, float]
    during: Samples
    after: tuple[int, float]
    attackers: list[Attacker]
    seconds: float


async def slow_clients(pid: int, port: int, seconds: float) -> SlowResult:
    base = f"http://{HOST}:{port}"
    before = (fds(pid), rss_mb(pid))
    samples, stop = Samples(), asyncio.Event()
    sampler = asyncio.create_task(sample(pid, base, samples, stop))
    await asyncio.sleep(1.5)
    deadline = time.monotonic() + seconds
    kinds = ["idle"] * IDLE + ["slowloris"] * SLOWLORIS + ["slow-body"] * SLOW_BODY + ["huge"]
    attackers = await asyncio.gather(*(attack_connection(port, kind, deadline) for kind in kinds))
    stop.set()
    await sampler
    await asyncio.sleep(2.0)  # the proxy notices the last closes
    after = (fds(pid), rss_mb(pid))
    return SlowResult(before, samples, after, list(attackers), seconds)


@dataclass
class FloodResult:
    before: tuple[int, float]
    during: Samples
    after_posts: float
    after_logs: float
    logs_bytes: int
    answer_bytes: int
    statuses: dict[int, int]


async def log_flood(pid: int, port: int) -> FloodResult:
    base = f"http://{HOST}:{port}"
    before = (fds(pid), rss_mb(pid))
    samples, stop = Samples(), asyncio.Event()
    sampler = asyncio.create_task(sample(pid, base, samples, stop))
    body = b'{"model": "' + b"x" * HUGE_NAME + b'", "messages": []}'
    statuses: dict[int, int] = {}
    answer_bytes = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for _ in range(FLOOD):
            async with session.post(
                base + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
            ) as response:
                answer_bytes = max(answer_bytes, len(await response.read()))
                statuses[response.status] = statuses.get(response.status, 0) + 1
        after_posts = rss_mb(pid)
        async with session.get(base + "/logs") as response:
            logs_bytes = len(await response.read())
    stop.set()
    await sampler
    await asyncio.sleep(1.0)
    return FloodResult(before, samples, after_posts, rss_mb(pid), logs_bytes, answer_bytes, statuses)


def slow_table(result: SlowResult) -> str:
    lines = [
        "| attacker | connections | closed by the proxy | closed after, s (min-max) | answer |",
        "|---|---|---|---|---|",
    ]
    for kind in ("idle", "slowloris", "slow-body", "huge"):
        group = [a for a in result.attackers if a.kind == kind]
        closed = [a.closed_after for a in group if a.closed_after is not None]
        span = f"{min(closed):.1f}-{max(closed):.1f}" if closed else "—"
        answers = {a.answer.split(b"\r\n", 1)[0].decode("latin-1") or "(none)" for a in group}
        lines.append(f"| {kind} | {len(group)} | {len(closed)} | {span} | {', '.join(sorted(answers))} |")
    during = result.during
    lines += [
        "",
        f"- proxy before: {result.before[0]} fds, RSS {result.before[1]:.0f} MB",
        f"- during ({result.seconds:g} s, sampled each second): {during.summary()}",
        f"- after: {result.after[0]} fds, RSS {result.after[1]:.0f} MB",
    ]
    return "\n".join(lines)


def flood_table(result: FloodResult) -> str:
    statuses = ", ".join(f"{n} x {status}" for status, n in sorted(result.statuses.items()))
    return "\n".join(
        [
            f"- answers: {statuses}; the largest answer {result.answer_bytes} bytes",
            f"- proxy before: {result.before[0]} fds, RSS {result.before[1]:.0f} MB",
            f"- during: {result.during.summary()}",
            f"- RSS after the {FLOOD} POSTs: {result.after_posts:.0f} MB; after GET /logs: "
            f"{result.after_logs:.0f} MB; /logs was {result.logs_bytes:,} bytes",
        ]
    )


async def run(processes: Processes, tmp: Path, seconds: float) -> tuple[SlowResult, FloodResult]:
    argv = [sys.executable, str(FAKE), "--port", PORT_SLOT]
    config = write_config(
        tmp / "config.yaml", {"m": {"cmd": with_port(argv), "proxy": "http://127.0.0.1:${PORT}"}}
    )
    port = free_port()
    child = processes.start(
        "halogen",
        [sys.executable, "-m", "halogen", "serve", "--config", config, "--listen", f"{HOST}:{port}"],
    )
    try:
        await wait_ready(child, f"http://{HOST}:{port}/health")
        slow = await slow_clients(child.pid, port, seconds)
        flood = await log_flood(child.pid, port)
        return slow, flood
    finally:
        processes.stop(child)


NOTE = """\
## Reading

"Closed after" is from the attacker's connect to the proxy's close. The header deadline (20 s)
closes the idle and slowloris connections; the slow-body senders get 408 at the body deadline
(120 s) and the declared 10 GB body 413 at once, and the proxy then keeps reading what follows
for up to 10 s (aiohttp's lingering close, so a client can read the error before the reset)
before it closes. fds and RSS are the proxy process's own (`/proc/<pid>/fd`, `VmRSS`); `/health`
is asked once a second on a connection opened before the attack. RSS can dip below its starting
figure while the machine reclaims pages under load.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150.0, help="how long the slow clients keep at it")
    parser.add_argument("--write", action="store_true", help="write bench/results/hostile.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="halogen-hostile-") as tmp:
        processes = Processes(Path(tmp))
        try:
            slow, flood = asyncio.run(run(processes, Path(tmp), args.seconds))
        finally:
            processes.close()
    text = (
        f"## Slow and idle clients\n\n{IDLE} idle connections, {SLOWLORIS} slowloris senders (a header "
        f"byte every {DRIP_SECONDS:g} s), {SLOW_BODY} slow-body senders (a body byte every "
        f"{DRIP_SECONDS:g} s) and one request declaring `Content-Length: 10000000000` with no body, "
        f"all opened at once and kept at it for up to {args.seconds:g} s.\n\n"
        + slow_table(slow)
        + f"\n\n## Log flood\n\n{FLOOD} POSTs to `/v1/chat/completions` naming a {HUGE_NAME // 1024 // 1024} MiB "
        "model, one after the other, then `GET /logs`.\n\n" + flood_table(flood)
    )
    print(text)
    if args.write:
        command = f"python -m bench.hostile --seconds {args.seconds:g} --write"
        RESULTS.write_text(
            "# halogen serve under attack\n\n"
            f"`{command}` (2-core machine shared with other work; `halogen serve` with its default limits: "
            "header 20 s, idle 75 s, body 120 s, 512 connections; one fake model).\n\n" + text + "\n\n" + NOTE
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
