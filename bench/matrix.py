"""Decision time of the matrix router (llama-swap's solver) for 100 models and a matrix of 50
sets: each set a product of alternatives, every fifth one inlining an earlier set with `+ref`.
Each decision is one `admit(target, running)` with 0-6 models running, as the Swapper asks it.

    python -m bench.matrix [--models 100] [--sets 50] [--decisions 20000] [--write]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from halogen.llamaswap.config import Config
from halogen.llamaswap.resolve import resolve
from halogen.llamaswap.resolved import Resolved
from halogen.runtime.scheduling.eviction import eviction_for

RESULTS = Path(__file__).resolve().parent / "results" / "matrix.md"


def config(models: int, sets: int, seed: int = 9) -> Resolved:
    rng = random.Random(seed)
    ids = [f"model-{i:03d}" for i in range(models)]
    definitions: dict[str, str] = {}
    for i in range(sets):
        terms = []
        for _ in range(rng.randint(2, 4)):
            choices = rng.sample(ids, rng.randint(1, 4))
            terms.append(choices[0] if len(choices) == 1 else "(" + " | ".join(choices) + ")")
        if i % 5 == 4:
            terms.append(f"+set-{rng.randrange(i - 4, i):02d}")
        definitions[f"set-{i:02d}"] = " & ".join(terms)
    costs = {m: rng.randint(1, 50) for m in rng.sample(ids, models // 4)}
    return resolve(
        Config.model_validate(
            {
                "models": {m: {"cmd": "llama-server --port ${PORT}"} for m in ids},
                "routing": {
                    "router": {
                        "use": "matrix",
                        "settings": {"matrix": {"evict_costs": costs, "sets": definitions}},
                    }
                },
            }
        )
    )


def run(models: int, sets: int, decisions: int) -> dict[str, float]:
    start = time.perf_counter()
    resolved = config(models, sets)
    compile_ms = (time.perf_counter() - start) * 1000
    router = eviction_for(resolved)
    rng = random.Random(1)
    ids = sorted(resolved.models)
    questions = [(rng.choice(ids), rng.sample(ids, rng.randint(0, 6))) for _ in range(decisions)]
    samples = []
    evicting = 0
    for target, running in questions:
        best = None
        for _ in range(3):  # best of 3: the machine is shared, and a stall is not the solver's
            t0 = time.perf_counter_ns()
            admission = router.admit(target, running)
            took = (time.perf_counter_ns() - t0) / 1000
            best = took if best is None else min(best, took)
        assert best is not None
        samples.append(best)
        evicting += bool(admission.evict)
    samples.sort()
    return {
        "compile_ms": compile_ms,
        "median_us": statistics.median(samples),
        "p99_us": samples[int(len(samples) * 0.99)],
        "max_us": samples[-1],
        "evicting": evicting / decisions,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--sets", type=int, default=50)
    parser.add_argument("--decisions", type=int, default=20000)
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args(argv)
    r = run(args.models, args.sets, args.decisions)
    command = f"python -m bench.matrix --models {args.models} --sets {args.sets} --decisions {args.decisions}"
    table = (
        "# Matrix router benchmark\n\n"
        f"`{command} --write` (one process, 2-core machine shared with other work).\n\n"
        f"{args.models} models, {args.sets} sets (products of 2-4 alternatives of 1-4 models, every fifth "
        "inlining an earlier set), evict costs on a quarter of the models; each decision is one "
        f"`MatrixEviction.admit(target, running)` with 0-6 models running, timed as the best of 3 "
        "calls; "
        f"{r['evicting']:.0%} of decisions evict something.\n\n"
        "| what | value |\n|---|---|\n"
        f"| load and compile the config (resolve) | {r['compile_ms']:.1f} ms |\n"
        f"| decision, median | {r['median_us']:.1f} µs |\n"
        f"| decision, p99 | {r['p99_us']:.1f} µs |\n"
        f"| decision, max | {r['max_us']:.1f} µs |\n"
        f"| decisions | {args.decisions} |\n"
    )
    print(table)
    if args.write:
        RESULTS.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
