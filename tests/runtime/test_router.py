"""The routers of the config contract, without processes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from halogen.llamaswap.config import DEFAULT_GROUP, Config, Group
from halogen.llamaswap.resolve import resolve
from halogen.llamaswap.resolved import Resolved
from halogen.runtime.scheduling.eviction import eviction_for


def site(groups: dict[str, dict[str, object]], loose: tuple[str, ...] = ()) -> Resolved:
    members = [m for g in groups.values() for m in g.get("members", [])]  # type: ignore[attr-defined]
    models = {m: {"cmd": f"server --port ${{PORT}} --name {m}"} for m in [*members, *loose]}
    return resolve(Config.model_validate({"models": models, "groups": groups}))


def stops(resolved: Resolved, target: str, running: list[str]) -> set[str]:
    return set(eviction_for(resolved).admit(target, running).evict)


def test_a_swap_group_runs_one_member_at_a_time() -> None:
    r = site({"chat": {"swap": True, "exclusive": False, "members": ["a", "b", "c"]}})
    assert stops(r, "a", ["b", "c"]) == {"b", "c"}


def test_a_group_without_swap_runs_its_members_side_by_side() -> None:
    r = site({"pair": {"swap": False, "exclusive": False, "members": ["a", "b"]}})
    assert stops(r, "a", ["b"]) == set()


def test_an_exclusive_group_stops_every_other_group() -> None:
    r = site(
        {
            "big": {"swap": True, "exclusive": True, "members": ["big"]},
            "side": {"swap": False, "exclusive": False, "members": ["x", "y"]},
        }
    )
    assert stops(r, "big", ["x", "y"]) == {"x", "y"}


def test_a_non_exclusive_group_leaves_other_groups_running() -> None:
    r = site(
        {
            "chat": {"swap": True, "exclusive": False, "members": ["a", "b"]},
            "embed": {"swap": True, "exclusive": False, "members": ["e"]},
        }
    )
    assert stops(r, "a", ["b", "e"]) == {"b"}


def test_a_persistent_group_survives_an_exclusive_one() -> None:
    r = site(
        {
            "big": {"swap": True, "exclusive": True, "members": ["big"]},
            "keep": {"swap": False, "exclusive": False, "persistent": True, "members": ["e"]},
            "other": {"swap": False, "exclusive": False, "members": ["o"]},
        }
    )
    assert stops(r, "big", ["e", "o"]) == {"o"}


def test_a_persistent_group_still_swaps_its_own_members() -> None:
    r = site({"keep": {"swap": True, "exclusive": False, "persistent": True, "members": ["a", "b"]}})
    assert stops(r, "a", ["b"]) == {"b"}


def test_models_in_no_group_form_the_default_group_that_swaps_and_is_exclusive() -> None:
    r = site({"side": {"swap": False, "exclusive": False, "members": ["s"]}}, loose=("a", "b"))
    assert r.models["a"].group == DEFAULT_GROUP
    assert stops(r, "a", ["b", "s"]) == {"b", "s"}


def test_a_config_without_groups_runs_one_model_at_a_time() -> None:
    r = site({}, loose=("a", "b", "c"))
    assert stops(r, "c", ["a", "b"]) == {"a", "b"}


def test_the_target_itself_is_never_stopped() -> None:
    r = site({}, loose=("a", "b"))
    assert stops(r, "a", ["a"]) == set()


GROUP_FLAGS = st.fixed_dictionaries(
    {"swap": st.booleans(), "exclusive": st.booleans(), "persistent": st.booleans()}
)


@given(
    flags=st.lists(GROUP_FLAGS, min_size=1, max_size=4),
    placement=st.lists(st.integers(min_value=0, max_value=4), min_size=2, max_size=8),
    data=st.data(),
)
def test_the_rule_holds_for_any_group_layout(
    flags: list[dict[str, bool]], placement: list[int], data: st.DataObject
) -> None:
    groups: dict[str, dict[str, object]] = {f"g{i}": {**f, "members": []} for i, f in enumerate(flags)}
    loose = []
    for index, where in enumerate(placement):
        name = f"m{index}"
        if where < len(flags):
            groups[f"g{where}"]["members"].append(name)  # type: ignore[attr-defined]
        else:
            loose.append(name)
    r = site(groups, tuple(loose))
    ids = sorted(r.models)
    target = data.draw(st.sampled_from(ids))
    running = data.draw(st.lists(st.sampled_from(ids), unique=True))
    result = stops(r, target, running)
    rules = {gid: r.groups.get(gid, Group()) for gid in {m.group for m in r.models.values()}}
    mine = rules[r.models[target].group]
    for other in running:
        if other == target:
            assert other not in result
            continue
        theirs = r.models[other].group
        if theirs == r.models[target].group:
            expected = mine.swap
        else:
            expected = mine.exclusive and not rules[theirs].persistent
        assert (other in result) == expected, (target, other)
    assert result <= set(running)
