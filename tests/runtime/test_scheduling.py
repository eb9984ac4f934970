"""The Swapper carrying out the planner's decisions, against fake processes made by its upstream
factory (no process is spawned): random request sequences keep the invariants, the queue is
served in priority order and arrival order within a priority, and a waiting swap is not starved."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from halogen.llamaswap.config import Config
from halogen.llamaswap.resolve import resolve
from halogen.llamaswap.resolved import Resolved, Runnable
from halogen.runtime.base.errors import Overloaded, StartFailed
from halogen.runtime.base.logs import Logs
from halogen.runtime.process.upstream import State, Upstream
from halogen.runtime.scheduling.eviction import Eviction
from halogen.runtime.scheduling.swapper import Swapper


@dataclass
class World:
    """Every fake process the factory made, and what they saw that must never happen."""

    processes: list[FakeProcess] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    eviction: Callable[[], Eviction] | None = None
    start_ticks: int = 2
    failing: set[str] = field(default_factory=set)

    def factory(
        self, runnable: Runnable, health_check_timeout: float, logs: Logs, on_exit: Callable[[Upstream], None]
    ) -> Upstream:
        process = FakeProcess(self, runnable, health_check_timeout, logs, on_exit)
        self.processes.append(process)
        return process

    def alive(self, but: FakeProcess | None = None) -> list[str]:
        return sorted({p.id for p in self.processes if p is not but and p.state is not State.STOPPED})


class FakeProcess(Upstream):
    """A model's process as the Swapper sees it, in loop ticks instead of seconds; checks, as
    it starts, that the router allows it beside every process still alive, and, as it stops,
    that no request is being served by it."""

    def __init__(
        self,
        world: World,
        runnable: Runnable,
        health_check_timeout: float,
        logs: Logs,
        on_exit: Callable[[Upstream], None],
    ) -> None:
        super().__init__(runnable, health_check_timeout=health_check_timeout, logs=logs, on_exit=on_exit)
        self.world = world
        self.serving = 0
        self.generation = 0  # how many times it was started

    async def start(self) -> None:
        assert self.state is State.STOPPED, self.state
        assert self.world.eviction is not None
        alive = self.world.alive(but=self)
        evict = set(self.world.eviction().admit(self.id, alive).evict)
        if evict:
            self.world.violations.append(f"{self.id} started while {sorted(evict)} still ran")
        self.state = State.STARTING
        for _ in range(self.world.start_ticks):
            await asyncio.sleep(0)
        if self.id in self.world.failing:
            self.state = State.STOPPED
            raise StartFailed(f"model {self.id!r} failed to start")
        self.generation += 1
        self.state = State.READY

    async def stop(self) -> None:
        if self.serving:
            self.world.violations.append(f"{self.id} stopped while serving {self.serving} requests")
        if self.state is State.STOPPED:
            return
        self.state = State.STOPPING
        await asyncio.sleep(0)
        self.state = State.STOPPED

    def command(self) -> str:
        return self.id


def config(models: Sequence[str], **top: Any) -> Resolved:
    spec = {m: {"cmd": f"server --port ${{PORT}} --name {m}"} for m in models}
    return resolve(Config.model_validate({"models": spec, **top}))


def swapper_for(resolved: Resolved, world: World) -> Swapper:
    swapper = Swapper(resolved, upstream_factory=world.factory)
    world.eviction = lambda: swapper.eviction
    return swapper


@dataclass
class Log:
    arrived: list[int] = field(default_factory=list)
    served: list[tuple[int, str, int]] = field(default_factory=list)  # request, model, generation
    answers: dict[int, str] = field(default_factory=dict)


async def ticks(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def request(swapper: Swapper, rid: int, model: str, hold: int, log: Log) -> None:
    log.arrived.append(rid)
    try:
        async with swapper.acquire(model) as upstream:
            process = cast(FakeProcess, upstream)
            log.served.append((rid, model, process.generation))
            process.serving += 1
            try:
                await ticks(hold)
            finally:
                process.serving -= 1
        log.answers[rid] = "served"
    except Overloaded:
        log.answers[rid] = "429"
    except StartFailed:
        log.answers[rid] = "502"


@dataclass(frozen=True)
class Arrival:
    model: int
    hold: int  # ticks the request holds its model
    gap: int  # ticks before the next request arrives


def arrivals(models: int) -> st.SearchStrategy[list[Arrival]]:
    one = st.builds(Arrival, st.integers(0, models - 1), st.integers(0, 12), st.integers(0, 4) | st.just(0))
    return st.lists(one, min_size=1, max_size=40)


async def run(swapper: Swapper, names: Sequence[str], sequence: Sequence[Arrival]) -> Log:
    log = Log()
    tasks = []
    for rid, arrival in enumerate(sequence):
        tasks.append(asyncio.create_task(request(swapper, rid, names[arrival.model], arrival.hold, log)))
        await ticks(arrival.gap)
    # Every request ends with an answer: none is left waiting for ever.
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    await swapper.close()
    return log


@st.composite
def group_sites(draw: st.DrawFn) -> tuple[list[str], dict[str, Any]]:
    count = draw(st.integers(2, 5))
    names = [f"m{i}" for i in range(count)]
    owner = draw(st.lists(st.integers(0, 2), min_size=count, max_size=count))
    groups: dict[str, Any] = {}
    for index in sorted(set(owner)):
        groups[f"g{index}"] = {
            "swap": draw(st.booleans()),
            "exclusive": draw(st.booleans()),
            "persistent": draw(st.booleans()),
            "members": [n for n, o in zip(names, owner, strict=True) if o == index],
        }
    return names, {"groups": groups}


@st.composite
def matrix_sites(draw: st.DrawFn) -> tuple[list[str], dict[str, Any]]:
    count = draw(st.integers(2, 5))
    names = [f"m{i}" for i in range(count)]
    subsets = draw(
        st.lists(st.sets(st.sampled_from(names), min_size=1), min_size=1, max_size=4, unique_by=frozenset)
    )
    sets = {f"s{i}": " & ".join(sorted(s)) for i, s in enumerate(subsets)}
    return names, {"routing": {"router": {"use": "matrix", "settings": {"matrix": {"sets": sets}}}}}


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(site=group_sites() | matrix_sites(), data=st.data())
def test_random_request_sequences_keep_the_routers_rules_and_every_request_is_answered(
    site: tuple[list[str], dict[str, Any]], data: st.DataObject
) -> None:
    names, top = site
    sequence = data.draw(arrivals(len(names)))
    world = World(start_ticks=data.draw(st.integers(0, 3)))

    async def scenario() -> Log:
        return await run(swapper_for(config(names, **top), world), names, sequence)

    log = asyncio.run(scenario())
    # The running set is always one the router allows; no model is stopped while it serves.
    assert world.violations == []
    # Every request ends with an answer, and with the default limit of 10 it is served unless
    # more than 10 were held or queued for its model at once.
    assert sorted(log.answers) == list(range(len(sequence)))
    assert set(log.answers.values()) <= {"served", "429"}


@PROPERTY
@given(count=st.integers(2, 4), data=st.data())
def test_in_one_swap_group_equal_priority_requests_are_served_in_arrival_order(
    count: int, data: st.DataObject
) -> None:
    """A later request is served before an earlier one only by sharing the process an earlier
    (or that same) request started or was served by: a start under way is shared, as llama-swap
    collates requests (fifo_test.go TestFIFO_QueueCollation), and nothing else overtakes."""
    names = [f"m{i}" for i in range(count)]
    top = {"groups": {"g": {"swap": True, "exclusive": True, "members": names}}}
    sequence = data.draw(arrivals(count))
    world = World(start_ticks=data.draw(st.integers(0, 3)))

    async def scenario() -> Log:
        return await run(swapper_for(config(names, **top), world), names, sequence)

    log = asyncio.run(scenario())
    assert world.violations == []
    order = {rid: index for index, (rid, _, _) in enumerate(log.served)}
    process_of = {rid: (model, generation) for rid, model, generation in log.served}
    for early, late in itertools.combinations(sorted(order), 2):
        if order[late] < order[early]:
            shared = [r for r in order if process_of[r] == process_of[late] and r <= early]
            assert shared, f"request {late} overtook {early}: {log.served}"


async def test_queued_requests_are_served_by_priority_then_arrival() -> None:
    # fifo_test.go TestFIFO_PriorityQueueOrder: z's start evicts every other model, so the
    # requests that arrive meanwhile queue; they are served A (10), B and C (5, in arrival
    # order), D (1).
    names = ["z", "A", "B", "C", "D"]
    top = {
        "groups": {"g": {"swap": True, "exclusive": True, "members": names}},
        "routing": {
            "scheduler": {
                "use": "fifo",
                "settings": {"fifo": {"priority": {"A": 10, "B": 5, "C": 5, "D": 1}}},
            }
        },
    }
    world = World(start_ticks=5)
    swapper = swapper_for(config(names, **top), world)
    log = Log()
    first = asyncio.create_task(request(swapper, 0, "z", 3, log))
    await ticks(1)
    tasks = [asyncio.create_task(request(swapper, rid, m, 1, log)) for rid, m in enumerate("BDCA", start=1)]
    await asyncio.wait_for(asyncio.gather(first, *tasks), timeout=10)
    await swapper.close()
    assert [model for _, model, _ in log.served] == ["z", "A", "B", "C", "D"]
    assert world.violations == []


async def test_a_request_waiting_for_a_busy_model_to_drain_is_not_starved_by_requests_for_it() -> None:
    # Issue: one busy model starved the other member of its swap group. Requests for a keep
    # arriving, each overlapping the next; the one request for b is served after the requests
    # for a that were in flight when it arrived, and the requests for a go on after it.
    names = ["a", "b"]
    world = World(start_ticks=1)
    swapper = swapper_for(config(names, groups={"g": {"swap": True, "members": names}}), world)
    log = Log()
    tasks = []
    for rid in range(60):
        model = "b" if rid == 20 else "a"
        tasks.append(asyncio.create_task(request(swapper, rid, model, 6, log)))
        await ticks(2)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
    await swapper.close()
    served = [rid for rid, _, _ in log.served]
    assert log.answers[20] == "served"
    # Before b: only requests that arrived before it (they were in flight or shared a start);
    # requests for a that queue behind it beyond a's limit of 10 get 429 meanwhile.
    assert all(rid < 20 for rid in served[: served.index(20)])
    assert any(rid > 20 for rid in served[served.index(20) :])
    assert world.violations == []


async def test_requests_for_a_starting_model_share_one_start_and_a_failed_start_fails_them_all() -> None:
    # fifo_test.go TestFIFO_JoinInFlightSwap and TestFIFO_SwapDoneError_FailsAllWaiters.
    world = World(start_ticks=3)
    swapper = swapper_for(config(["a", "b"]), world)
    log = Log()
    await asyncio.gather(*(request(swapper, rid, "a", 1, log) for rid in range(3)))
    world.failing.add("b")
    await asyncio.gather(*(request(swapper, rid, "b", 1, log) for rid in range(3, 6)))
    await swapper.close()
    a = next(p for p in world.processes if p.id == "a")
    assert a.generation == 1
    assert [log.answers[rid] for rid in range(6)] == ["served"] * 3 + ["502"] * 3


async def test_the_queue_length_per_model_is_what_waits() -> None:
    names = ["a", "b"]
    world = World(start_ticks=1)
    swapper = swapper_for(config(names, groups={"g": {"swap": True, "members": names}}), world)
    log = Log()
    hold = asyncio.create_task(request(swapper, 0, "a", 50, log))
    await ticks(5)
    waiting = [asyncio.create_task(request(swapper, rid, "b", 1, log)) for rid in (1, 2)]
    await ticks(2)
    assert swapper.queued() == {"a": 0, "b": 2}
    assert swapper.in_flight() == {"a": 1, "b": 2}
    await asyncio.gather(hold, *waiting)
    assert swapper.queued() == {"a": 0, "b": 0}
    await swapper.close()
