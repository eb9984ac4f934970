"""`halogen serve` while 4 clients keep sending the widest JSON bodies its size limit allows
(32 MiB of `{},` after the model: about 11 M empty objects), one client per API family:
OpenAI chat completions, Ollama `/api/chat`, Anthropic `/v1/messages` and Responses. Measures
`/health` latency (asked every 20 ms on a connection opened before the attack) and the proxy's
RSS, idle and at its peak (`VmHWM`).

    python -m bench.wide_bodies [--seconds 30] [--parsed] [--tree DIR] [--write LABEL]

`--parsed`: the 4 clients send Ollama chats just within the element limit instead (about 5,400
messages, which the proxy parses and translates), all to `/api/chat`. `--tree DIR` serves the
`halogen` package found in DIR (a worktree of another commit), for a before-and-after.
`--write LABEL` puts the table in bench/results/wide_bodies.md under that heading, keeping the
others. Everything runs on 127.0.0.1; every process is ended with its session.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
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

RESULTS = Path(__file__).resolve().parent / "results" / "wide_bodies.md"
LIMIT = 32 * 1024 * 1024  # halogen serve's default --max-body
PROBE_EVERY = 0.02
# Each family's body: the model first (as the attacker sent it) or last (so the whole
# body stands between the proxy and the name).
FAMILIES = (
    ("/v1/chat/completions", True),
    ("/api/chat", True),
    ("/v1/messages", False),
    ("/v1/responses", False),
)
# Within jsonbody.MAX_ELEMENTS (2^14): three elements a message.
PARSED_MESSAGES = 5400
# Run a module from a given tree: `python -c RUN_FROM DIR serve ...`.
RUN_FROM = (
    "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); runpy.run_module('halogen', run_name='__main__')"
)


def widest(model_first: bool) -> bytes:
    """The widest body within LIMIT: `{"model":"nope","a":[{},{},…]}`."""
    name = b'"model":"nope"'
    room = LIMIT - len(name) - len(b'{,"a":[{}]}')
    values = b'"a":[' + b"{}," * (room // 3) + b"{}]"
    body = b"{" + (name + b"," + values if model_first else values + b"," + name) + b"}"
    assert len(body) <= LIMIT
    return body


def parsed_chat() -> bytes:
    message = b'{"role":"user","content":"hi"}'
    return b'{"model":"m","stream":false,"messages":[' + b",".join([message] * PARSED_MESSAGES) + b"]}"


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


@dataclass
class Result:
    idle_mb: float = 0.0
    peak_mb: float = 0.0
    health_ms: list[float] = field(default_factory=list)
    health_failed: int = 0
    answers: dict[str, dict[int, int]] = field(default_factory=dict)
    answer_s: dict[str, list[float]] = field(default_factory=dict)


def probe(base: str, stop: EventType, answers: Connection) -> None:
    """Ask `/health` every PROBE_EVERY s until `stop`; send back (latencies in ms, failures).
    Runs in a process of its own, so the attackers' sending never delays it."""

    async def asking() -> tuple[list[float], int]:
        latencies: list[float] = []
        failed = 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            while not stop.is_set():
                began = time.perf_counter()
                try:
                    async with session.get(base + "/health") as response:
                        await response.read()
                        ok = response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if ok:
                    latencies.append(1000 * (time.perf_counter() - began))
                else:
                    failed += 1
                await asyncio.sleep(PROBE_EVERY)
        return latencies, failed

    answers.send(asyncio.run(asking()))


async def attack(base: str, path: str, body: bytes, result: Result, deadline: float) -> None:
    statuses = result.answers.setdefault(path, {})
    times = result.answer_s.setdefault(path, [])
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        while time.monotonic() < deadline:
            began = time.monotonic()
            try:
                async with session.post(base + path, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            statuses[status] = statuses.get(status, 0) + 1
            times.append(time.monotonic() - began)


async def run(processes: Processes, tmp: Path, seconds: float, tree: Path | None, parsed: bool) -> Result:
    argv = [sys.executable, str(FAKE), "--port", PORT_SLOT]
    config = write_config(
        tmp / "config.yaml", {"m": {"cmd": with_port(argv), "proxy": "http://127.0.0.1:${PORT}"}}
    )
    port = free_port()
    start = [sys.executable, "-m", "halogen"] if tree is None else [sys.executable, "-c", RUN_FROM, tree]
    child = processes.start("halogen", [*start, "serve", "--config", config, "--listen", f"{HOST}:{port}"])
    base = f"http://{HOST}:{port}"
    result = Result()
    try:
        await wait_ready(child, base + "/health")
        async with aiohttp.ClientSession() as session, session.get(base + "/v1/models") as response:
            await response.read()
        await asyncio.sleep(1.0)
        result.idle_mb = rss_mb(child.pid)
        if parsed:
            attacks = [("/api/chat", parsed_chat())] * len(FAMILIES)
        else:
            attacks = [(path, widest(first)) for path, first in FAMILIES]
        spawn = multiprocessing.get_context("spawn")
        stop = spawn.Event()
        mine, theirs = spawn.Pipe()
        prober = spawn.Process(target=probe, args=(base, stop, theirs))
        prober.start()
        await asyncio.sleep(0.5)
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(attack(base, path, body, result, deadline) for path, body in attacks))
        stop.set()
        result.health_ms, result.health_failed = await asyncio.to_thread(mine.recv)
        prober.join()
        result.peak_mb = peak_mb(child.pid)
        return result
    finally:
        processes.stop(child)


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(result: Result, seconds: float, parsed: bool) -> str:
    h = result.health_ms
    lines = [
        "| route | model | answers | seconds per answer (median, max) |",
        "|---|---|---|---|",
    ]
    for path, first in [("/api/chat", True)] if parsed else FAMILIES:
        statuses = ", ".join(
            f"{n} x {s or 'failed'}" for s, n in sorted(result.answers.get(path, {}).items())
        )
        times = result.answer_s.get(path) or [float("nan")]
        where = "first" if first else "last"
        lines.append(
            f"| `{path}` | {where} | {statuses} | {statistics.median(times):.2f}, {max(times):.2f} |"
        )
    bound = 2 * result.idle_mb + LIMIT / 1024 / 1024
    lines += [
        "",
        f"- `/health` ({len(h)} answers in {seconds:g} s, {result.health_failed} failed): "
        f"p50 {statistics.median(h):.1f} ms, p99 {percentile(h, 0.99):.1f} ms, max {max(h):.1f} ms",
        f"- RSS idle {result.idle_mb:.0f} MB, peak {result.peak_mb:.0f} MB "
        f"(the bound 2 x idle + the body limit is {bound:.0f} MB)",
    ]
    return "\n".join(lines)


HEADER = """# Wide bodies

`halogen serve` (default limits: 32 MiB bodies; one fake model) on a 2-core machine shared with
other work, while 4 clients keep sending JSON bodies: the widest the size limit allows (32 MiB of
`{},`, about 11 M empty objects, the model first or last), or with `--parsed` Ollama chats just
within the element limit. `/health` is asked every 20 ms on a connection opened before the
attack; a probe that fails waited 60 s. RSS is the proxy's own: idle after one request, and its
peak (`VmHWM`).
"""


def write_section(label: str, text: str) -> None:
    """Put `text` under `## label` in RESULTS, replacing that section, keeping the others."""
    sections: dict[str, str] = {}
    if RESULTS.exists():
        for part in RESULTS.read_text().split("\n## ")[1:]:
            title, _, body = part.partition("\n")
            sections[title] = "\n" + body.strip("\n") + "\n"
    sections[label] = "\n" + text
    RESULTS.write_text(HEADER + "".join(f"\n## {title}\n{body}" for title, body in sections.items()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the 4 clients keep at it")
    parser.add_argument("--tree", type=Path, help="serve the halogen package found in this directory")
    parser.add_argument("--parsed", action="store_true", help="Ollama chats within the element limit")
    parser.add_argument(
        "--write", metavar="LABEL", help="write the table under LABEL in bench/results/wide_bodies.md"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="halogen-wide-") as tmp:
        processes = Processes(Path(tmp))
        try:
            result = asyncio.run(run(processes, Path(tmp), args.seconds, args.tree, args.parsed))
        finally:
            processes.close()
    text = report(result, args.seconds, args.parsed)
    print(text)
    if args.write:
        options = " --parsed" if args.parsed else ""
        options += " --tree <a worktree of that commit>" if args.tree else ""
        command = f"python -m bench.wide_bodies --seconds {args.seconds:g}{options} --write '{args.write}'"
        write_section(args.write, f"`{command}`\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
