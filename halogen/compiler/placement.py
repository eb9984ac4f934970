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
   by id): on the node with the most room left beside the models placed there (worst fit
   decreasing: the slow-to-load models spread out and each node keeps room for the small ones),
   else, when it fits beside no node's models, on the node with the most room, where it swaps
   with them. Only nodes that run the model's backend are candidates.

Models the lock does not know have no estimate: they go, after the others, to the candidate
node holding the fewest models (ties by node id), and their memory is not checked (coverage.py
says so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from halogen.compiler import budget as budgets
from halogen.compiler import facts
from halogen.compiler.budget import gib
from halogen.compiler.site.checks import backend_of
from halogen.compiler.site.load import Site
from halogen.compiler.site.nodes import node_backends
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


@dataclass(frozen=True)
class Need:
    """What placement knows of one model."""

    id: str
    size: int | None  # its estimate in bytes; None when halogen.lock does not know its file
    load: float  # seconds to load it
    candidates: tuple[str, ...]  # the nodes that run its backend, in id order
    node: str | None = None  # `node:`
    split: tuple[str, ...] | None = None  # `split:`
    splittable: bool = True  # a raw `cmd` cannot be given --rpc


@dataclass(frozen=True)
class Refusal:
    """A model placement could not place, and the numbers of the nodes it tried."""

    model: str
    size: int
    nodes: tuple[str, ...]
    split: bool  # it was to be split over `nodes`, which together hold too little
    numbers: str


def load_seconds(site: Site, model_id: str, size: int) -> float:
    """How long the model takes to load, from its file's size in halogen.lock (else its estimate)."""
    path = facts.file_of(site, site.models[model_id])
    entry = site.lock.files.get(path) if path is not None else None
    return (entry.size if entry is not None else size) / budgets.GiB * LOAD_SECONDS_PER_GIB


def arrange(amounts: Mapping[str, int], needs: Sequence[Need]) -> tuple[Placement, list[Refusal]]:
    """The placement of `needs` on nodes of `amounts` bytes each; pure. Whatever it could not
    place is refused, with the numbers."""
    plans = {n: NodePlan(n, amounts[n]) for n in sorted(amounts)}
    placement = Placement(plans, {}, {})
    by_id = {need.id: need for need in needs}
    slowest = [n.id for n in sorted((n for n in needs if n.size is not None), key=lambda n: (-n.load, n.id))]
    unknown = sorted(n.id for n in needs if n.size is None)
    refused: list[Refusal] = []
    # 1. Splits: named ones, then models no node holds alone.
    for model_id in [*(m for m in slowest if by_id[m].split), *(m for m in unknown if by_id[m].split)]:
        need = by_id[model_id]
        refusal = _split(placement, need, need.split or ())
        if refusal is not None:
            refused.append(refusal)
    for model_id in slowest:
        need = by_id[model_id]
        size = need.size or 0
        if need.split or need.node or not need.candidates:
            continue
        if size > max(plans[n].for_models for n in need.candidates):
            nodes = _widest(placement, need.candidates, size)
            if nodes is None or not need.splittable:
                refused.append(
                    Refusal(model_id, size, need.candidates, False, _rooms(placement, need.candidates, size))
                )
            elif (refusal := _split(placement, need, nodes)) is not None:
                refused.append(refusal)
    # 2. Pinned models, 3. the rest, slowest first; then those of unknown size.
    done = {r.model for r in refused}
    for model_id in [*(m for m in slowest if by_id[m].node), *slowest]:
        need = by_id[model_id]
        if model_id in placement.home or model_id in done or not need.candidates:
            continue  # placed already (pinned, or split), refused, or no node runs its backend
        pool = (need.node,) if need.node else need.candidates
        chosen = _roomiest(placement, pool, need.size or 0)
        if chosen is None:
            done.add(model_id)
            refused.append(Refusal(model_id, need.size or 0, pool, False, _rooms(placement, pool, need.size)))
            continue
        _put(placement, model_id, chosen, need.size or 0)
    for model_id in unknown:
        need = by_id[model_id]
        pool = (need.node,) if need.node else need.candidates
        if model_id in placement.home or not pool:
            continue  # split, or no node runs its backend: the checks said why
        chosen = min(pool, key=lambda n: (len(plans[n].models), n))
        plans[chosen].models.append(model_id)
        placement.home[model_id] = chosen
    return placement, refused


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


def needs(site: Site) -> list[Need]:
    """What placement knows of each model of the site."""
    sizes = {m: e.total for m, e in budgets.needs(site).items()}
    out = []
    for model_id in sorted(site.models):
        model = site.models[model_id]
        size = sizes.get(model_id)
        backend = backend_of(site, model)
        out.append(
            Need(
                model_id,
                size,
                load_seconds(site, model_id, size or 0),
                tuple(n for n in sorted(site.spec.nodes) if backend in node_backends(site, n)),
                model.spec.node,
                tuple(model.spec.split) if model.spec.split else None,
                model.spec.cmd is None,
            )
        )
    return out


def place(site: Site) -> tuple[Placement | None, list[Diagnostic]]:
    """The placement of every model, or None and why it cannot be made, with the numbers."""
    amounts, problems = _budgets(site)
    if problems:
        return None, problems
    placement, refused = arrange(amounts, needs(site))
    for refusal in refused:
        model = site.models[refusal.model]
        if refusal.split:
            problems.append(
                model.doc.diagnostic(
                    ("split",) if model.spec.split else ("file",),
                    f"needs {gib(refusal.size)}, more than its nodes hold together: {refusal.numbers}",
                    "raise the nodes' memoryBudget, add a node to `split`, lower contextSize or pick a "
                    "smaller quantization",
                )
            )
        else:
            key = ("node",) if model.spec.node else ("contextSize",) if model.spec.contextSize else ("file",)
            problems.append(
                model.doc.diagnostic(
                    key,
                    f"needs {gib(refusal.size)} and fits on no node: {refusal.numbers or 'no node runs its backend'}",
                    "raise a node's memoryBudget, split it over several nodes with `split: [main, helper]`, lower "
                    "contextSize, or pick a smaller quantization"
                    + (", or pin it to another node" if model.spec.node else ""),
                )
            )
    return (None, problems) if problems else (placement, [])


def _put(placement: Placement, model_id: str, node: str, size: int) -> None:
    plan = placement.nodes[node]
    plan.models.append(model_id)
    plan.sizes[model_id] = size
    placement.home[model_id] = node


def _roomiest(placement: Placement, pool: Sequence[str], size: int) -> str | None:
    """The node with the most room left beside its models once `size` is in (worst fit: the
    slow-to-load models spread over the nodes, and each keeps room for the small ones that
    follow; bench/placement.py measured it against best fit); else the one with the most room
    where it fits alone (it swaps with the others there); else None. Ties go to the first id."""
    plans = placement.nodes
    beside = [n for n in pool if plans[n].together + size <= plans[n].for_models]
    if beside:
        return min(beside, key=lambda n: (plans[n].together - plans[n].for_models, n))
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


def _split(placement: Placement, need: Need, nodes: tuple[str, ...]) -> Refusal | None:
    plans = placement.nodes
    weights = tuple(max(0, plans[n].for_models) for n in nodes)
    size = need.size or 0
    total = sum(weights)
    shares = tuple(-(-size * w // total) for w in weights) if total else weights
    if not all(weights) or any(s > plans[n].for_models for n, s in zip(nodes, shares, strict=True)):
        return Refusal(need.id, size, nodes, True, _rooms(placement, nodes, max(shares, default=0) or None))
    split = Split(need.id, nodes, weights, shares)
    placement.splits[need.id] = split
    for node, share in zip(nodes[1:], shares[1:], strict=True):
        plans[node].held[need.id] = share
    _put(placement, need.id, nodes[0], shares[0])
    return None


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


def summary(placement: Placement) -> list[str]:
    """Where the models went, a line per node and per split, for `halogen build` and `halogen fit`."""
    lines = []
    for node_id, plan in placement.nodes.items():
        models = ", ".join(sorted(plan.models)) or "no model"
        line = f"{node_id} (budget {gib(plan.budget)}): {models}"
        if plan.held:
            held = ", ".join(f"{m} {gib(s)}" for m, s in sorted(plan.held.items()))
            line += f"; its rpc-server holds {held}, leaving {gib(plan.for_models)} to its own models"
        lines.append(line)
    for model_id, split in sorted(placement.splits.items()):
        parts = [f"{n} {gib(s)}" for n, s in zip(split.nodes, split.shares, strict=True)]
        lines.append(
            f"{model_id}: split, llama-server on {split.main} with {parts[0].split(' ', 1)[1]}, "
            f"rpc-server on {', '.join(parts[1:])}"
        )
    return lines
