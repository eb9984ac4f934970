"""halogen's memory estimate (halogen/compiler/memory.py) against a real llama-server on SmolLM2: three
context sizes, with mmap and without it (`--load-mode none`: this llama-server has no
--no-mmap). Each case starts llama-server, runs one completion (so the weights and the compute
buffer are touched), then reads the process's PSS from
/proc/PID/smaps_rollup, the buffers llama.cpp reports in its log, and the enclosing memory
cgroup's usage before and after (a delta: the cgroup may hold other processes).

    python -m bench.memory [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from halogen.compiler import memory
from halogen.llamacpp.gguf_header import read_facts

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "memory.md"
CONTEXTS = (2048, 4096, 8192)
MiB = 1024 * 1024


def _fetched(script: str) -> Path:
    out = subprocess.run([str(REPO / "scripts" / script)], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cgroup_usage(pid: int) -> int | None:
    """The memory usage of the cgroup `pid` is in (v2 memory.current, v1 memory.usage_in_bytes)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            candidate = Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.current"
        elif "memory" in controllers.split(","):
            candidate = Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.usage_in_bytes"
        else:
            continue
        try:
            return int(candidate.read_text())
        except (OSError, ValueError):
            continue
    return None


def _pss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no Pss in smaps_rollup")


def measure(server: Path, gguf: Path, argv: Sequence[str]) -> dict[str, float | int | None]:
    port = _port()
    with tempfile.TemporaryFile() as log:
        before = _cgroup_usage(os.getpid())
        process = subprocess.Popen(
            [str(server), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "-lv", "4", *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("llama-server did not become healthy")
                time.sleep(0.2)
            body = json.dumps({"prompt": "The capital of France is", "n_predict": 8}).encode()
            request = urllib.request.Request(f"{url}/completion", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=120) as answer:
                answer.read()
            time.sleep(0.5)
            pss = _pss(process.pid)
            after = _cgroup_usage(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    buffers: dict[str, float] = {}
    for line in text.splitlines():
        for kind in ("model", "KV", "output", "compute"):
            if f" {kind} buffer size" in line:
                buffers[kind] = buffers.get(kind, 0.0) + float(line.rsplit("=", 1)[1].split()[0]) * MiB
    return {
        "pss": pss,
        "cgroup_delta": (after - before) if after is not None and before is not None else None,
        **{f"reported_{k}": int(v) for k, v in buffers.items()},
    }


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(REPO)}")
    options = parser.parse_args(args)
    server, gguf = _fetched("fetch-llama-server"), _fetched("fetch-smollm2")
    facts = read_facts(gguf)
    rows = []
    for ctx in CONTEXTS:
        for mmap in (True, False):
            argv = ["-c", str(ctx), "-t", "1", "-ngl", "0", *([] if mmap else ["--load-mode", "none"])]
            est = memory.estimate(facts, argv)
            got = measure(server, gguf, argv)
            rows.append((ctx, mmap, est, got))
            print(
                f"ctx {ctx} mmap {mmap}: estimate {est.total / MiB:.1f} MiB, PSS {int(got['pss'] or 0) / MiB:.1f} MiB"
            )
    lines = [
        "# Memory estimate against llama-server (SmolLM2-135M-Instruct Q4_1, CPU, 4 auto slots)",
        "",
        "`python -m bench.memory --write`. Estimate: halogen/compiler/memory.py from the GGUF's facts and the flags",
        "(`-c N -t 1 -ngl 0`, plus `--load-mode none` for mmap off: this llama-server has no --no-mmap).",
        "PSS: /proc/PID/smaps_rollup after one completion. cgroup Δ: the enclosing memory cgroup's usage",
        "after the load minus before it (other processes share it: indicative only; the GGUF's page cache",
        "was warm, so mmapped weights add nothing there). Reported: the buffers llama.cpp logs",
        "(model + KV + output + compute); the estimate's own terms are in the last columns.",
        "",
        "| -c | mmap | estimate MiB | PSS MiB | estimate/PSS | cgroup Δ MiB | reported buffers MiB | est. KV / reported KV MiB | est. compute / reported compute MiB |",
        "|---:|:---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ctx, mmap, est, got in rows:
        pss = int(got["pss"] or 0)
        delta = got["cgroup_delta"]
        reported = sum(int(v or 0) for k, v in got.items() if k.startswith("reported_"))
        lines.append(
            f"| {ctx} | {'on' if mmap else 'off'} | {est.total / MiB:.1f} | {pss / MiB:.1f} | "
            f"{est.total / pss:.3f} | {'n/a' if delta is None else f'{int(delta) / MiB:.1f}'} | "
            f"{reported / MiB:.1f} | {est.kv_cache / MiB:.1f} / {int(got.get('reported_KV') or 0) / MiB:.1f} | "
            f"{est.compute / MiB:.1f} / {int(got.get('reported_compute') or 0) / MiB:.1f} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if options.write:
        RESULTS.write_text(table)
    worst = max(abs(est.total / int(got["pss"] or 1) - 1) for _, _, est, got in rows)
    print(f"worst deviation: {worst:.1%} (aim: 15%)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
