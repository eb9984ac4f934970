"""A mixed day of requests over the seed's five models, replayed through `halogen serve` twice:
with the seed's one exclusive group, and with the routing `halogen build` fits to a 120Gi budget.
Swaps and the seconds requests spent waiting for loads, from /metrics.

The models are fake upstreams (tests/runtime/fake_upstream.py) whose load time grows with the
model's file size, as on the real box: LOAD_SECONDS_PER_GIB of real time per GiB (a 21 GiB file
takes 84 s), scaled down by SCALE for the run; the table gives both. Sizes and estimates come from
building the worked example's site (synthetic headers, tests/gguf_shapes.py).

The fitted run serves the built config.yaml as it is (its matrix router), with each model's
command swapped for a fake; the seed run serves the same models under the seed's one group.

    python -m bench.replay [--requests 300] [--write]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.gguf_shapes import SEED, fitted_site
from tests.runtime.harness import fake_commands, metric
from tests.runtime.processes import halogen_serve

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "replay.md"
GiB = 1024**3
LOAD_SECONDS_PER_GIB = 4.0
SCALE = 100
# What a day asks for: (model, share). Quick completions on the 3B, code on 7B and 32B, chat on
# gpt-oss-20b, DeepSeek now and then. A user stays on a model for a while: STAY.
MIX = (
    ("qwen2.5-coder-3b-instruct-q4_k_m", 0.40),
    ("qwen2.5-coder-7b-instruct-q5_k_m", 0.20),
    ("qwen2.5-coder-32b-instruct-q5_k_m", 0.10),
    ("gpt-oss-20b-q8_k_xl", 0.20),
    ("deepseek-coder-v2-lite-instruct-q4_k_m", 0.10),
)
STAY = 0.6


def fitted_config(tmp: Path) -> dict[str, Any]:
    """out/config.yaml of the worked example's site, built by the real compiler."""
    import subprocess

    root = fitted_site(tmp, SEED)
    subprocess.run(
        [sys.executable, "-m", "halogen", "build", "--src", str(root)], check=True, capture_output=True
    )
    config: dict[str, Any] = yaml.safe_load((root / "out" / "config.yaml").read_text())
    return config


def requests(count: int) -> list[str]:
    rng = random.Random(20250601)
    names, weights = zip(*MIX, strict=True)
    out: list[str] = []
    for _ in range(count):
        if out and rng.random() < STAY:
            out.append(out[-1])
        else:
            out.append(rng.choices(names, weights)[0])
    return out


def serve_config(fitted: dict[str, Any], routing: dict[str, Any], tmp: Path) -> Path:
    delays = {
        model_id: model["metadata"]["fileSize"] / GiB * LOAD_SECONDS_PER_GIB / SCALE
        for model_id, model in fitted["models"].items()
    }
    models = fake_commands(delays)
    path = tmp / f"config-{len(list(tmp.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump({"healthCheckTimeout": 60, "models": models, **routing}, sort_keys=False))
    return path


def replay(config: Path, sequence: Sequence[str], log: Path, load_real: dict[str, float]) -> dict[str, float]:
    with halogen_serve(config, log, "--no-watch") as serving:
        began = time.perf_counter()
        for model in sequence:
            body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
            request = urllib.request.Request(
                f"{serving.url}/v1/chat/completions", body, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=120) as answer:
                answer.read()
        wall = time.perf_counter() - began
        with urllib.request.urlopen(f"{serving.url}/metrics", timeout=30) as answer:
            text = answer.read().decode()
    starts = {m: int(v) for m, v in metric(text, "halogen_swaps_total").items()}
    waited = sum(float(v) for v in metric(text, "halogen_load_seconds_total").values())
    real = sum(n * load_real[m] for m, n in starts.items())
    return {"swaps": sum(starts.values()), "waited": waited, "real": real, "wall": wall}


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(REPO)}")
    options = parser.parse_args(args)
    sequence = requests(options.requests)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        fitted = fitted_config(tmp)
        sets = fitted["routing"]["router"]["settings"]["matrix"]["sets"]
        runs = {
            "seed: one exclusive group (swap: true)": {
                "groups": {"main": {"swap": True, "exclusive": True, "members": sorted(SEED)}}
            },
            f"fitted to 120Gi (matrix: {'; '.join(sets.values())})": {"routing": fitted["routing"]},
        }
        rows = []
        for label, routing in runs.items():
            load_real = {
                m: model["metadata"]["fileSize"] / GiB * LOAD_SECONDS_PER_GIB
                for m, model in fitted["models"].items()
            }
            got = replay(serve_config(fitted, routing, tmp), sequence, tmp / "serve.log", load_real)
            rows.append((label, got))
            print(label, got, flush=True)
    shares = ", ".join(f"{m.split('-instruct')[0].split('-q')[0]} {s:.0%}" for m, s in MIX)
    lines = [
        "# Replay: the seed's exclusive group against fitted routing (120Gi)",
        "",
        f"`python -m bench.replay --requests {options.requests} --write`. {options.requests} sequential chat requests,",
        f"seeded; the next request stays on the same model with p={STAY}, else draws from: {shares}.",
        f"Fake upstreams load in {LOAD_SECONDS_PER_GIB:g} s per GiB of file, {SCALE}x faster in the run. Swaps: model",
        "starts (halogen_swaps_total). Waiting (run): seconds spent loading (halogen_load_seconds_total,",
        "fake process start included), which sequential requests wait through. Waiting (real): each",
        f"start counted at {LOAD_SECONDS_PER_GIB:g} s per GiB of its file, as on the box.",
        "",
        "| routing | swaps | waiting for loads, s (run) | waiting, real s | replay wall, s |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, got in rows:
        lines.append(
            f"| {label} | {int(got['swaps'])} | {got['waited']:.2f} | {got['real']:.0f} | {got['wall']:.2f} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if options.write:
        RESULTS.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
