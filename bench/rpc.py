"""A model split over llama.cpp's RPC against the same model in one process, on loopback:
SmolLM2-135M-Instruct Q4_1 on the CPU, prompt and generation tokens per second from
llama-server's own timings (`/completion`'s `timings`: prompt_per_second, predicted_per_second).

Three ways to run it, each a fresh llama-server (and rpc-servers) with `-t 1` everywhere:
  one process   llama-server alone, every layer on its CPU (`-ngl 0`)
  rpc 2         every layer on two rpc-servers (`--rpc A,B -ngl 99 --tensor-split 1,1`)
  rpc 2 + main  what `halogen build` writes for `split: [a, b, c]` with a CPU main node: the main
                keeps 10 of the 30 layers, the two rpc-servers 10 each (`-ngl 20 --tensor-split 1,1`)

RPC pools memory: it lets a model that fits no one machine run at all. It does not make a model
faster: each layer on another device is one more round trip per token. On loopback the round
trip is cheap; between machines it is the network's.

    python -m bench.rpc [--write] [--rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.ports import free_ports
from tests.runtime.processes import listening

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "rpc.md"
PROMPT = " ".join(["The quick brown fox jumps over the lazy dog."] * 20)  # ~200 tokens
PREDICT = 64
WAYS: dict[str, tuple[int, list[str]]] = {  # rpc-servers, llama-server flags
    "one process": (0, ["-ngl", "0"]),
    "rpc 2": (2, ["-ngl", "99", "--tensor-split", "1,1"]),
    "rpc 2 + main": (2, ["-ngl", "20", "--tensor-split", "1,1"]),
}


def _fetched(script: str) -> Path:
    out = subprocess.run([str(REPO / "scripts" / script)], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


def _until(condition: object, what: str, patience: float = 120) -> None:
    deadline = time.monotonic() + patience
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"never happened: {what}")
        time.sleep(0.1)


@contextlib.contextmanager
def _running(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _complete(url: str) -> dict[str, float]:
    body = {
        "prompt": PROMPT,
        "n_predict": PREDICT,
        "cache_prompt": False,
        "temperature": 0,
        "ignore_eos": True,
    }
    request = urllib.request.Request(
        f"{url}/completion", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as answer:
        timings: dict[str, float] = json.loads(answer.read())["timings"]
    return timings


def _cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes `pids` have used so far (/proc/PID/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


@dataclass
class Way:
    url: str
    pids: list[int]

    def complete(self) -> dict[str, float]:
        """One completion, with the CPU seconds it cost llama-server and its rpc-servers."""
        before = _cpu_seconds(self.pids)
        timings = _complete(self.url)
        return {**timings, "cpu_seconds": _cpu_seconds(self.pids) - before}


def start(
    stack: contextlib.ExitStack,
    server: Path,
    rpc: Path,
    gguf: Path,
    helpers: int,
    flags: list[str],
    work: Path,
) -> Way:
    """A llama-server and its rpc-servers, running until `stack` closes, once it is healthy."""
    ports = free_ports(helpers + 1)
    pids = []
    for i, port in enumerate(ports[1:]):
        argv = [str(rpc), "-H", "127.0.0.1", "-p", str(port), "-t", "1"]
        pids.append(stack.enter_context(_running(argv, work / f"rpc{i}.log")).pid)
        _until(lambda port=port: listening(port), f"rpc-server on {port}")
    rpc_flags = ["--rpc", ",".join(f"127.0.0.1:{p}" for p in ports[1:])] if helpers else []
    argv = [
        str(server),
        "-m",
        str(gguf),
        "--host",
        "127.0.0.1",
        "--port",
        str(ports[0]),
        "-c",
        "1024",
        "-t",
        "1",
        "-np",
        "1",
        *rpc_flags,
        *flags,
    ]
    process = stack.enter_context(_running(argv, work / "llama-server.log"))
    way = Way(f"http://127.0.0.1:{ports[0]}", [process.pid, *pids])
    _until(lambda: process.poll() is None and _healthy(way.url), "llama-server healthy")
    _complete(way.url)  # warm-up: first touches of the weights and buffers
    return way


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(REPO)}")
    parser.add_argument(
        "--rounds", type=int, default=5, help="completions measured per way (after a warm-up)"
    )
    options = parser.parse_args(args)
    server, gguf = _fetched("fetch-llama-server"), _fetched("fetch-smollm2")
    rpc = server.with_name("rpc-server")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in WAYS}
    with tempfile.TemporaryDirectory(prefix="bench-rpc.") as tmp, contextlib.ExitStack() as stack:
        ways = {}
        for name, (helpers, flags) in WAYS.items():
            work = Path(tmp) / name.replace(" ", "-")
            work.mkdir()
            ways[name] = start(stack, server, rpc, gguf, helpers, flags, work)
        # Round robin: the machine's load drifts, and each round sees it alike for every way.
        for round_ in range(options.rounds):
            for name, way in ways.items():
                results[name].append(way.complete())
            print(
                f"round {round_ + 1}: "
                + ", ".join(f"{n} {r[-1]['predicted_per_second']:.1f} tok/s" for n, r in results.items()),
                flush=True,
            )
    base = results["one process"]

    def median(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    def spread(rows: list[dict[str, float]], key: str) -> str:
        values = [r[key] for r in rows]
        return f"{median(rows, key):.1f} ({min(values):.1f}-{max(values):.1f})"

    lines = [
        "# RPC split against one process (SmolLM2-135M-Instruct Q4_1, CPU, loopback)",
        "",
        f"`python -m bench.rpc --write --rounds {options.rounds}` on this machine ({os.cpu_count()} cores, shared with",
        "other work: figures move with its load; compare the rows of one run). The three ways run side",
        "by side, each a llama-server (`-c 1024 -t 1 -np 1`) with its rpc-servers (`-t 1`), warmed up",
        f"by one completion, then asked in turn, round after round ({options.rounds} rounds), so the machine's load",
        f"falls on each alike: a ~200-token prompt (`cache_prompt: false`) and {PREDICT} generated tokens (`ignore_eos`).",
        "Tokens per second from llama-server's own `timings`, median (min-max); CPU: the user and",
        "system seconds llama-server and its rpc-servers used per completion (/proc/PID/stat), median.",
        "",
        "| way | rpc-servers | flags | prompt tok/s | generation tok/s | generation vs one process | CPU s per completion |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for name, (helpers, flags) in WAYS.items():
        rows = results[name]
        ratio = median(rows, "predicted_per_second") / median(base, "predicted_per_second")
        lines.append(
            f"| {name} | {helpers} | `{' '.join(flags)}` | {spread(rows, 'prompt_per_second')} | "
            f"{spread(rows, 'predicted_per_second')} | {ratio:.2f} | {median(rows, 'cpu_seconds'):.2f} |"
        )
    cpu = {name: median(rows, "cpu_seconds") / median(base, "cpu_seconds") for name, rows in results.items()}
    lines += [
        "",
        "What this run says: per completion the split ways used "
        + " and ".join(f"{cpu[name]:.2f}x" for name in WAYS if name != "one process")
        + " the CPU time of one",
        "process, and their generation medians lie inside one process's spread, which the machine's",
        "load makes wide; medians above 1.00 here are not a speed-up the spread lets this run claim",
        "(three processes with a thread each may simply get more of a contended CPU between tokens).",
        "On loopback the split costs next to no CPU: the graph is cut once per device, so a generated",
        "token makes one graph_compute call to each rpc-server (GGML_RPC_DEBUG logs count them), plus",
        "the copies of the activations that cross between devices.",
        "",
        "RPC pools memory; it does not make a model faster. The layers run one after the other, each",
        "where its weights are, never two at once, so the split's speed is at best its slowest",
        "device's share of the work plus one network round trip per rpc-server per token between",
        "machines (more for a prompt: the activations cross too). Split a model because it fits no",
        "one box, and expect its speed from the boxes' memory bandwidth, not from their number.",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    if options.write:
        RESULTS.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
