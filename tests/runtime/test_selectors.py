"""Which target serves a selector id, as llama-swap chooses it (internal/server/selector_test.go)."""

from __future__ import annotations

from collections import Counter

import pytest

from halogen.llamaswap.resolved import SelectorRule
from halogen.runtime.scheduling.selectors import Choice, NoTarget, choose


def rule(strategy: str, *targets: str, spillover: int = 1, models: tuple[str, ...] = ()) -> SelectorRule:
    return SelectorRule("pool", strategy, targets, models or targets, spillover)


def test_pin_always_takes_the_first_target() -> None:
    # TestServer_SelectorStrategyPin
    assert choose(rule("pin", "first", "second"), {"second": "ready"}) == Choice("first", "first")


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        # TestServer_SelectorStrategyWarm, its four steps
        ({"a": "starting", "c": "ready"}, "c"),
        ({"a": "starting", "b": "ready", "c": "ready"}, "b"),
        ({"a": "starting", "b": "starting"}, "a"),
        ({}, "a"),
        ({"a": "stopping", "b": "starting"}, "b"),
    ],
)
def test_warm_takes_the_first_ready_target_else_a_starting_one_else_cold_starts_the_first(
    phases: dict[str, str], expected: str
) -> None:
    assert choose(rule("warm", "a", "b", "c"), phases).target == expected


def test_a_target_written_as_an_alias_is_chosen_by_its_models_phase() -> None:
    chosen = choose(rule("warm", "fast", "slow", models=("m1", "m2")), {"m2": "ready"})
    assert chosen == Choice("slow", "m2")


def test_spillover_fills_each_target_to_its_reservations_then_starts_the_next() -> None:
    # TestServer_SelectorStrategySpillover
    pool = rule("spillover", "a", "b", "c", spillover=2)
    reserved: Counter[str] = Counter()
    picks = []
    for _ in range(3):
        chosen = choose(pool, {}, reserved)
        assert chosen.reserve
        reserved[chosen.model] += 1
        picks.append(chosen.target)
    assert picks == ["a", "a", "b"]
    reserved["a"] -= 1  # a request on a ended
    assert choose(pool, {"a": "ready", "b": "ready", "c": "ready"}, reserved).target == "c"


def test_spillover_shares_the_active_targets_when_none_is_left_to_start() -> None:
    pool = rule("spillover", "a", "b", spillover=1)
    phases = {"a": "ready", "b": "ready"}
    assert choose(pool, phases, {"a": 1, "b": 2}).target == "a"
    # ties among the least reserved are taken in turn
    # (TestServer_SelectorMiddleware_SpilloverReservations)
    first = choose(pool, phases, {}, turn=0)
    second = choose(pool, phases, {first.model: 0}, turn=1)
    assert first.took_turn and {first.target, second.target} == {"a", "b"}


def test_spillover_skips_stopping_targets_and_refuses_when_all_are_stopping() -> None:
    pool = rule("spillover", "a", "b", "c", spillover=2)
    assert choose(pool, {"a": "stopping"}).target == "b"
    # TestServer_SelectorMiddleware_AllSpilloverTargetsStopping
    with pytest.raises(NoTarget, match="no available spillover targets"):
        choose(pool, {"a": "stopping", "b": "stopping", "c": "stopping"})
