"""Where each model runs when the site declares several nodes. Pure and deterministic: the same
site gives the same placement, whatever order its files were read in.

Each model needs its estimate (halogen.compiler.memory, from halogen.lock) to fit its node's
`memoryBudget` on its own; the models of one node then share it through that node's own fitted
matrix (fit.py), as on a single box. So placement decides which models may stay loaded together:

1. Split models first. A model that names `split:` runs over those nodes; one that fits no node
   on its own (and names no `node:`) is split over the nodes with the most room until they hold
   it. Each node of a split gives it memory in proportion to the room it had left (its budget
   less the shares of splits placed before), so every node keeps the same fraction free; that
   share is charged to the node for good (a helper's rpc-server holds it whenever the model is
   loaded, and its own proxy cannot see when that is).
2. Then models pinned with `node:`.
3. Then the rest, the slowest to load first (its file's size at bench/replay.py's 4 s/GiB; ties
   by id): on the node whose room fits it most tightly (best fit decreasing, which keeps the
   most of the slow-to-load models loaded together), else, when it fits beside no node's other
   models, on the node with the most room, where it swaps with them. Only nodes that run the
   model's backend are candidates.

Models the lock does not know have no estimate: they go, after the others, to the candidate
node holding the fewest models (ties by node id), and their memory is not checked (coverage.py
says so).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from halogen.compiler import budget as budgets
from halogen.compiler import facts
from halogen.compiler.budget import gib
from halogen.compiler.site.load import Site
from halogen.compiler.site.nodes import backend_of, node_backends
from halogen.diagnostics import Diagnostic

LOAD_SECONDS_PER_GIB = 4.0
"""What loading a model costs, per GiB of its file: bench/replay.py's model of the box."""


@dataclass(frozen=True)
class Split:
    """A model run over several nodes: llama-server on the first, an rpc-server on the others."""

    model: str
    nodes: tuple[str, ...]  # the main node first
    weights: tuple[int, ...]  # each node's room when the split was placed: the proportions
    shares: tuple[int, ...]  # bytes each node holds (0 when the model's estimate is unknown)

    def fraction(self, node: str) -> float:
        return self.weights[self.nodes.index(node)] / sum(self.weights)

    @property
    def main(self) -> str:
        return self.nodes[0]

    @property
    def helpers(self) -> tuple[str, ...]:
        return self.nodes[1:]


@dataclass
class NodePlan:
    id: str
    budget: int
    held: dict[str, int] = field(default_factory=dict)  # split shares of models another node runs
    models: list[str] = field(default_factory=list)  # what its proxy runs (split mains included)
    sizes: dict[str, int] = field(default_factory=dict)  # what each of them holds here

    @property
    def for_models(self) -> int:
        """The budget its own proxy's models share: what the rpc-server's shares leave."""
        return self.budget - sum(self.held.values())

    @property
    def together(self) -> int:
        return sum(self.sizes.values())


@dataclass(frozen=True)
class Placement:
    nodes: dict[str, NodePlan]
    home: dict[str, str]  # model id -> the node whose proxy runs it
    splits: dict[str, Split]

    def helped_by(self, node: str) -> list[Split]:
        """The splits whose rpc-server runs on `node`, by model id."""
        return [s for _, s in sorted(self.splits.items()) if node in s.helpers]


def load_seconds(site: Site, model_id: str, size: int) -> float:
    """How long the model takes to load, from its file's size in halogen.lock (else its estimate)."""
    path = facts.file_of(site, site.models[model_id])
    entry = site.lock.files.get(path) if path is not None else None
    return (entry.size if entry is not None else size) / budgets.GiB * LOAD_SECONDS_PER_GIB


def order(site: Site, sizes: Mapping[str, int]) -> list[str]:
    """Models with an estimate, the slowest to load first; ties by id."""
    return sorted(sizes, key=lambda m: (-load_seconds(site, m, sizes[m]), m))


def _budgets(site: Site) -> tuple[dict[str, int], list[Diagnostic]]:
    found: dict[str, int] = {}
    problems = []
    for node_id in sorted(site.spec.nodes):
        text = site.spec.nodes[node_id].memoryBudget
        amount = budgets.quantity_bytes(text)
        if amount is None:
            problems.append(
                site.doc.diagnostic(
                    ("nodes", node_id, "memoryBudget"),
                    budgets.too_large(text) or f"{text!r} is not a memory size",
                    "write it in bytes or as e.g. 110Gi",
                )
            )
        else:
            found[node_id] = amount
    return found, problems


def place(site: Site) -> tuple[Placement | None, list[Diagnostic]]:
    """The placement of every model, or None and why it cannot be made, with the numbers."""
    amounts, problems = _budgets(site)
    if problems:
        return None, problems
    sizes = {m: e.total for m, e in budgets.needs(site).items()}
    plans = {n: NodePlan(n, amounts[n]) for n in sorted(amounts)}
    placement = Placement(plans, {}, {})
    candidates = {
        m: [n for n in sorted(plans) if backend_of(site, model) in node_backends(site, n)]
        for m, model in site.models.items()
    }
    slowest = order(site, sizes)
    unknown = sorted(m for m in site.models if m not in sizes)
    refused: set[str] = set()
    # 1. Splits: named ones, then models no node holds alone.
    for model_id in [
        *(m for m in slowest if site.models[m].spec.split),
        *(m for m in unknown if site.models[m].spec.split),
    ]:
        problems += _split(
            site, placement, model_id, tuple(site.models[model_id].spec.split or ()), sizes.get(model_id)
        )
    for model_id in slowest:
        spec = site.models[model_id].spec
        if spec.split or spec.node or not candidates[model_id]:
            continue
        if sizes[model_id] > max(plans[n].for_models for n in candidates[model_id]):
            nodes = _widest(placement, candidates[model_id], sizes[model_id])
            if nodes is None or spec.cmd is not None:
                problems.append(_nowhere(site, placement, model_id, sizes[model_id], candidates[model_id]))
                refused.add(model_id)
            else:
                problems += _split(site, placement, model_id, nodes, sizes[model_id])
    # 2. Pinned models, 3. the rest, slowest first; then those of unknown size.
    for model_id in [*(m for m in slowest if site.models[m].spec.node), *slowest]:
        spec = site.models[model_id].spec
        if model_id in placement.home or model_id in refused or not candidates[model_id]:
            continue  # placed already (pinned, or split), refused, or no node runs its backend
        pool = [spec.node] if spec.node else candidates[model_id]
        chosen = _best_fit(placement, pool, sizes[model_id])
        if chosen is None:
            refused.add(model_id)
            problems.append(_nowhere(site, placement, model_id, sizes[model_id], pool))
            continue
        _put(placement, model_id, chosen, sizes[model_id])
    for model_id in unknown:
        spec = site.models[model_id].spec
        if model_id in placement.home:
            continue
        pool = [spec.node] if spec.node else candidates[model_id]
        if not pool:
            continue  # the backend check said why
        chosen = min(pool, key=lambda n: (len(plans[n].models), n))
        plans[chosen].models.append(model_id)
        placement.home[model_id] = chosen
    return (None, problems) if problems else (placement, [])


def _put(placement: Placement, model_id: str, node: str, size: int) -> None:
    plan = placement.nodes[node]
    plan.models.append(model_id)
    plan.sizes[model_id] = size
    placement.home[model_id] = node


def _best_fit(placement: Placement, pool: Sequence[str], size: int) -> str | None:
    """The node whose room beside its models fits `size` most tightly; else the one with the
    most room where it fits alone (it swaps with the others there); else None."""
    plans = placement.nodes
    beside = [n for n in pool if plans[n].together + size <= plans[n].for_models]
    if beside:
        return min(beside, key=lambda n: (plans[n].for_models - plans[n].together - size, n))
    alone = [n for n in pool if size <= plans[n].for_models]
    if alone:
        return min(alone, key=lambda n: (plans[n].together - plans[n].for_models, n))
    return None


def _widest(placement: Placement, pool: Sequence[str], size: int) -> tuple[str, ...] | None:
    """The fewest nodes, those with the most room first, whose room together holds `size`."""
    plans = placement.nodes
    chosen: list[str] = []
    room = 0
    for node in sorted(pool, key=lambda n: (-plans[n].for_models, n)):
        if plans[node].for_models <= 0:
            break
        chosen.append(node)
        room += plans[node].for_models
        if room >= size and len(chosen) > 1:
            return tuple(chosen)
    return None


def _split(
    site: Site, placement: Placement, model_id: str, nodes: tuple[str, ...], size: int | None
) -> list[Diagnostic]:
    plans = placement.nodes
    weights = tuple(max(0, plans[n].for_models) for n in nodes)
    model = site.models[model_id]
    if not all(weights):
        empty = [n for n, w in zip(nodes, weights, strict=True) if not w]
        return [
            model.doc.diagnostic(
                ("split",),
                f"node {empty[0]!r} has no room left for a share of it: {_rooms(placement, nodes)}",
                "split it over other nodes, or raise the nodes' memoryBudget",
            )
        ]
    total = sum(weights)
    shares = tuple(-(-(size or 0) * w // total) for w in weights)
    short = [
        (n, s - plans[n].for_models) for n, s in zip(nodes, shares, strict=True) if s > plans[n].for_models
    ]
    if short:
        return [
            model.doc.diagnostic(
                ("split",) if model.spec.split else ("file",),
                f"needs {gib(size or 0)}, more than its nodes hold together: {_rooms(placement, nodes)}",
                "raise the nodes' memoryBudget, add a node to `split`, lower contextSize or pick a smaller "
                "quantization",
            )
        ]
    split = Split(model_id, nodes, weights, shares)
    placement.splits[model_id] = split
    for node, share in zip(nodes[1:], shares[1:], strict=True):
        plans[node].held[model_id] = share
    _put(placement, model_id, nodes[0], shares[0])
    # The main node's share is its own proxy's model; it must also fit beside nothing else.
    return []


def _rooms(placement: Placement, nodes: Sequence[str], size: int | None = None) -> str:
    """Each node's numbers: budget, split shares held for other nodes, models placed, room, and
    by how much `size` misses it."""
    parts = []
    for node in nodes:
        plan = placement.nodes[node]
        held = sum(plan.held.values())
        placed = (
            f"{len(plan.models)} model{'s' if len(plan.models) != 1 else ''} placed ({gib(plan.together)})"
        )
        text = f"{node}: budget {gib(plan.budget)}"
        if held:
            text += f", {gib(held)} held for split models' shares"
        text += f", {placed}, room for one model {gib(max(0, plan.for_models))}"
        if size is not None and size > plan.for_models:
            text += f", {gib(size - max(0, plan.for_models))} short"
        parts.append(text)
    return "; ".join(parts)


def _nowhere(site: Site, placement: Placement, model_id: str, size: int, pool: Sequence[str]) -> Diagnostic:
    model = site.models[model_id]
    key = ("node",) if model.spec.node else ("contextSize",) if model.spec.contextSize else ("file",)
    where = _rooms(placement, pool, size) if pool else "no node runs its backend"
    return model.doc.diagnostic(
        key,
        f"needs {gib(size)} and fits on no node: {where}",
        "raise a node's memoryBudget, split it over several nodes (`split: [main, helper]`), lower contextSize, "
        "or pick a smaller quantization" + (", or pin it to another node" if model.spec.node else ""),
    )


def summary(placement: Placement) -> Iterator[str]:
    """One line per node, for the build's report."""
    for node_id, plan in placement.nodes.items():
        held = ", ".join(f"{m} ({gib(s)})" for m, s in sorted(plan.held.items()))
        models = ", ".join(plan.models) or "no models"
        yield f"{node_id}: {models}" + (f"; rpc-server for {held}" if held else "")
