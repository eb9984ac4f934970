"""The memory budget: how much the site's models may hold together, and the build's checks of it.

`memoryBudget` in halogen.yaml, or by default the pod's memory limit less the proxy's own share.
Each model's need is halogen.compiler.memory's estimate from its locked facts; models whose file is not
in halogen.lock are unknown and not counted (CI builds from the lock; a site without one is not
checked). Pure.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from halogen.compiler import facts, memory
from halogen.compiler.site.load import Site
from halogen.diagnostics import Diagnostic
from halogen.llamaswap.config import DEFAULT_GROUP
from halogen.llamaswap.matrix import Node, Program
from halogen.yamlio import Path_

GiB = 1024**3
BUDGET_ENV = "HALOGEN_MEMORY_BUDGET"  # read by halogen/runtime/apis/observed.py
PROXY_SHARE = 256 * 1024**2
"""What `halogen serve` itself may take: 53 MB idle, 54 MB after streams (bench/results/runtime.md),
with room for request bodies up to --max-body-bytes."""

_SUFFIX = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([-+]?[0-9]+))?([kMGTP]i?|Ki)?$")


MAX_BYTES = 2**63 - 1
"""The largest quantity Kubernetes holds: "no quantity may represent a number greater than 2^63-1"
(the Quantity type's comment, k8s.io/apimachinery pkg/api/resource/quantity.go)."""
_DIGITS = 40  # a quantity with more digits before its point than this is past MAX_BYTES anyway


def _amount(value: str | int) -> int | None:
    """The bytes a quantity states, or None when it is not one. Past MAX_BYTES the exact
    figure does not matter (MAX_BYTES + 1 stands for it): nothing is computed with an exponent
    of a million (`1e1000000` overflowed Decimal, `1e400` a float)."""
    if isinstance(value, int):
        return value if value >= 0 else None
    m = _QUANTITY.match(value.strip())
    if not m:
        return None
    try:
        mantissa = Decimal(m.group(1))
    except InvalidOperation:
        return None
    digits = (m.group(2) or "0").lstrip("+-").lstrip("0")
    exponent = int(digits or "0") if len(digits) <= 6 else 10**6  # past ±10^6 only the sign matters
    if (m.group(2) or "").startswith("-"):
        exponent = -exponent
    if not mantissa:
        return 0
    magnitude = mantissa.adjusted() + exponent
    if magnitude > _DIGITS:
        return MAX_BYTES + 1
    if magnitude < -_DIGITS:
        return 0
    return int(mantissa * (Decimal(10) ** exponent) * _SUFFIX[m.group(3) or ""])


def quantity_bytes(value: str | int) -> int | None:
    """A Kubernetes memory quantity (120Gi, 128G, 1.5Ti, 1e9, 1073741824) in bytes; None when it
    is not one, or is past what Kubernetes holds."""
    amount = _amount(value)
    return amount if amount is not None and amount <= MAX_BYTES else None


def too_large(value: str | int) -> str | None:
    """What is wrong with a quantity past MAX_BYTES, said for a diagnostic."""
    amount = _amount(value)
    if amount is None or amount <= MAX_BYTES:
        return None
    return f"{value!r} is more than the 2^63 - 1 bytes (8 EiB) a Kubernetes quantity may hold"


def gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


@dataclass(frozen=True)
class Budget:
    bytes: int
    where: Path_  # in halogen.yaml: memoryBudget, or the memory limit it was derived from
    derived: bool


def budget_of(site: Site) -> Budget | None:
    limit = site.spec.deployment.resources.limits.get("memory")
    if site.spec.memoryBudget is not None:
        amount = quantity_bytes(site.spec.memoryBudget)
        return Budget(amount, ("memoryBudget",), False) if amount is not None else None
    if limit is not None and (amount := quantity_bytes(limit)) is not None:
        return Budget(max(0, amount - PROXY_SHARE), ("deployment", "resources", "limits", "memory"), True)
    return None


def environment(site: Site) -> dict[str, str]:
    """What the Deployment tells `halogen serve` about the budget, for /metrics."""
    found = budget_of(site)
    return {BUDGET_ENV: str(found.bytes)} if found is not None else {}


def needs(site: Site) -> dict[str, memory.Estimate]:
    """The estimate of every model whose facts the lock knows."""
    out = {}
    for model_id in sorted(site.models):
        model = site.models[model_id]
        known = facts.facts_of(site, model)
        if known is not None:
            found = memory.estimate(known, facts.server_args(site, model), facts.server_env(site, model))
            share = site.shares.get(model_id)
            out[model_id] = found if share is None else _share(found, share)
    return out


def _share(whole: memory.Estimate, fraction: float) -> memory.Estimate:
    """What one node of a split model holds: llama.cpp splits layers, their weights and KV cache,
    by --tensor-split (src/llama-model.cpp), and each device keeps buffers of its own; taking the
    same fraction of every term is the estimate halogen makes of that."""
    part = {
        f.name: math.ceil(getattr(whole, f.name) * fraction)
        for f in dataclasses.fields(whole)
        if f.name != "context"
    }
    return dataclasses.replace(whole, **part)


def together(sizes: Mapping[str, int], members: Sequence[str], swap: bool) -> tuple[int, list[str]]:
    """What a group holds at most, and which members: the largest one if it swaps, else all."""
    known = [m for m in members if m in sizes]
    if not known:
        return 0, []
    if swap:
        big = max(known, key=lambda m: (sizes[m], m))
        return sizes[big], [big]
    return sum(sizes[m] for m in known), known


def check(site: Site) -> Iterator[Diagnostic]:
    if site.spec.nodes:
        return  # each node's budget is checked on that node's view of the site (cluster.py)
    written = site.spec.memoryBudget
    limit_text = site.spec.deployment.resources.limits.get("memory")
    large = False
    quantities: list[tuple[Path_, str | int | None]] = [
        (("memoryBudget",), written),
        (("deployment", "resources", "limits", "memory"), limit_text),
    ]
    for at, text in quantities:
        problem = too_large(text) if text is not None else None
        if problem is not None:
            large = True
            yield site.doc.diagnostic(at, problem, "write it in bytes or as e.g. 120Gi")
    if large:
        return
    if written is not None and quantity_bytes(written) is None:
        yield site.doc.diagnostic(
            ("memoryBudget",), f"{written!r} is not a memory size", "write it in bytes or as e.g. 120Gi"
        )
        return
    budget = budget_of(site)
    if budget is None:
        return
    where = (
        "memoryBudget"
        if not budget.derived
        else f"the pod's memory limit less {gib(PROXY_SHARE)} for the proxy"
    )
    limit = quantity_bytes(limit_text) if limit_text is not None else None
    if not budget.derived and limit is not None and limit < budget.bytes + PROXY_SHARE:
        yield site.doc.diagnostic(
            ("deployment", "resources", "limits", "memory"),
            f"the pod's memory limit {limit_text} ({gib(limit)}) is under the memoryBudget "
            f"{site.spec.memoryBudget} ({gib(budget.bytes)}) plus the proxy's {gib(PROXY_SHARE)}",
            f"raise the limit to at least {gib(budget.bytes + PROXY_SHARE)}, or lower memoryBudget",
        )
    estimates = needs(site)
    sizes = {m: e.total for m, e in estimates.items()}
    for model_id, est in estimates.items():
        if est.total > budget.bytes:
            model = site.models[model_id]
            key: Path_ = ("contextSize",) if model.spec.contextSize else ("file",)
            yield model.doc.diagnostic(
                key,
                f"needs {gib(est.total)} (weights {gib(est.weights)}, KV cache {gib(est.kv_cache)} at "
                f"{est.context} tokens, buffers {gib(est.output + est.compute + est.overhead)}), over the "
                f"budget of {gib(budget.bytes)} ({where})",
                "lower contextSize, quantize the KV cache with -ctk/-ctv q8_0, pick a smaller quantization, "
                "or raise the budget",
            )
    yield from _groups(site, budget, sizes, where)


def _groups(site: Site, budget: Budget, sizes: Mapping[str, int], where: str) -> Iterator[Diagnostic]:
    """llama-swap's group rules (runtime/scheduling/eviction.py's GroupEviction): a group that swaps holds one
    member at a time, one that does not holds all; an exclusive group stops every group that is
    not persistent. So at most one non-persistent exclusive group runs beside every non-exclusive
    and every persistent group."""
    groups = dict(site.spec.groups)
    members: dict[str, list[str]] = {}
    for model_id in sorted(site.models):
        members.setdefault(site.models[model_id].spec.group or DEFAULT_GROUP, []).append(model_id)
    held: dict[str, tuple[int, list[str]]] = {}
    for gid, ids in sorted(members.items()):
        rules = groups.get(gid)
        swap = rules.swap if rules else True
        held[gid] = together(sizes, ids, swap)
        if held[gid][0] > budget.bytes and len(held[gid][1]) > 1 and rules is not None:
            yield site.doc.diagnostic(
                ("groups", gid, "swap"),
                f"group {gid!r} runs its members together: {_listing(held[gid][1], sizes)} = "
                f"{gib(held[gid][0])}, over the budget of {gib(budget.bytes)} ({where})",
                "set swap: true, or split the group",
            )
    always = [
        g for g in held if g in groups and (not groups[g].exclusive or groups[g].persistent) and held[g][1]
    ]
    base = sum(held[g][0] for g in always)
    exclusive = [g for g in held if g not in always and held[g][1]]
    worst = max(exclusive, key=lambda g: (held[g][0], g)) if exclusive else None
    total = base + (held[worst][0] if worst else 0)
    running = [m for g in always for m in held[g][1]] + (held[worst][1] if worst else [])
    if len(always) + (worst is not None) > 1 and total > budget.bytes:
        blame = next(g for g in always if g in groups)
        rule = "persistent" if groups[blame].persistent else "exclusive"
        yield site.doc.diagnostic(
            ("groups", blame, rule),
            f"groups {', '.join(repr(g) for g in sorted({*always, *([worst] if worst else [])}))} can run "
            f"{_listing(running, sizes)} together = {gib(total)}, over the budget of {gib(budget.bytes)} ({where})",
            "make the groups exclusive and not persistent, or leave routing to the budget: no groups",
        )


def _listing(ids: Sequence[str], sizes: Mapping[str, int]) -> str:
    return " + ".join(f"{m} ({gib(sizes[m])})" for m in ids)


MAX_EXPANSION = 10_000


def _expand(node: Node, sizes: Mapping[str, int]) -> list[frozenset[str]]:
    """The concrete sets an expression allows, cut down to the models whose size is known, only
    the largest of them (llama-swap: a set permits its subsets; internal/matrix/doc.go)."""
    if node.kind == "leaf":
        return [frozenset({node.name} & sizes.keys())]
    if node.kind == "ref":
        return _expand(node.ref, sizes) if node.ref is not None else [frozenset()]
    if node.kind == "or":
        options = [s for child in node.children for s in _expand(child, sizes)]
    else:
        options = [frozenset()]
        for child in node.children:
            options = [a | b for a in options for b in _expand(child, sizes)][:MAX_EXPANSION]
    return [s for s in set(options) if not any(s < o for o in options)]


def matrix_check(site: Site, program: Program, sizes: Mapping[str, int]) -> Iterator[Diagnostic]:
    """A matrix set (hand-written, or any other) that lets models run together past the budget."""
    budget = budget_of(site)
    if budget is None:
        return
    for compiled in program.sets:
        for members in _expand(compiled.root, sizes):
            total = sum(sizes[m] for m in members)
            if total > budget.bytes:
                ordered = sorted(members, key=lambda m: (-sizes[m], m))
                where: Path_ = ("matrix", "sets", compiled.name) if site.spec.matrix else ("memoryBudget",)
                yield site.doc.diagnostic(
                    where,
                    f"matrix set {compiled.name!r} lets {_listing(ordered, sizes)} run together = "
                    f"{gib(total)}, over the budget of {gib(budget.bytes)}",
                    "split the set, or leave routing to the budget: no matrix or groups of the site's own",
                )
                break
