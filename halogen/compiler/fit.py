"""Fitted routing: the llama-swap matrix whose sets are the largest combinations of models that
fit the memory budget. Pure and deterministic.

A llama-swap matrix set also permits each of its subsets (internal/matrix/doc.go, llama-swap), so
the maximal combinations are all it needs: every model that fits alone is in at least one of
them, and no set exceeds the budget. `evict_costs` is each model's load cost, its file size in
MiB, so llama-swap's solver (internal/router/matrix_solver.go: the set whose evictions cost least)
keeps the models that take longest to load. Vars are short names made from the model ids, as
llama-swap's schema wants them (`^[a-zA-Z0-9]{1,8}$`).

Models whose file is not in halogen.lock have no estimate and are in no set, which llama-swap
reads as "runs alone": loading one stops the others.

The number of maximal combinations grows fast with the number of models that fit together; past
MAX_SETS the build stops and asks for a narrower site (a smaller budget, groups of its own).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from halogen.compiler import facts
from halogen.compiler.site.load import Site
from halogen.diagnostics import Diagnostic
from halogen.llamaswap import config as ls

MAX_SETS = 100
"""More sets than this is not a matrix anyone reviews; the build stops with an error instead."""
MAX_STEPS = 2_000_000
MiB = 1024 * 1024


class TooManySets(Exception):
    def __init__(self, found: int) -> None:
        super().__init__(f"more than {found} combinations")
        self.found = found


@dataclass(frozen=True)
class FitSet:
    members: tuple[str, ...]  # sorted by size, largest first
    total: int


def maximal_sets(sizes: Mapping[str, int], budget: int, limit: int = MAX_SETS) -> list[FitSet]:
    """Every combination of models that fits `budget` and to which no other model can be added;
    models over the budget alone are left out. Largest total first, then by name."""
    ids = sorted((m for m in sizes if sizes[m] <= budget), key=lambda m: (-sizes[m], m))
    if not ids:  # nothing fits alone: no set (an empty one would be a matrix set with no members)
        return []
    suffix = [0] * (len(ids) + 1)
    for i in range(len(ids) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + sizes[ids[i]]
    found: list[FitSet] = []
    steps = 0
    chosen: list[str] = []
    excluded: list[int] = []

    def walk(i: int, total: int) -> None:
        nonlocal steps
        steps += 1
        if steps > MAX_STEPS:
            raise TooManySets(len(found))
        smallest_out = min(excluded) if excluded else None
        # Even with every remaining model in, the smallest one left out would still fit: not maximal.
        if smallest_out is not None and total + suffix[i] + smallest_out <= budget:
            return
        if i == len(ids):
            if smallest_out is None or total + smallest_out > budget:
                found.append(FitSet(tuple(chosen), total))
                if len(found) > limit:
                    raise TooManySets(limit)
            return
        size = sizes[ids[i]]
        if total + size <= budget:
            chosen.append(ids[i])
            walk(i + 1, total + size)
            chosen.pop()
        excluded.append(size)
        walk(i + 1, total)
        excluded.pop()

    walk(0, 0)
    return sorted(found, key=lambda s: (-s.total, [(-sizes[m], m) for m in s.members]))


def var_names(ids: Sequence[str]) -> dict[str, str]:
    """A short, readable var per model id: its leading word and its size (qwen7b, gpt20b),
    made unique with a digit."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for model_id in sorted(ids):
        words = [w for w in re.split(r"[^A-Za-z0-9]+", model_id) if w]
        head = re.sub(r"[0-9]+$", "", words[0]) if words else "m"
        size = next((w for w in words if re.fullmatch(r"[0-9]+[bBmM]", w)), "")
        base = (head[: 8 - len(size)] + size).lower() or "m"
        name, n = base, 1
        while name in taken:
            n += 1
            name = base[: 8 - len(str(n))] + str(n)
        taken.add(name)
        out[model_id] = name
    return out


def matrix(sets: Sequence[FitSet], load_bytes: Mapping[str, int]) -> dict[str, object]:
    """The `routing.router.settings.matrix` document: vars, evict_costs (MiB to load), sets."""
    members = sorted({m for s in sets for m in s.members})
    names = var_names(members)
    return {
        "vars": {names[m]: m for m in sorted(members, key=lambda m: names[m])},
        "evict_costs": {
            names[m]: max(1, -(-load_bytes.get(m, 0) // MiB)) for m in sorted(members, key=lambda m: names[m])
        },
        "sets": {f"fit{i}": " & ".join(names[m] for m in s.members) for i, s in enumerate(sets, 1)},
    }


def fitted(site: Site) -> tuple[ls.Router | None, list[Diagnostic]]:
    """The site's fitted router (llama-swap's `routing.router` with a matrix), when it declares a
    budget and no groups or matrix of its own; else None. Too many combinations is an error at
    the budget."""
    from halogen.compiler import budget as budgets

    found = budgets.budget_of(site)
    if site.spec.nodes:
        return None, []  # each node is fitted on its own view of the site (cluster.py)
    if found is None or site.spec.memoryBudget is None or site.spec.groups or site.spec.matrix is not None:
        return None, []
    estimates = budgets.needs(site)
    if not estimates:
        return None, []
    sizes = {m: e.total for m, e in estimates.items()}
    try:
        sets = maximal_sets(sizes, found.bytes)
    except TooManySets:
        return None, [
            site.doc.diagnostic(
                ("memoryBudget",),
                f"{len(sizes)} models make more than {MAX_SETS} combinations that fit "
                f"{budgets.gib(found.bytes)}: too many for a matrix anyone can review",
                "declare groups for the models that belong together, which turns fitted routing off, "
                "or lower memoryBudget",
            )
        ]
    if not sets:
        return None, []
    load = {}
    for model_id in sizes:
        path = facts.file_of(site, site.models[model_id])
        entry = site.lock.files.get(path) if path is not None else None
        load[model_id] = entry.size if entry is not None else sizes[model_id]
    settings = ls.RouterSettings(matrix=ls.Matrix.model_validate(matrix(sets, load)))
    return ls.Router(use="matrix", settings=settings), []
