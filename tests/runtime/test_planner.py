"""The planner as a table: for each case, what every model is doing, the requests queued ahead,
the request, and the decision. Cases name the llama-swap test they come from
(internal/router/scheduler/fifo_test.go); the eviction policy is a stub with a fixed eviction set per
target, as that file's `stubPlanner`, unless the case routes with real groups or a matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from halogen.llamaswap.config import Config
from halogen.llamaswap.resolve import resolve
from halogen.runtime.process.upstream import State
from halogen.runtime.scheduling.eviction import Admission, Eviction, eviction_for
from halogen.runtime.scheduling.planner import Decision, ModelView, Refuse, Serve, Snapshot, Start, Wait, plan

STOPPED, STARTING, READY, STOPPING = State.STOPPED, State.STARTING, State.READY, State.STOPPING


@dataclass(frozen=True)
class StubEviction:
    """fifo_test.go's stubPlanner: a fixed eviction list per target, whatever runs, filtered
    to what runs (as a real policy only evicts running models)."""

    evict: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def admit(self, target: str, running: Sequence[str]) -> Admission:
        return Admission(tuple(m for m in self.evict.get(target, ()) if m in running), "stub")


@dataclass(frozen=True)
class Case:
    upstream: str  # the llama-swap test (or the halogen rule) the case comes from
    models: dict[str, ModelView]
    request: str
    decision: type[Decision] | Decision
    eviction: Eviction = StubEviction()
    ahead: tuple[str, ...] = ()
    arriving: bool = True
    retiring: tuple[ModelView, ...] = ()
    refusing: bool = False


def view(phase: State = STOPPED, **rest: Any) -> ModelView:
    return ModelView(phase=phase, **rest)


def group_eviction(groups: dict[str, Any]) -> Eviction:
    members = [m for g in groups.values() for m in g["members"]]
    models = {m: {"cmd": f"server --port ${{PORT}} --name {m}"} for m in members}
    return eviction_for(resolve(Config.model_validate({"models": models, "groups": groups})))


def matrix_eviction(sets: dict[str, str], models: Sequence[str]) -> Eviction:
    config = {
        "models": {m: {"cmd": f"server --port ${{PORT}} --name {m}"} for m in models},
        "routing": {"router": {"use": "matrix", "settings": {"matrix": {"sets": sets}}}},
    }
    return eviction_for(resolve(Config.model_validate(config)))


SWAP_AB = StubEviction({"a": ("b",), "b": ("a",)})

CASES = [
    Case("TestFIFO_FastPath", {"a": view(READY)}, "a", Serve()),
    Case("TestFIFO_ModelNotFound", {"a": view()}, "ghost", Refuse("unknown", "model 'ghost' not found")),
    Case("TestFIFO_OnDemandStartThenServe", {"a": view()}, "a", Start((), "stub")),
    Case("TestFIFO_JoinInFlightSwap", {"a": view(STARTING, holders=1)}, "a", Serve()),
    # b evicts a, which is being started for a request: b waits for that request to end.
    Case(
        "TestFIFO_QueueOnEvictionCollision",
        {"a": view(STARTING, holders=1), "b": view()},
        "b",
        Wait,
        StubEviction({"b": ("a",)}),
    ),
    Case(
        "TestFIFO_QueueOnEvictionCollision (a serving)",
        {"a": view(READY, holders=1), "b": view()},
        "b",
        Wait,
        StubEviction({"b": ("a",)}),
    ),
    Case(
        "TestFIFO_QueueOnEvictionCollision (a drained)",
        {"a": view(READY), "b": view()},
        "b",
        Start(("a",), "stub"),
        StubEviction({"b": ("a",)}),
    ),
    Case("TestFIFO_NoSwapWhileServing", {"a": view(READY, holders=2), "b": view()}, "b", Wait, SWAP_AB),
    Case(
        "TestFIFO_DisjointSwapsRunInParallel",
        {"a": view(STARTING, holders=1), "b": view()},
        "b",
        Start((), "stub"),
    ),
    Case(
        "TestFIFO_ConcurrencyLimit_RejectsOverLimit",
        {"a": view(READY, holders=2, limit=2)},
        "a",
        Refuse("overloaded", "model 'a' is serving its limit of 2 requests; retry later"),
    ),
    Case(
        "TestFIFO_ConcurrencyLimit_QueuedWaitersReserveCapacity",
        {"a": view(queued=2, limit=2), "b": view(READY, holders=1)},
        "a",
        Refuse,
        SWAP_AB,
    ),
    Case("TestFIFO_ConcurrencyLimit_SwapWaiters", {"a": view(STARTING, holders=2, limit=2)}, "a", Refuse),
    Case(
        "halogen: the limit applies when a request arrives, not again while it waits",
        {"a": view(READY, holders=2, limit=2)},
        "a",
        Serve(),
        arriving=False,
    ),
    Case("TestFIFO_OnShutdown_FailsAllWaiters", {"a": view(READY)}, "a", Refuse, refusing=True),
    Case("TestFIFO_OnUnload_DropsQueuedRequests (stopping)", {"a": view(STOPPING)}, "a", Wait),
    Case(
        "halogen: an unloaded model drains before it takes requests",
        {"a": view(READY, holders=1, draining=True)},
        "a",
        Wait,
    ),
    # Fairness (issue: one busy model starves the other member of its swap group).
    Case(
        "halogen fairness: a ready model waits behind a queued request that needs it stopped",
        {"a": view(READY, holders=3), "b": view(queued=1)},
        "a",
        Wait,
        SWAP_AB,
        ahead=("b",),
    ),
    Case(
        "halogen fairness: a queued request that does not need it stopped does not hold it back",
        {"a": view(READY, holders=3), "c": view(queued=1), "x": view(READY, holders=1)},
        "a",
        Serve(),
        StubEviction({"c": ("x",)}),
        ahead=("c",),
    ),
    Case(
        "halogen fairness: nothing starts that a request queued ahead would have to stop",
        {"a": view(READY, holders=1), "b": view(queued=1), "c": view()},
        "c",
        Wait,
        StubEviction({"b": ("a", "c"), "c": ()}),
        ahead=("b",),
    ),
    Case(
        "TestFIFO_QueueCollation: a start under way is shared even with a request queued ahead",
        {"a": view(STARTING, holders=1), "b": view(queued=1)},
        "a",
        Serve(),
        SWAP_AB,
        ahead=("b",),
    ),
    Case(
        "halogen: a process a reload replaced holds the port until its requests end",
        {"a": view()},
        "a",
        Wait,
        retiring=(view(READY, holders=1, draining=True),),
    ),
    Case(
        "halogen: an idle replaced process is stopped with the start",
        {"a": view()},
        "a",
        Start((), "stub"),
        retiring=(view(READY, draining=True),),
    ),
    # Real eviction policies behind the same seam.
    Case(
        "TestGroup_ServeHTTP_SwapStopsPrevious",
        {"a": view(READY), "b": view()},
        "b",
        Start(("a",), "g"),
        group_eviction({"g": {"swap": True, "exclusive": True, "members": ["a", "b"]}}),
    ),
    Case(
        "TestGroup_ServeHTTP_SwapStopsPrevious (a busy)",
        {"a": view(READY, holders=1), "b": view()},
        "b",
        Wait,
        group_eviction({"g": {"swap": True, "exclusive": True, "members": ["a", "b"]}}),
    ),
    Case(
        "TestMatrix_SwapEvictsConflicting",
        {"a": view(READY), "b": view()},
        "b",
        Start(("a",), "s_b"),
        matrix_eviction({"s_a": "a", "s_b": "b"}, ["a", "b"]),
    ),
    Case(
        "TestMatrix_CoexistInSet",
        {"a": view(READY), "b": view()},
        "b",
        Start((), "s_ab"),
        matrix_eviction({"s_ab": "a & b"}, ["a", "b"]),
    ),
    Case(
        "TestMatrix_IncompatibleQueues",
        {"a": view(READY, holders=1), "b": view()},
        "b",
        Wait,
        matrix_eviction({"s_a": "a", "s_b": "b"}, ["a", "b"]),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.upstream for c in CASES])
def test_the_planner_decides_as_llama_swaps_fifo_scheduler_does(case: Case) -> None:
    snapshot = Snapshot(case.models, case.retiring, case.refusing)
    got = plan(case.request, snapshot, case.eviction, case.ahead, arriving=case.arriving)
    if isinstance(case.decision, type):
        assert isinstance(got, case.decision), got
    else:
        assert got == case.decision


def test_a_refused_request_says_why() -> None:
    got = plan("a", Snapshot({"a": view(READY)}, refusing=True), StubEviction())
    assert got == Refuse("closing", "halogen is shutting down")


def test_a_wait_names_the_models_it_waits_for() -> None:
    got = plan("b", Snapshot({"a": view(READY, holders=1), "b": view()}), SWAP_AB)
    assert isinstance(got, Wait) and "'a'" in got.reason
    got = plan("a", Snapshot({"a": view(READY, holders=1), "b": view(queued=1)}), SWAP_AB, ("b",))
    assert isinstance(got, Wait) and got.reason == "behind a request for 'b', which needs 'a' stopped"
