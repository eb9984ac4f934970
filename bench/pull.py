"""`halogen pull`'s download against the Hub client's own (`hf_hub_download`) of the same file
from the same local Hub in the same run, and what verification costs: pull hashes while it
writes; hashing the file after it is written (what a separate check would do) is timed apart.

The local Hub (tests/hub/local_hub.py: the resolve endpoint, a redirect to a CDN on another
port, Range) runs in a process of its own, so that the server and the client do not share a GIL.

    python -m bench.pull [--size-mib 512] [--runs 5] [--write]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "pull.md"
REPO_ID = "bench/Bench-GGUF"
NAME = "bench-q4_k_m.gguf"


def serve(data: Path) -> None:
    """The child process: a local Hub serving `data` until its stdin closes."""
    from tests.hub.local_hub import LocalHub, running

    hub = LocalHub()
    hub.add(REPO_ID, NAME, data)
    with running(hub):
        print(hub.endpoint, hub.files[(REPO_ID, NAME)].sha256, flush=True)
        sys.stdin.read()


def make_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with path.open("wb") as fh:
        for i in range(size >> 20):
            fh.write(block[i % 251 :] + block[: i % 251])  # no two MiB alike


def _closure(name: str, seen: set[str]) -> set[str]:
    """The distribution `name` and everything it requires (no extras), as installed here."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    key = canonicalize_name(name)
    if key in seen:
        return seen
    seen.add(key)
    for text in metadata.distribution(name).requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            _closure(requirement.name, seen)
    return seen


def image_cost() -> list[str]:
    """What huggingface_hub adds to the image's venv: the installed size on disk of the files
    (RECORD, the .pyc pip compiles included) of the distributions it brings that the rest of the
    runtime does not."""
    from importlib import metadata

    runtime: set[str] = set()
    for name in ("aiohttp", "click", "pydantic", "ruamel.yaml"):
        _closure(name, runtime)
    added = sorted(_closure("huggingface_hub", set()) - runtime)
    sizes = {}
    for name in added:
        files = metadata.distribution(name).files or []
        sizes[name] = sum(path.stat().st_size for f in files if (path := Path(str(f.locate()))).is_file())
    total = sum(sizes.values())
    return [
        f"Image: `halogen[runtime]` now carries huggingface_hub for the pull Job. Installed size of what it adds "
        f"over the rest of the runtime, the files the wheels' RECORD lists in this venv, .pyc included: **{total / 1e6:.1f} MB** "
        f"({total / (1 << 20):.1f} MiB), the image layer's growth:",
        "",
        "| distribution | MB |",
        "|---|---|",
        *(f"| {name} | {size / 1e6:.1f} |" for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])),
        "",
    ]


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pull")
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(REPO)}")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0

    work = Path(tempfile.mkdtemp(prefix="halogen-bench-pull-"))
    hub_process = None
    try:
        data = work / "served.gguf"
        make_file(data, args.size_mib << 20)
        size = data.stat().st_size
        hub_process = subprocess.Popen(
            [sys.executable, "-m", "bench.pull", "--serve", str(data)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert hub_process.stdout is not None
        endpoint, sha = hub_process.stdout.readline().split()
        os.environ.update(
            HF_ENDPOINT=endpoint,
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HOME=str(work / "hf-home"),
        )
        from huggingface_hub import hf_hub_download

        from halogen.hub.download import fetch
        from halogen.modelfiles import FileSource

        wanted = FileSource(f"{REPO_ID}/{NAME}", REPO_ID, NAME, "main", ("bench",))
        samples: dict[str, list[float]] = {"hf": [], "pull": [], "nosync": [], "hash": []}

        def client() -> None:
            folder = work / "hf"
            shutil.rmtree(folder, ignore_errors=True)
            hf_hub_download(REPO_ID, NAME, local_dir=folder, endpoint=endpoint)

        def pull() -> None:
            folder = work / "models"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            outcome = fetch(folder, wanted, progress=False)
            assert outcome.fetched == size and outcome.sha256 == sha

        def pull_without_fsync() -> None:
            # What the durability costs: the same pull with the fsyncs before the rename skipped.
            from halogen.hub import download

            real = download.os.fsync
            download.os.fsync = lambda fd: None  # type: ignore[assignment]
            try:
                pull()
            finally:
                download.os.fsync = real

        def hash_after() -> None:
            hasher = hashlib.sha256()
            with (work / "models" / wanted.path).open("rb") as fh:
                while chunk := fh.read(8 << 20):
                    hasher.update(chunk)
            assert hasher.hexdigest() == sha

        client()  # warm: connections, imports, the page cache for the served file
        for i in range(args.runs):
            order = [("hf", client), ("pull", pull), ("nosync", pull_without_fsync)]
            for name, action in order if i % 2 == 0 else order[::-1]:
                samples[name].append(timed(action))
            samples["hash"].append(timed(hash_after))
    finally:
        if hub_process is not None:
            hub_process.communicate("", timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    mib = size / (1 << 20)
    med = {k: statistics.median(v) for k, v in samples.items()}
    rows = [
        ("hf_hub_download (the client's own)", samples["hf"]),
        ("halogen pull (hashed while written, verified, fsynced, renamed)", samples["pull"]),
        ("the same pull without its fsyncs (what durability costs)", samples["nosync"]),
        ("sha256 of the written file afterwards (what hashing after would add)", samples["hash"]),
    ]
    lines = [
        "# Pull benchmark",
        "",
        f"`python -m bench.pull --size-mib {args.size_mib} --runs {args.runs} --write`: one {mib:.0f} MiB file "
        "from a local Hub (its own process, loopback, redirect to a CDN port, as the Hub answers), "
        "the downloads alternating in one run; 2-core machine shared with other work (load average "
        f"{os.getloadavg()[0]:.1f} at the end), so single runs vary widely.",
        "",
        "Target: halogen pull at >= 90% of the client's own throughput.",
        "",
        "| what | median s | MiB/s | min s | max s | runs |",
        "|---|---|---|---|---|---|",
        *(
            f"| {what} | {statistics.median(v):.3f} | {mib / statistics.median(v):.0f} | {min(v):.3f} | "
            f"{max(v):.3f} | {len(v)} |"
            for what, v in rows
        ),
        "",
        f"halogen pull throughput / hf_hub_download throughput: {med['hf'] / med['pull']:.0%} (median times); "
        f"without the fsyncs that make a renamed file survive a power cut (the client does none): "
        f"{med['hf'] / med['nosync']:.0%}. Best runs (min times, the least disturbed by other work on the "
        f"machine): {min(samples['hf']) / min(samples['pull']):.0%} and "
        f"{min(samples['hf']) / min(samples['nosync']):.0%}. Against the client followed by a sha256 of "
        "what it wrote (the same check, done afterwards): "
        f"{(med['hf'] + med['hash']) / med['pull']:.0%} by medians.",
        f"Hashing after writing instead of while writing would add {med['hash']:.3f} s "
        f"({med['hash'] / med['pull']:.0%} of the pull) for this file, read back from the page cache (a "
        f"lower bound); a 60 GB file scales it to about {med['hash'] * 60 * 1024 / mib / 60:.1f} min at "
        "this rate, more once it no longer fits in memory and is read from disk.",
        "",
    ]
    text = "\n".join(lines + image_cost())
    print(text)
    if args.write:
        RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
