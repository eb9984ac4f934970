"""The fit, for people and programs: each model's estimate against the budget, the sets that may
run together, and the pairs that never do, with what they would need. Pure.

The same figures as the build's checks (budget.needs) and its matrix (fit.maximal_sets): a set of
llama-swap's matrix also permits each of its subsets, so two models never run together exactly
when together they need more than the budget.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from halogen.compiler import budget as budgets
from halogen.compiler import coverage, fit, memory, placement
from halogen.compiler.placement import Placement
from halogen.compiler.site.load import Site
from halogen.compiler.site.lock import LOCK_FILE

Routing = Literal["fitted", "groups", "matrix", "one at a time"]
MiB = 1024 * 1024


@dataclass(frozen=True)
class Row:
    model: str
    estimate: memory.Estimate | None  # None: not in the lock, memory unknown


@dataclass(frozen=True)
class Apart:
    models: tuple[str, str]
    total: int


@dataclass(frozen=True)
class Report:
    budget: budgets.Budget | None
    routing: Routing
    rows: tuple[Row, ...]
    sets: tuple[fit.FitSet, ...]
    apart: tuple[Apart, ...]
    too_many_sets: bool = False

    @property
    def unknown(self) -> list[str]:
        return [r.model for r in self.rows if r.estimate is None]


def _routing(site: Site) -> Routing:
    if site.spec.matrix is not None:
        return "matrix"
    if site.spec.groups:
        return "groups"
    return "fitted" if coverage.fitted(site) else "one at a time"


def report(site: Site) -> Report:
    """The fit of a site that compiles."""
    budget = budgets.budget_of(site)
    estimates = budgets.needs(site)
    rows = tuple(Row(m, estimates.get(m)) for m in sorted(site.models))
    sizes = {m: e.total for m, e in estimates.items()}
    routing = _routing(site)
    sets: list[fit.FitSet] = []
    too_many = False
    if routing == "fitted" and budget is not None:
        try:
            sets = fit.maximal_sets(sizes, budget.bytes)
        except fit.TooManySets:
            too_many = True
    apart = []
    if budget is not None:
        for a, b in itertools.combinations(sorted(sizes, key=lambda m: (-sizes[m], m)), 2):
            if sizes[a] + sizes[b] > budget.bytes:
                apart.append(Apart((a, b), sizes[a] + sizes[b]))
    return Report(budget, routing, rows, tuple(sets), tuple(apart), too_many)


def size(n: int) -> str:
    """GiB with one decimal; MiB below 1 GiB, where a tenth of a GiB says nothing."""
    return budgets.gib(n) if n >= budgets.GiB else f"{n / MiB:.0f} MiB"


def _budget_line(r: Report) -> str:
    if r.budget is None:
        return "no memory budget: set memoryBudget or the pod's memory limit to check the fit"
    where = (
        "memoryBudget"
        if not r.budget.derived
        else f"the pod's memory limit less {size(budgets.PROXY_SHARE)} for the proxy"
    )
    return f"memory budget {size(r.budget.bytes)} ({where}); routing: {r.routing}"


def text(r: Report) -> str:
    """The report as a table for a terminal."""
    head = ("model", "weights", "KV cache", "context", "buffers", "total", "of budget")
    table: list[tuple[str, ...]] = [head]
    notes: list[str] = []
    for row in r.rows:
        e = row.estimate
        if e is None:
            alone = ", runs alone" if r.routing == "fitted" else ""
            notes.append(f"{row.model}: not in {LOCK_FILE}, memory not checked{alone}")
            continue
        share = f"{100 * e.total / r.budget.bytes:.0f}%" if r.budget is not None and r.budget.bytes else "-"
        buffers = e.output + e.compute + e.overhead
        table.append(
            (
                row.model,
                size(e.weights),
                size(e.kv_cache),
                str(e.context),
                size(buffers),
                size(e.total),
                share,
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(head))]
    lines = [_budget_line(r), ""]
    for line in table:
        cells = [line[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True))]
        lines.append("  ".join(cells).rstrip())
    lines += notes
    if r.routing == "fitted":
        lines += ["", "sets (the models of a set may run together):"]
        if r.too_many_sets:
            lines.append(f"  more than {fit.MAX_SETS}: the build refuses this site")
        for i, s in enumerate(r.sets, 1):
            lines.append(f"  fit{i}: {' + '.join(s.members)} = {size(s.total)}")
    if r.apart:
        title = "never run together" if r.routing == "fitted" else "too big to run together"
        lines += ["", f"{title} (what the two would need):"]
        lines += [f"  {a} + {b}: {size(t)}" for (a, b), t in ((x.models, x.total) for x in r.apart)]
    return "\n".join(lines) + "\n"


def document(r: Report) -> dict[str, Any]:
    """The report for programs: sizes in bytes."""
    models: list[dict[str, Any]] = []
    for row in r.rows:
        e = row.estimate
        if e is None:
            models.append({"id": row.model, "locked": False})
            continue
        models.append(
            {
                "id": row.model,
                "locked": True,
                "weights": e.weights,
                "kvCache": e.kv_cache,
                "context": e.context,
                "buffers": e.output + e.compute + e.overhead,
                "total": e.total,
            }
        )
    budget = None
    if r.budget is not None:
        budget = {
            "bytes": r.budget.bytes,
            "from": ".".join(map(str, r.budget.where)),
            "derived": r.budget.derived,
        }
    return {
        "budget": budget,
        "routing": r.routing,
        "models": models,
        "sets": [
            {"name": f"fit{i}", "models": list(s.members), "total": s.total} for i, s in enumerate(r.sets, 1)
        ],
        "apart": [{"models": list(a.models), "total": a.total} for a in r.apart],
        "unknown": r.unknown,
    }


def nodes_text(views: Mapping[str, Site], placed: Placement) -> str:
    """The fit of each node of a site with several, after where the models went."""
    lines = ["placement:", *(f"  {line}" for line in placement.summary(placed))]
    for node_id, view in views.items():
        lines += ["", f"node {node_id}:", text(report(view)).rstrip("\n")]
    return "\n".join(lines) + "\n"


def nodes_document(views: Mapping[str, Site], placed: Placement) -> dict[str, Any]:
    return {
        "placement": {
            "home": dict(sorted(placed.home.items())),
            "splits": {
                m: {"nodes": list(s.nodes), "shares": list(s.shares)}
                for m, s in sorted(placed.splits.items())
            },
        },
        "nodes": {node_id: document(report(view)) for node_id, view in views.items()},
    }
