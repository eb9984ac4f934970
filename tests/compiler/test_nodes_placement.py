"""Placement as a pure function of the nodes' budgets and the models' needs: deterministic,
within every node's budget, honouring `node:`, `split:` and the nodes' backends, and refusing
with the numbers. Sizes here are round figures in GiB, not any real model's."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from halogen.compiler.placement import LOAD_SECONDS_PER_GIB, Need, Placement, arrange

GiB = 1024**3


def need(
    model_id: str,
    gib: float | None,
    nodes: tuple[str, ...] = ("a", "b"),
    node: str | None = None,
    split: tuple[str, ...] | None = None,
) -> Need:
    size = None if gib is None else int(gib * GiB)
    return Need(model_id, size, (gib or 0) * LOAD_SECONDS_PER_GIB, nodes, node, split)


def shape(placement: Placement) -> tuple[object, ...]:
    """Everything a placement decides, comparable."""
    return (
        sorted(placement.home.items()),
        sorted((m, s.nodes, s.shares) for m, s in placement.splits.items()),
        sorted((n, sorted(p.models), sorted(p.held.items())) for n, p in placement.nodes.items()),
    )


def within_budgets(placement: Placement) -> None:
    for plan in placement.nodes.values():
        assert sum(plan.held.values()) <= plan.budget
        for model_id, size in plan.sizes.items():
            assert size <= plan.for_models, (plan.id, model_id)


def test_the_slowest_to_load_go_first_each_where_most_room_is_left() -> None:
    placement, refused = arrange(
        {"a": 10 * GiB, "b": 10 * GiB, "c": 12 * GiB},
        [need(m, g, nodes=("a", "b", "c")) for m, g in (("small", 3), ("big", 8), ("mid", 6), ("tiny", 1))],
    )
    assert refused == []
    # big: c has the most room (12 GiB); mid: a and b have 10, tie to a; small: b (10 left);
    # tiny: b (7 left) over a (4) and c (4).
    assert placement.home == {"big": "c", "mid": "a", "small": "b", "tiny": "b"}


def test_a_model_that_fits_beside_no_one_goes_where_it_overflows_least() -> None:
    placement, refused = arrange({"a": 10 * GiB, "b": 10 * GiB}, [need("x", 8), need("y", 7), need("z", 5)])
    assert refused == []
    # x on a, y on b; z fits beside neither (2 and 3 GiB left): b, with more room, takes it.
    assert placement.home == {"x": "a", "y": "b", "z": "b"}


def test_the_same_needs_in_any_order_give_the_same_placement() -> None:
    needs = [need(f"m{i}", g) for i, g in enumerate([21, 11.2, 8.9, 4.9, 1.6, 63.7, 7, 7, 13, None, None])]
    budgets = {"a": 60 * GiB, "b": 90 * GiB, "c": 40 * GiB}
    first = shape(arrange(budgets, needs)[0])
    for seed in range(20):
        shuffled = list(needs)
        random.Random(seed).shuffle(shuffled)
        assert shape(arrange(dict(reversed(list(budgets.items()))), shuffled)[0]) == first


def test_a_pinned_model_stays_on_its_node_even_where_another_has_more_room() -> None:
    placement, refused = arrange({"a": 10 * GiB, "b": 100 * GiB}, [need("x", 4, node="a"), need("y", 4)])
    assert refused == [] and placement.home["x"] == "a"


def test_a_model_goes_only_to_a_node_that_runs_its_backend() -> None:
    placement, refused = arrange(
        {"a": 100 * GiB, "b": 10 * GiB}, [need("gpu", 4, nodes=("b",)), need("cpu", 4, nodes=("a", "b"))]
    )
    assert refused == [] and placement.home["gpu"] == "b"


def test_a_model_no_node_holds_alone_is_split_over_the_roomiest_and_each_helper_is_charged() -> None:
    placement, refused = arrange({"a": 120 * GiB, "b": 120 * GiB}, [need("huge", 130), need("small", 10)])
    assert refused == []
    split = placement.splits["huge"]
    assert split.nodes == ("a", "b") and split.shares == (65 * GiB, 65 * GiB)
    assert placement.nodes["b"].held == {"huge": 65 * GiB}
    assert placement.nodes["b"].for_models == 55 * GiB  # its own proxy's models share what is left
    assert placement.home["huge"] == "a" and placement.nodes["a"].sizes["huge"] == 65 * GiB
    within_budgets(placement)


def test_a_named_split_is_shared_in_proportion_to_the_room_each_node_has() -> None:
    placement, refused = arrange({"a": 30 * GiB, "b": 90 * GiB}, [need("x", 40, split=("a", "b"))])
    assert refused == []
    assert placement.splits["x"].shares == (10 * GiB, 30 * GiB)
    assert placement.splits["x"].fraction("a") == 0.25


def test_what_fits_nowhere_is_refused_with_each_nodes_numbers() -> None:
    _, refused = arrange({"a": 60 * GiB, "b": 60 * GiB}, [need("pinned", 70, node="a"), need("huge", 130)])
    by_model = {r.model: r for r in refused}
    assert by_model["pinned"].numbers.startswith("a: budget 60.0 GiB")
    assert "10.0 GiB short" in by_model["pinned"].numbers
    assert by_model["huge"].numbers == (
        "a: budget 60.0 GiB, 0 models placed (0.0 GiB), room for one model 60.0 GiB, 70.0 GiB short; "
        "b: budget 60.0 GiB, 0 models placed (0.0 GiB), room for one model 60.0 GiB, 70.0 GiB short"
    )


def test_a_model_of_unknown_size_goes_to_the_node_with_fewest_models() -> None:
    placement, _ = arrange(
        {"a": 10 * GiB, "b": 10 * GiB}, [need("known", 4), need("u1", None), need("u2", None)]
    )
    assert placement.home == {"known": "a", "u1": "b", "u2": "a"}


@settings(max_examples=150, deadline=None)
@given(
    budgets=st.lists(st.integers(1, 128), min_size=1, max_size=4),
    sizes=st.lists(st.one_of(st.none(), st.integers(1, 200)), min_size=1, max_size=12),
    seed=st.integers(0, 1000),
)
def test_placement_never_exceeds_a_budget_and_places_or_refuses_every_model(
    budgets: list[int], sizes: list[int | None], seed: int
) -> None:
    nodes = {f"n{i}": b * GiB for i, b in enumerate(budgets)}
    needs = [need(f"m{i}", s, nodes=tuple(sorted(nodes))) for i, s in enumerate(sizes)]
    placement, refused = arrange(nodes, needs)
    within_budgets(placement)
    assert {*placement.home, *(r.model for r in refused)} == {n.id for n in needs}
    for split in placement.splits.values():
        assert sum(split.shares) >= (next(n.size for n in needs if n.id == split.model) or 0)
    shuffled = list(needs)
    random.Random(seed).shuffle(shuffled)
    assert shape(arrange(nodes, shuffled)[0]) == shape(placement)
