"""halogen's placement against a naive one, by the seconds requests wait for loads.

Naive: the models in file order (by id, as models.d/ lists them), each on the first node whose
room beside the models already there holds it, else the first where it fits alone. Both get the
same split models (the pass that splits what no node holds is the same), so the comparison is of
where the other models go. Each node then routes with the matrix halogen fits to its budget
(halogen.compiler.fit), decided by the runtime's own matrix router
(halogen.runtime.scheduling.eviction, llama-swap's solver), over a seeded day of requests: the
next request stays on the same model with p=STAY, else draws by the catalogue's weights. A
request whose model is not loaded on its node waits for it to load, counted as bench/replay.py
counts it: LOAD_SECONDS_PER_GIB seconds per GiB of its file (the fake upstreams' rate there).

Catalogues: the README's example (the seed's five models and a synthetic Qwen3-235B-A22B on two
120Gi nodes, estimates from the real compiler on sparse GGUFs with the real shapes,
tests/gguf_shapes.py), and seeded synthetic ones (sizes drawn, files 80% of the estimate).

    python -m bench.placement [--requests 3000] [--write]
"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from halogen.compiler import fit
from halogen.compiler.placement import LOAD_SECONDS_PER_GIB, Need, NodePlan, Placement, arrange
from halogen.llamaswap.config import Config
from halogen.llamaswap.resolve import resolve
from halogen.runtime.scheduling.eviction import Eviction, eviction_for

RESULTS = Path(__file__).resolve().parent / "results" / "placement.md"
REPO = Path(__file__).resolve().parents[1]
GiB = 1024**3
STAY = 0.6


@dataclass(frozen=True)
class Catalogue:
    name: str
    budgets: dict[str, int]
    needs: list[Need]
    weights: dict[str, float]  # how often each model is asked for


def readme_example(tmp: Path) -> Catalogue:
    """The README's two-node example, its needs read by the compiler."""
    from halogen.compiler import placement
    from halogen.compiler.site.load import load
    from tests.gguf_shapes import QWEN3_235B_MODEL, SEED, fitted_site

    root = fitted_site(tmp, {**SEED, QWEN3_235B_MODEL[0]: QWEN3_235B_MODEL[1]})
    site = yaml.safe_load((root / "halogen.yaml").read_text())
    site.pop("memoryBudget")
    site["nodes"] = {
        "halo-a": {"memoryBudget": "120Gi", "frontDoor": True},
        "halo-b": {"memoryBudget": "120Gi"},
    }
    (root / "halogen.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    loaded, _ = load(root)
    assert loaded is not None
    # bench/replay.py's day: the 3B most, then 7B and gpt-oss-20b, 32B and DeepSeek now and then;
    # the 235B as often as the 32B.
    weights = {
        "qwen2.5-coder-3b-instruct-q4_k_m": 0.35,
        "qwen2.5-coder-7b-instruct-q5_k_m": 0.2,
        "gpt-oss-20b-q8_k_xl": 0.2,
        "qwen2.5-coder-32b-instruct-q5_k_m": 0.1,
        "deepseek-coder-v2-lite-instruct-q4_k_m": 0.05,
        QWEN3_235B_MODEL[0]: 0.1,
    }
    budgets = {n: 120 * GiB for n in site["nodes"]}
    return Catalogue(
        "README example: seed + Qwen3-235B, 2 x 120Gi", budgets, placement.needs(loaded), weights
    )


def synthetic(name: str, seed: int, budgets_gib: Sequence[int], count: int, largest: int) -> Catalogue:
    rng = random.Random(seed)
    nodes = {f"node-{i}": b * GiB for i, b in enumerate(budgets_gib)}
    needs = []
    weights = {}
    for i in range(count):
        size = rng.uniform(1.5, largest)
        model_id = f"m{i:02d}-{size:.0f}g"
        needs.append(Need(model_id, int(size * GiB), size * 0.8 * LOAD_SECONDS_PER_GIB, tuple(sorted(nodes))))
        weights[model_id] = 1 / (1 + rng.randrange(count)) ** 1.1  # a few models asked for most
    rng.shuffle(needs)  # the file order is by id: the naive placement sorts them again
    return Catalogue(name, nodes, needs, weights)


def naive(catalogue: Catalogue, splits_from: Placement) -> Placement:
    """File order, first fit; the same splits as halogen's."""
    plans = {n: NodePlan(n, b) for n, b in sorted(catalogue.budgets.items())}
    placement = Placement(plans, {}, dict(splits_from.splits))
    for split in splits_from.splits.values():
        for node, share in zip(split.helpers, split.shares[1:], strict=True):
            plans[node].held[split.model] = share
        plans[split.main].models.append(split.model)
        plans[split.main].sizes[split.model] = split.shares[0]
        placement.home[split.model] = split.main
    for need in sorted(catalogue.needs, key=lambda n: n.id):
        if need.id in placement.home:
            continue
        size = need.size or 0
        pool = need.candidates
        chosen = next((n for n in pool if plans[n].together + size <= plans[n].for_models), None)
        chosen = chosen or next((n for n in pool if size <= plans[n].for_models), None)
        if chosen is None:
            continue
        plans[chosen].models.append(need.id)
        plans[chosen].sizes[need.id] = size
        placement.home[need.id] = chosen
    return placement


def routers(placement: Placement, loads: Mapping[str, float]) -> dict[str, Eviction]:
    """Each node's router: the matrix halogen fits to what its own models may share."""
    out = {}
    for node, plan in placement.nodes.items():
        # Past fit.MAX_SETS the build would ask for groups; the solver itself takes any number.
        sets = fit.maximal_sets(plan.sizes, plan.for_models, limit=100_000)
        files = {m: int(loads[m] / LOAD_SECONDS_PER_GIB * GiB) for m in plan.sizes}
        models = {m: {"cmd": "server --port ${PORT}"} for m in plan.sizes}
        routing = (
            {"router": {"use": "matrix", "settings": {"matrix": fit.matrix(sets, files)}}} if sets else {}
        )
        out[node] = eviction_for(resolve(Config.model_validate({"models": models, "routing": routing})))
    return out


def day(catalogue: Catalogue, count: int, seed: int = 20250601) -> list[str]:
    rng = random.Random(seed)
    names = sorted(catalogue.weights)
    weights = [catalogue.weights[n] for n in names]
    out: list[str] = []
    for _ in range(count):
        out.append(out[-1] if out and rng.random() < STAY else rng.choices(names, weights)[0])
    return out


def replay(
    placement: Placement, catalogue: Catalogue, requests: Sequence[str]
) -> dict[str, tuple[int, float]]:
    """(loads, seconds waited) per node."""
    loads = {n.id: n.load for n in catalogue.needs}
    router = routers(placement, loads)
    running: dict[str, list[str]] = {n: [] for n in placement.nodes}
    out = {n: (0, 0.0) for n in placement.nodes}
    for model in requests:
        node = placement.home[model]
        if model in running[node]:
            continue
        admission = router[node].admit(model, running[node])
        running[node] = [m for m in running[node] if m not in admission.evict] + [model]
        starts, waited = out[node]
        out[node] = (starts + 1, waited + loads[model])
    return out


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(REPO)}")
    options = parser.parse_args(args)
    with tempfile.TemporaryDirectory() as tmp:
        catalogues = [
            readme_example(Path(tmp)),
            synthetic("16 models of 1.5-60 GiB, 3 nodes of 64/96/128Gi", 1, [64, 96, 128], 16, 60),
            synthetic("24 models of 1.5-40 GiB, 4 nodes of 120Gi", 2, [120, 120, 120, 120], 24, 40),
            synthetic("12 models of 1.5-90 GiB, 2 nodes of 120Gi", 3, [120, 120], 12, 90),
            synthetic("30 models of 1.5-25 GiB, 2 nodes of 110Gi", 4, [110, 110], 30, 25),
        ]
    lines = [
        "# Placement: halogen's against file order and first fit",
        "",
        f"`python -m bench.placement --requests {options.requests} --write`. Per catalogue, {options.requests} requests",
        f"(seeded; the next stays on the same model with p={STAY}). Loads: model starts on their node;",
        f"waited: each start at {LOAD_SECONDS_PER_GIB:g} s per GiB of its file, as bench/replay.py counts it. Each node",
        "routes with the matrix halogen fits to its budget, decided by the runtime's matrix router.",
        "",
        "| catalogue | placement | node: loads, waited | loads | waited | unplaced |",
        "|---|---|---|---:|---:|---:|",
    ]
    for catalogue in catalogues:
        mine, refused = arrange(catalogue.budgets, catalogue.needs)
        assert not refused, refused
        other = naive(catalogue, mine)
        sequence = day(catalogue, options.requests)
        for label, placed in (("halogen", mine), ("naive", other)):
            served = [m for m in sequence if m in placed.home]
            unplaced = sorted({n.id for n in catalogue.needs} - set(placed.home))
            got = replay(placed, catalogue, served)
            per_node = "; ".join(f"{n}: {s}, {w:,.0f} s" for n, (s, w) in got.items())
            total_starts = sum(s for s, _ in got.values())
            total = sum(w for _, w in got.values())
            row = f"| {catalogue.name} | {label} | {per_node} | {total_starts} | {total:,.0f} s | {len(unplaced)} |"
            print(row, flush=True)
            lines.append(row)
    lines += [
        "",
        "Unplaced: models the placement left without a node (naive first fit only; their requests are",
        "dropped from its replay, which flatters it). Split models are split alike in both.",
    ]
    if options.write:
        RESULTS.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
