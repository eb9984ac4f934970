"""How long fitting the matrix takes (halogen/compiler/fit.py) for sites of 10, 30 and 100 models with a
memoryBudget and no groups. Models cycle through the seed's five shapes plus gpt-oss-120b
(synthetic sparse GGUF headers, tests/gguf_shapes.py), with the seed's context sizes; the lock is
read from those headers. Two budgets: 120Gi (the Strix Halo box) and 4Ti (where all of them fit
together). Reported: the sets found (or where the search stopped, past fit.MAX_SETS), the time of
the fit alone (in process, median of runs), and `halogen validate` as a user runs it.

    python -m bench.fit [--runs 5] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from halogen.compiler import fit
from halogen.compiler.site.load import load
from halogen.compiler.site.lock import write_lock
from tests.gguf_shapes import GPT_OSS_120B_MODEL, SEED, sparse_lock, write_models

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "fit.md"
COUNTS = (10, 30, 100)
BUDGETS = ("120Gi", "4Ti")


def make_site(root: Path, count: int, budget: str, ggufs: Path) -> Path:
    shapes = [*SEED.items(), GPT_OSS_120B_MODEL]
    paths = write_models(ggufs, dict(shapes))
    lock = sparse_lock(paths, ggufs)
    root.mkdir(parents=True)
    (root / "models.d").mkdir()
    site = yaml.safe_load((REPO / "halogen.yaml").read_text())
    site.pop("groups", None)
    site["memoryBudget"] = budget
    site["deployment"]["resources"] = {"limits": {"memory": "8Ti"}}
    (root / "halogen.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    for i in range(count):
        model_id, (_, rel, ctx) = shapes[i % len(shapes)]
        (root / "models.d" / f"{model_id}-{i:03d}.yaml").write_text(
            f"file: {rel}\nbackend: cpu\ncontextSize: {ctx}\n"
        )
    write_lock(root / "halogen.lock", lock)
    return root


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(REPO)}")
    options = parser.parse_args(args)
    lines = [
        "# Fitting the matrix (halogen/compiler/fit.py)",
        "",
        f"`python -m bench.fit --runs {options.runs} --write`. Models cycle through the seed's five shapes and",
        "gpt-oss-120b (synthetic headers). fit: the search and the matrix, in process, median. validate:",
        "`halogen validate` wall time (a fresh process: load, checks, budget, fit), median.",
        "",
        "| models | budget | outcome | fit ms | validate s |",
        "|---:|---:|---|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        ggufs = Path(tmp) / "models"
        for count in COUNTS:
            for budget in BUDGETS:
                root = make_site(Path(tmp) / f"site-{count}-{budget}", count, budget, ggufs)
                site, _ = load(root)
                assert site is not None
                samples = []
                for _ in range(options.runs):
                    start = time.perf_counter()
                    routing, problems = fit.fitted(site)
                    samples.append(time.perf_counter() - start)
                if problems:
                    outcome = f"stopped: over {fit.MAX_SETS} sets"
                else:
                    assert routing is not None
                    matrix = routing.settings.matrix
                    assert matrix is not None
                    outcome = f"{len(matrix.sets)} sets"
                walls = []
                for _ in range(options.runs):
                    start = time.perf_counter()
                    done = subprocess.run(
                        [sys.executable, "-m", "halogen", "validate", str(root)],
                        capture_output=True,
                        text=True,
                    )
                    walls.append(time.perf_counter() - start)
                    # Valid, or stopped by the fit alone: the time is the fit's, not another error's.
                    stopped = "memoryBudget:" in done.stderr and "halogen: 1 error" in done.stderr
                    assert done.returncode == 0 or stopped, done.stderr[-2000:]
                row = (
                    f"| {count} | {budget} | {outcome} | {statistics.median(samples) * 1000:.1f} | "
                    f"{statistics.median(walls):.2f} |"
                )
                print(row, flush=True)
                lines.append(row)
    table = "\n".join(lines) + "\n"
    if options.write:
        RESULTS.write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
