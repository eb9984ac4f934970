"""The routers as a table: for each config, the running set, the request, the models stopped and
the rule that admitted the request. Every case names the llama-swap test it is derived from
(internal/router/*_test.go, internal/matrix/dsl_test.go, internal/config/*_test.go)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halogen.llamaswap.config import Config
from halogen.llamaswap.matrix import Node, compile_sets
from halogen.llamaswap.resolve import resolve
from halogen.runtime.scheduling.eviction import Admission, GroupEviction, MatrixEviction, eviction_for


@dataclass(frozen=True)
class Case:
    upstream: str  # the llama-swap test the case comes from
    routing: dict[str, Any]  # top-level keys of the config besides `models`
    running: tuple[str, ...]
    request: str
    stopped: tuple[str, ...]
    rule: str
    models: tuple[str, ...] = ()  # ids the case defines besides those it routes
    aliases: dict[str, list[str]] = field(default_factory=dict)


def groups(**spec: dict[str, Any]) -> dict[str, Any]:
    return {"routing": {"router": {"use": "group", "settings": {"groups": spec}}}}


def matrix(sets: dict[str, str], **rest: Any) -> dict[str, Any]:
    return {"routing": {"router": {"use": "matrix", "settings": {"matrix": {"sets": sets, **rest}}}}}


CASES = [
    # --- groups: internal/router/group_test.go ---
    Case(
        "TestGroup_ServeHTTP_SwapStopsPrevious",
        groups(g={"swap": True, "exclusive": True, "members": ["a", "b"]}),
        ("a",),
        "b",
        ("a",),
        "g",
    ),
    Case(
        "TestGroup_NonSwapGroup_NoStop",
        groups(g={"swap": False, "exclusive": False, "members": ["a", "b"]}),
        ("a",),
        "b",
        (),
        "g",
    ),
    Case(
        "TestGroup_CrossGroupExclusive",
        groups(g1={"members": ["a"]}, g2={"members": ["b"]}),
        ("a",),
        "b",
        ("a",),
        "g2",
    ),
    Case(
        "TestGroup_CrossGroupNonExclusiveParallel",
        groups(g1={"exclusive": False, "members": ["a"]}, g2={"exclusive": False, "members": ["b"]}),
        ("a",),
        "b",
        (),
        "g2",
    ),
    Case(
        "TestGroup_SameGroupSwapSerialises",
        groups(g={"swap": True, "exclusive": False, "members": ["a", "b"]}),
        ("a",),
        "b",
        ("a",),
        "g",
    ),
    Case(
        "TestGroup_PersistentNotEvicted",
        groups(
            persist={"exclusive": False, "persistent": True, "members": ["a"]},
            other={"members": ["b"]},
        ),
        ("a",),
        "b",
        (),
        "other",
    ),
    Case(
        "TestGroup_NonExclusiveDoesNotUnloadExclusive",
        groups(g1={"members": ["a"]}, g2={"exclusive": False, "members": ["b"]}),
        ("a",),
        "b",
        (),
        "g2",
    ),
    Case(
        "AddDefaultGroupToConfig (internal/config/config.go): models in no group swap in (default)",
        groups(side={"swap": False, "exclusive": False, "members": ["s"]}),
        ("a", "s"),
        "b",
        ("a", "s"),
        "(default)",
        models=("a", "b"),
    ),
    Case(
        "TestConfig_* legacy top-level groups (internal/config/config_test.go)",
        {"groups": {"g": {"swap": False, "exclusive": False, "members": ["a", "b"]}}},
        ("a",),
        "b",
        (),
        "g",
    ),
    # --- the matrix: internal/router/matrix_test.go ---
    Case("TestMatrix_SwapEvictsConflicting", matrix({"s_a": "a", "s_b": "b"}), ("a",), "b", ("a",), "s_b"),
    Case("TestMatrix_CoexistInSet", matrix({"s_ab": "a & b"}), ("a",), "b", (), "s_ab"),
    Case("TestMatrix_IncompatibleQueues", matrix({"s_a": "a", "s_b": "b"}), ("a",), "b", ("a",), "s_b"),
    Case(
        "TestMatrixSolver_TieBreakDefinitionOrder",
        matrix({"first": "a & b", "second": "a & c"}),
        (),
        "a",
        (),
        "first",
    ),
    Case(
        "TestMatrixSolver_EvictCostsPreferred",
        matrix({"a_with_c": "a & c", "a_with_b": "a & b"}, evict_costs={"b": 10, "c": 1}),
        ("b", "c"),
        "a",
        ("c",),
        "a_with_b",
    ),
    # --- the matrix program: internal/matrix/dsl_test.go ---
    Case(
        "TestProgram_References",
        matrix({"llms": "g | q | m", "with_tts": "+llms & v", "mega": "+with_tts & e"}),
        ("q", "v"),
        "e",
        (),
        "mega",
    ),
    Case(
        "TestProgram_OverlappingReferences",
        matrix({"base": "a & b", "extended": "target & +base & b"}),
        ("a", "b"),
        "target",
        (),
        "extended",
    ),
    Case(
        "TestProgram_DominatedProjection",
        matrix({"preferred": "target & (a | (a & b))"}),
        ("a", "b"),
        "target",
        (),
        "preferred",
    ),
    Case(
        "TestProgram_TargetAbsent: a model in no set runs alone",
        matrix({"known": "a & b"}),
        ("a", "b"),
        "missing",
        ("a", "b"),
        "",
    ),
    Case(
        "TestProgram_Expressions (precedence: a | b & c)",
        matrix({"test": "a | b & c"}),
        ("a",),
        "c",
        ("a",),
        "test",
    ),
    Case(
        "program.go topologicalOrder: a set inlined with +ref is tried before the set inlining it",
        matrix({"big": "+small & c", "small": "a & b"}),
        (),
        "a",
        (),
        "small",
    ),
    Case(
        "program.go evaluate: the alternatives of | are tried left to right",
        matrix({"s": "(a & b) | (a & c)"}),
        ("b", "c"),
        "a",
        ("c",),
        "s",
    ),
    Case(
        "program.go Solve: a running target evicts nothing, under the first set holding the running ones",
        matrix({"one": "a", "two": "a & b"}),
        ("a", "b"),
        "a",
        (),
        "two",
    ),
    # --- the matrix config: internal/config/matrix_test.go ---
    Case(
        "TestValidateMatrix_DirectAndMixedModelNames: vars and model ids mixed",
        matrix({"s": "g & qwen-model"}, vars={"g": "gemma-model"}),
        ("qwen-model",),
        "gemma-model",
        (),
        "s",
    ),
    Case(
        "TestValidateMatrix_ResolvedEvictCosts: costs on vars count for their models",
        matrix({"with_q": "x & q", "with_v": "x & v"}, vars={"v": "voxtral"}, evict_costs={"v": 50}),
        ("q", "voxtral"),
        "x",
        ("q",),
        "with_v",
        models=("voxtral",),
    ),
    Case(
        "config.example.yaml: a var shadows the model id of the same name",
        matrix({"s": "a & c"}, vars={"a": "b"}),
        ("c",),
        "a",
        ("c",),
        "",
        models=("a", "b"),
    ),
    Case(
        "TestValidateMatrix_ConfigMatrixOnly: the legacy top-level matrix",
        {"matrix": {"sets": {"s_a": "a", "s_b": "b"}}},
        ("a",),
        "b",
        ("a",),
        "s_b",
    ),
    Case(
        "load.go: a matrix beside `use: group` is ignored, and the models swap in (default)",
        {"routing": {"router": {"use": "group", "settings": {"matrix": {"sets": {"s": "a & b"}}}}}},
        ("a",),
        "b",
        ("a",),
        "(default)",
    ),
]


def _ids(case: Case) -> set[str]:
    """Every model id the case names: members, set identifiers that are no vars, the request."""
    names = {case.request, *case.running, *case.models}
    router = case.routing.get("routing", {}).get("router", {}).get("settings", {})
    for group in {**case.routing.get("groups", {}), **router.get("groups", {})}.values():
        names.update(group["members"])
    spec = router.get("matrix") or case.routing.get("matrix") or {}
    for dsl in spec.get("sets", {}).values():
        words = dsl.translate(str.maketrans("()&|", "    ")).split()
        names.update(w for w in words if not w.startswith("+") and w not in spec.get("vars", {}))
    return names


@pytest.mark.parametrize("case", CASES, ids=[c.upstream.split(" ")[0] + f"-{i}" for i, c in enumerate(CASES)])
def test_the_router_stops_what_llama_swap_stops(case: Case) -> None:
    models = {m: {"cmd": f"server --port ${{PORT}} --name {m}"} for m in sorted(_ids(case))}
    resolved = resolve(Config.model_validate({"models": models, **case.routing}))
    admission = eviction_for(resolved).admit(case.request, list(case.running))
    assert (admission.evict, admission.rule) == (case.stopped, case.rule), case.upstream


def test_a_var_shadows_the_model_id_it_is_named_after() -> None:
    # config.example.yaml (matrix.vars): "a var takes precedence when its name is also a real model ID"
    models = {m: {"cmd": "server --port ${PORT}"} for m in ("a", "b", "c")}
    resolved = resolve(Config.model_validate({"models": models, **matrix({"s": "a & c"}, vars={"a": "b"})}))
    assert resolved.matrix is not None
    assert resolved.matrix.program.sets[0].support == {"b", "c"}


def test_the_config_chooses_the_router() -> None:
    models = {m: {"cmd": "server --port ${PORT}"} for m in ("a", "b")}
    grouped = resolve(Config.model_validate({"models": models}))
    solved = resolve(Config.model_validate({"models": models, **matrix({"s": "a & b"})}))
    assert isinstance(eviction_for(grouped), GroupEviction)
    assert isinstance(eviction_for(solved), MatrixEviction)
    assert solved.router == "matrix" and solved.groups == {}


def _expand(node: Node) -> list[frozenset[str]]:
    """Every concrete set an expression stands for, by brute force."""
    if node.kind == "leaf":
        return [frozenset((node.name,))]
    if node.kind == "ref":
        assert node.ref is not None
        return _expand(node.ref)
    if node.kind == "or":
        return [s for child in node.children for s in _expand(child)]
    out = [frozenset[str]()]
    for child in node.children:
        out = [a | b for a in out for b in _expand(child)]
    return out


NAMES = ["a", "b", "c", "d", "e", "f"]
atoms = st.sampled_from(NAMES)
expressions = st.recursive(
    atoms,
    lambda inner: st.builds(
        lambda xs, op: "(" + f" {op} ".join(xs) + ")",
        st.lists(inner, min_size=2, max_size=3),
        st.sampled_from("&|"),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    sets=st.lists(expressions, min_size=1, max_size=4),
    costs=st.dictionaries(st.sampled_from(NAMES), st.integers(1, 9)),
    target=st.sampled_from([*NAMES, "g"]),
    running=st.lists(st.sampled_from([*NAMES, "g"]), unique=True, max_size=5),
)
def test_the_solver_evicts_the_least_costly_running_models_any_set_allows(
    sets: list[str], costs: dict[str, int], target: str, running: list[str]
) -> None:
    # program.go Solve: what the projections find equals expanding every product by hand
    program = compile_sets({f"s{i}": text for i, text in enumerate(sets)}, lambda n: n)
    admission = MatrixEviction(program, costs).admit(target, running)
    assert set(admission.evict) <= set(running) and target not in admission.evict
    if target in running:
        assert admission.evict == ()
        return
    options = [
        (sum(costs.get(m, 1) for m in running if m not in concrete), s.name)
        for s in program.sets
        for concrete in _expand(s.root)
        if target in concrete
    ]
    if not options:
        assert admission == Admission(tuple(running), "")
        return
    best = min(cost for cost, _ in options)
    assert sum(costs.get(m, 1) for m in admission.evict) == best
    assert admission.rule == next(name for cost, name in options if cost == best)
    kept = {target, *running} - set(admission.evict)
    chosen = next(s for s in program.sets if s.name == admission.rule)
    assert any(kept <= concrete for concrete in _expand(chosen.root))
