"""What to do with one waiting request: a pure function of the requested model, what every model
is doing, the requests queued ahead of it, and the router. No processes, no asyncio, no clock.

This is the decision tree of llama-swap's FIFO scheduler (internal/router/scheduler/fifo.go,
`OnRequest` and `drainQueue`), with the Swapper (`swapper.py`) in the role of its `Effects`:

- a model that is ready, or starting (requests share that one start), serves the request;
- a model that is stopping, or draining (unloaded or replaced by a reload while it serves),
  takes no new request until it has stopped;
- a stopped model starts after the models the router evicts have stopped, unless one of them
  is busy (holding requests, or starting): a model serving a request is never stopped to make
  room, the request waits instead;
- a request is never served ahead of a waiting request queued before it whose model would
  have to stop the one it asks for (see `plan`), which bounds that earlier request's wait.

The queue itself (priority order, arrival order within a priority) is the Swapper's; the
planner sees the requests ahead of the one it decides on, in that order. It asks the router
`admit(target, running)` and never looks inside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from halogen.runtime.process.upstream import State
from halogen.runtime.scheduling.eviction import Eviction


@dataclass(frozen=True, slots=True)
class ModelView:
    """One model as the planner sees it."""

    phase: State = State.STOPPED
    holders: int = 0  # requests in flight on it, or waiting on the start they share
    queued: int = 0  # requests for it that hold nothing yet (the one decided on excluded)
    limit: int = 10  # concurrencyLimit: holders + queued beyond it are refused
    draining: bool = False  # unloaded or replaced while serving: takes no new request
    evicting: tuple[str, ...] = ()  # while starting: the models its start stops first

    @property
    def busy(self) -> bool:
        return self.holders > 0 or self.phase is State.STARTING


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every model, processes of a previous config still stopping (they may hold a port the
    new one needs), and whether the runtime is shutting down."""

    models: Mapping[str, ModelView]
    retiring: tuple[ModelView, ...] = ()
    refusing: bool = False

    def running(self) -> list[str]:
        """The running set the router is handed: every model not stopped (the targets of
        starts already committed to are `starting`), sorted, as llama-swap's `runningSet`."""
        return sorted(mid for mid, view in self.models.items() if view.phase is not State.STOPPED)


@dataclass(frozen=True)
class Serve:
    """Hold the model now: it is ready, or starting and the request shares that start."""


@dataclass(frozen=True)
class Wait:
    """Stay queued; decided again when anything changes. `reason` is for the log."""

    reason: str


@dataclass(frozen=True)
class Start:
    """Stop `evict` (and the retiring processes), then start the target, admitted by `rule`."""

    evict: tuple[str, ...]
    rule: str


@dataclass(frozen=True)
class Refuse:
    why: Literal["unknown", "overloaded", "closing"]
    message: str


Decision = Serve | Wait | Start | Refuse
SERVE = Serve()


def plan(
    target: str,
    snapshot: Snapshot,
    eviction: Eviction,
    ahead: Sequence[str] = (),
    *,
    arriving: bool = False,
) -> Decision:
    """The decision for one request for `target`.

    `ahead`: the models of the requests queued before this one that still wait, in queue
    order. `arriving`: the request is new, so the concurrency limit applies to it (a request
    already admitted is never refused for a limit a reload lowered).
    """
    view = snapshot.models.get(target)
    if view is None:
        return Refuse("unknown", f"model {target!r} not found")
    if snapshot.refusing:
        return Refuse("closing", "halogen is shutting down")
    if arriving and view.holders + view.queued >= view.limit:
        # llama-swap's FIFO `admit`: holders and waiters both reserve a slot.
        # (fifo_test.go: TestFIFO_ConcurrencyLimit_RejectsOverLimit, _QueuedWaitersReserveCapacity)
        return Refuse(
            "overloaded", f"model {target!r} is serving its limit of {view.limit} requests; retry later"
        )
    phase = view.phase
    if phase is State.STARTING:
        # One start serves every request for it (TestFIFO_JoinInFlightSwap).
        return SERVE
    if phase is State.STOPPING or (phase is State.READY and view.draining):
        return Wait(f"model {target!r} is stopping")
    if phase is State.READY:
        behind = _behind(target, snapshot.running(), eviction, ahead) if ahead else None
        return SERVE if behind is None else Wait(behind)
    # Stopped: make room, then start.
    if any(old.busy for old in snapshot.retiring):
        left = sum(old.holders for old in snapshot.retiring)
        return Wait(f"a process the config reload replaced is finishing {left} requests")
    starting = [mid for mid, other in snapshot.models.items() if other.phase is State.STARTING]
    for mid in starting:
        if target in snapshot.models[mid].evicting:
            # A start under way stops the target first: starting it again would undo that
            # (llama-swap's collidesWith; TestFIFO_QueueOnEvictionCollision).
            return Wait(f"the start of {mid!r} stops {target!r}")
    running = snapshot.running()
    admission = eviction.admit(target, running)
    busy = [mid for mid in admission.evict if snapshot.models[mid].busy]
    if busy:
        # Never stop a model that serves a request (TestFIFO_NoSwapWhileServing,
        # TestFIFO_QueueOnEvictionCollision): wait until it drains.
        names = ", ".join(repr(mid) for mid in busy)
        return Wait(f"{target!r} needs {names} stopped, which serve requests")
    after = sorted({*running, target} - set(admission.evict))
    for mid in starting:
        # Nor start beside a model being started whose own rules would not have let it start
        # beside this one (group rules are not symmetric: an exclusive group's member stops a
        # non-exclusive one, not the other way round). llama-swap starts both in parallel
        # here, and the exclusive model then runs beside a model it would have stopped.
        if target in eviction.admit(mid, after).evict:
            return Wait(f"{mid!r} is starting and would not run beside {target!r}")
    behind = _behind(target, after, eviction, ahead)
    if behind is not None:
        return Wait(behind)
    return Start(admission.evict, admission.rule)


def _behind(target: str, running: list[str], eviction: Eviction, ahead: Iterable[str]) -> str | None:
    """Why the request must stay behind one queued before it, or None.

    A request queued earlier for another model W, whose admission (with `target` running)
    would stop `target`, comes first: serving `target` now would keep it busy and W waiting
    for as long as requests for `target` keep arriving. llama-swap's FIFO serves a ready
    model by its fast path even then (fifo.go `OnRequest`, step 3), so there one busy model
    starves the other member of its swap group; here the queue order holds, as
    `TestFIFO_QueueCollation` lays out (A B C A B C is served A A B B C C: the second A
    arrives while the first is loading and joins it, but nothing overtakes a waiting B)."""
    for other in dict.fromkeys(ahead):
        if other != target and target in eviction.admit(other, running).evict:
            return f"behind a request for {other!r}, which needs {target!r} stopped"
    return None
