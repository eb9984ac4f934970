"""Eviction: which running models must stop before a target may run. Pure: no processes, no I/O.

llama-swap calls these policies Swappers, and the config key that picks one `routing.router`;
here they are evictions, so that "router" and "swapper" each name one thing. The seam is
llama-swap's `Swapper.EvictionFor(target, running)` (internal/router/scheduler/scheduler.go): a
policy is handed the complete running set (models not stopped, plus targets of starts already
committed to) and answers with the models to evict, and the rule that admitted the target,
which `/running` shows. `GroupEviction` is llama-swap's `groupSwapper` (internal/router/
group.go); `MatrixEviction` is its matrix solver (internal/router/matrix*.go)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from halogen.llamaswap.config import Group
from halogen.llamaswap.matrix import Program
from halogen.llamaswap.resolved import Resolved, Runnable


@dataclass(frozen=True)
class Admission:
    """The router's answer for one target: stop `evict` (in this order), then the target runs
    under `rule` (a group id, or a matrix set's name)."""

    evict: tuple[str, ...]
    rule: str


class Eviction(Protocol):
    def admit(self, target: str, running: Sequence[str]) -> Admission: ...


@dataclass(frozen=True)
class GroupEviction:
    """llama-swap's groups. For every other running model M: same group with `swap` → stop; a
    different group while the target's group is `exclusive` → stop unless M's group is
    `persistent`; else keep. A group missing from `groups` gets llama-swap's defaults (swap,
    exclusive, not persistent), which are also the rules of the implicit (default) group."""

    models: Mapping[str, Runnable]
    groups: Mapping[str, Group]

    def admit(self, target: str, running: Sequence[str]) -> Admission:
        target_group = self.models[target].group
        rules = self.groups.get(target_group, Group())
        evict: list[str] = []
        for other in running:
            if other == target or other not in self.models or other in evict:
                continue
            other_group = self.models[other].group
            if other_group == target_group:
                if rules.swap:
                    evict.append(other)
            elif rules.exclusive and not self.groups.get(other_group, Group()).persistent:
                evict.append(other)
        return Admission(tuple(evict), target_group)


@dataclass(frozen=True)
class MatrixEviction:
    """llama-swap's matrix solver: among the sets (in the order the solver tries them) that
    allow the target, the one whose running models outside it cost least to evict, ties to the
    first; a target already running evicts nothing; a target in no set runs alone. `rule` is the
    set's name, "" when the target runs alone."""

    program: Program
    evict_costs: Mapping[str, int]

    def admit(self, target: str, running: Sequence[str]) -> Admission:
        decision = self.program.solve(target, list(dict.fromkeys(running)), self.evict_costs)
        return Admission(decision.evict, decision.set_name)


def eviction_for(resolved: Resolved) -> Eviction:
    """The router a config asks for."""
    if resolved.matrix is not None:
        return MatrixEviction(resolved.matrix.program, resolved.matrix.evict_costs)
    return GroupEviction(resolved.models, resolved.groups)
