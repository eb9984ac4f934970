"""Which target serves a request for a selector id. Pure: the caller passes each model's phase
and the spillover reservations it holds, and carries the choice out.

The strategies are llama-swap's (`internal/server/selector.go`):
- `pin`: always the first target;
- `warm`: the first ready target, else the first starting one, else the first (a cold start);
- `spillover`: fill the active targets (ready, starting, or holding reservations) up to
  `spillover` reservations each, least reserved first with ties taken in turn, then start the
  next cold target; when none is left, keep sharing the active ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from halogen.llamaswap.resolved import SelectorRule

# Phases as `halogen.runtime.process.upstream.State` spells them; a model missing from the mapping is
# stopped.
READY = "ready"
STARTING = "starting"
STOPPING = "stopping"
STOPPED = "stopped"


class NoTarget(Exception):
    """Every spillover target is stopping: llama-swap answers 503 with this message."""


@dataclass(frozen=True)
class Choice:
    target: str  # as the selector writes it (a model id or an alias): the request's new `model`
    model: str  # the model id it names
    reserve: bool = False  # spillover: count a reservation on `model` until the request ends
    took_turn: bool = False  # spillover: a tie was broken by `turn`; advance it


def choose(
    selector: SelectorRule,
    phases: Mapping[str, str],
    reserved: Mapping[str, int] | None = None,
    turn: int = 0,
) -> Choice:
    """The target for one request to `selector`. `phases` maps model ids to their phase,
    `reserved` counts the spillover requests each model holds (this selector's own count, as
    llama-swap keeps one per selector), `turn` breaks ties among equally reserved targets."""
    pairs = list(zip(selector.targets, selector.models, strict=True))
    if selector.strategy == "pin":
        return Choice(*pairs[0])
    if selector.strategy == "warm":
        for wanted in (READY, STARTING):
            for target, model in pairs:
                if phases.get(model, STOPPED) == wanted:
                    return Choice(target, model)
        return Choice(*pairs[0])
    return _spillover(selector, pairs, phases, reserved or {}, turn)


def _spillover(
    selector: SelectorRule,
    pairs: list[tuple[str, str]],
    phases: Mapping[str, str],
    reserved: Mapping[str, int],
    turn: int,
) -> Choice:
    active: list[tuple[str, str]] = []
    cold: list[tuple[str, str]] = []
    for target, model in pairs:
        phase = phases.get(model, STOPPED)
        if phase == STOPPING:
            continue
        if phase in (READY, STARTING) or reserved.get(model, 0) > 0:
            active.append((target, model))
        else:
            cold.append((target, model))
    if not active:
        if not cold:
            raise NoTarget(f"selector {selector.id!r} has no available spillover targets")
        return Choice(*cold[0], reserve=True)
    least = min(reserved.get(model, 0) for _, model in active)
    if least >= selector.spillover and cold:
        return Choice(*cold[0], reserve=True)
    tied = [pair for pair in active if reserved.get(pair[1], 0) == least]
    return Choice(*tied[turn % len(tied)], reserve=True, took_turn=True)
