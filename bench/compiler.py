"""Wall time of `halogen validate` and `halogen build`, as a user runs them (a fresh process
each time), on the shipped site and on a generated site of 1000 models, with
`kubectl kustomize out/` in the same run for scale.

    python -m bench.compiler [--runs 15] [--models 1000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "compiler.md"


def _time(argv: Sequence[str | Path], runs: int, cwd: Path) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(a) for a in argv], cwd=cwd, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return samples


def _side_by_side(commands: dict[str, Sequence[str | Path]], runs: int, cwd: Path) -> dict[str, list[float]]:
    """Each command once per round, in turn, so that the machine's load falls on all alike."""
    samples: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(runs):
        for label, argv in commands.items():
            samples[label] += _time(argv, 1, cwd)
    return samples


def generate_site(root: Path, count: int) -> Path:
    """The shipped halogen.yaml with `count` model files of realistic size and variety."""
    root.mkdir(parents=True)
    shutil.copy(REPO / "halogen.yaml", root / "halogen.yaml")
    models = root / "models.d"
    models.mkdir()
    families = [("qwen2.5", "qwen"), ("llama", "meta"), ("gemma3", "google"), ("gpt-oss", "openai")]
    for i in range(count):
        arch, family = families[i % len(families)]
        ctx = 4096 * (1 + i % 8)
        (models / f"model-{i:04d}.yaml").write_text(
            "# yaml-language-server: $schema=../schemas/model.schema.json\n"
            f"name: Model {i}\n"
            f"description: Generated model number {i} for the benchmark\n"
            f"file: {family}/model-{i:04d}-Q4_K_M.gguf\n"
            "backend: cpu\n"
            "group: main\n"
            f"contextSize: {ctx}\n"
            f"aliases: [m{i}]\n"
            "capabilities: [completion, tools]\n"
            "metadata:\n"
            f"  architecture: {arch}\n"
            f"  family: {family}\n"
            f"  parameterSize: {1 + i % 70}B\n"
            "  quantizationLevel: Q4_K_M\n"
            f"  contextLength: {ctx * 2}\n"
        )
    return root


def _row(label: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    return f"| {label} | {statistics.median(ordered):.3f} | {ordered[0]:.3f} | {ordered[-1]:.3f} | {len(ordered)} |"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--shipped-only", action="store_true", help="skip the generated site")
    parser.add_argument(
        "--write", action="store_true", help=f"write the table to {RESULTS.relative_to(REPO)}"
    )
    args = parser.parse_args(argv)
    halogen = [sys.executable, "-m", "halogen"]
    kubectl = shutil.which("kubectl")
    rows: list[str] = []
    ratios: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        shipped = Path(tmp) / "shipped"
        shutil.copytree(
            REPO, shipped, ignore=shutil.ignore_patterns(".venv", ".git", "tests", "bench", "*.egg-info")
        )
        shipped_commands: dict[str, Sequence[str | Path]] = {
            "validate, shipped site (5 models)": [*halogen, "validate"],
            "build, shipped site (5 models)": [*halogen, "build", "--out", Path(tmp) / "o1"],
        }
        if kubectl:
            shipped_commands["kubectl kustomize out/, shipped site"] = [kubectl, "kustomize", shipped / "out"]
        measured = _side_by_side(shipped_commands, args.runs, shipped)
        rows += [_row(label, samples) for label, samples in measured.items()]
        if kubectl:
            scale = statistics.median(measured["kubectl kustomize out/, shipped site"])
            for what, target in (("validate", 3), ("build", 5)):
                ratio = statistics.median(measured[f"{what}, shipped site (5 models)"]) / scale
                ratios.append(f"{what} / kustomize: {ratio:.1f}x (target <= {target}x)")
        if not args.shipped_only:
            big = generate_site(Path(tmp) / "big", args.models)
            few = max(3, args.runs // 3)
            rows.append(_row(f"validate, {args.models} models", _time([*halogen, "validate"], few, big)))
            rows.append(
                _row(
                    f"build, {args.models} models",
                    _time([*halogen, "build", "--out", Path(tmp) / "o2"], few, big),
                )
            )
            if kubectl:
                rows.append(
                    _row(
                        f"kubectl kustomize out/, {args.models} models",
                        _time([kubectl, "kustomize", Path(tmp) / "o2"], few, big),
                    )
                )
    table = "\n".join(
        [
            "| what | median s | min s | max s | runs |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    table += "".join(f"\n\n{line}" for line in ratios)
    print(table)
    if args.write:
        RESULTS.write_text(
            "# Compiler benchmark\n\n"
            f"`python -m bench.compiler --runs {args.runs} --models {args.models} --write` "
            "(each run a fresh process, as a user or pre-commit runs it; 2-core machine).\n\n"
            "Targets: shipped site validate <= 3x and build <= 5x `kubectl kustomize out/`, measured side "
            "by side (each command once per round); 1000 models build <= 5 s.\n\n" + table + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
