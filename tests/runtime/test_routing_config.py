"""Routing, selectors and profiles in a llama-swap config, as `halogen serve` loads it: what
llama-swap accepts loads, what it refuses at load is refused with the key's position."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from halogen.diagnostics import Invalid
from halogen.llamaswap import io
from halogen.llamaswap.resolved import Resolved
from tests.compiler.conftest import SHARED

REFERENCE = SHARED / "reference" / "llama-swap"
FAKE = f"{sys.executable} -m tests.runtime.fake_upstream --port ${{PORT}}"


# What the example config reads from the environment.
ENVIRON = {
    "HOME": "/home/llm",
    "API_KEY_1": "key-one",
    "API_KEY_2": "key-two",
    "OPENROUTER_API_KEY": "sk-or-test",  # the example's peer key
}


def load(tmp_path: Path, text: str) -> Resolved:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return io.load(path, environ=ENVIRON)[0]


def refused(tmp_path: Path, text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(Invalid) as caught:
        load(tmp_path, text)
    return [(d.line, d.field, d.message) for d in caught.value.diagnostics if d.severity == "error"]


MODELS = """\
    models:
      a: {cmd: "s --port ${PORT}", aliases: [a-alias]}
      b: {cmd: "s --port ${PORT}"}
      c: {cmd: "s --port ${PORT}", aliases: [c-alias]}
"""


def test_a_matrix_under_routing_loads_with_vars_costs_and_sets_in_order(tmp_path: Path) -> None:
    r = load(
        tmp_path,
        MODELS
        + """\
    routing:
      router:
        use: matrix
        settings:
          matrix:
            vars: {x.1: a}
            evict_costs: {x.1: 7}
            sets:
              pair: "x.1 & b"
              alone: c
      scheduler:
        settings: {fifo: {priority: {a-alias: 3, c: -1}}}
    """,
    )
    assert r.router == "matrix" and r.matrix is not None
    assert [s.name for s in r.matrix.program.sets] == ["pair", "alone"]
    assert r.matrix.evict_costs == {"a": 7}
    assert r.priority == {"a": 3, "c": -1}


def test_routing_scheduler_may_sit_beside_legacy_groups(tmp_path: Path) -> None:
    r = load(
        tmp_path,
        MODELS
        + """\
    groups:
      g: {swap: false, members: [a, b]}
    routing:
      scheduler: {use: fifo, settings: {fifo: {priority: {b: 1}}}}
    """,
    )
    assert r.router == "group" and r.groups["g"].members == ["a", "b"] and r.priority == {"b": 1}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        # load.go: only routing.router conflicts with the legacy keys
        (
            "groups: {g: {members: [a]}}\nrouting: {router: {use: group}}\n",
            [(6, "routing.router", "config uses both the legacy top-level 'matrix'/'groups' keys")],
        ),
        # TestValidateMatrix_ConfigXOR (internal/config/matrix_test.go)
        (
            "groups: {g: {members: [a]}}\nmatrix: {sets: {s: a}}\n",
            [(6, "matrix", "config cannot use both 'groups' and 'matrix'")],
        ),
        (
            "routing: {router: {use: matrix}}\n",
            [(5, "routing.router.use", "routing.router.use is 'matrix' but")],
        ),
        (
            "routing: {router: {use: solver}}\n",
            [(5, "routing.router.use", "routing.router.use: unknown router")],
        ),
        (
            "routing: {scheduler: {use: lifo}}\n",
            [(5, "routing.scheduler.use", "routing.scheduler.use: unknown")],
        ),
        (
            "routing: {scheduler: {settings: {fifo: {priority: {d: 1}}}}}\n",
            [
                (
                    5,
                    "routing.scheduler.settings.fifo.priority.d",
                    "routing.scheduler.settings.fifo.priority refer",
                )
            ],
        ),
        # TestValidateMatrix_NoSets
        ("matrix: {vars: {x: a}}\n", [(5, "matrix.sets", "matrix must define at least one set")]),
        # TestValidateMatrix_VarKeyValidation: the loader's pattern, wider than the schema's
        (
            "matrix: {vars: {'x y': a}, sets: {s: b}}\n",
            [(5, "matrix.vars.x y", "var key 'x y' must contain only")],
        ),
        # TestValidateMatrix_AliasReferencesUnknownModel: vars name ids, never aliases
        (
            "matrix: {vars: {x: a-alias}, sets: {s: x}}\n",
            [(5, "matrix.vars.x", "var key 'x' references unknown")],
        ),
        # TestValidateMatrix_EvictCostInvalid
        (
            "matrix: {evict_costs: {a: 0}, sets: {s: a}}\n",
            [(5, "matrix.evict_costs.a", "evict_cost for 'a' must")],
        ),
        (
            "matrix: {evict_costs: {z: 2}, sets: {s: a}}\n",
            [(5, "matrix.evict_costs.z", "evict_costs: unknown var")],
        ),
        # TestValidateMatrix_CycleDetection
        (
            "matrix: {sets: {x: +y, y: +x}}\n",
            [(5, "matrix.sets.x", 'circular reference detected involving set "x"')],
        ),
        # TestValidateMatrix_UndefinedRefTarget
        (
            "matrix: {sets: {s: a & +nope}}\n",
            [(5, "matrix.sets.s", 'set "s" references undefined set "nope"')],
        ),
        # TestValidateMatrix_UnknownMapIDInDSL; sets never resolve aliases
        (
            "matrix: {sets: {s: a-alias & b}}\n",
            [(5, "matrix.sets.s", 'set "s": unknown var or model "a-alias"')],
        ),
        # TestProgram_CompileErrors (internal/matrix/dsl_test.go)
        ("matrix: {sets: {s: (a}}\n", [(5, "matrix.sets.s", 'set "s": parse: missing closing parenthesis')]),
        ("matrix: {sets: {s: 'a)'}}\n", [(5, "matrix.sets.s", 'set "s": parse: unexpected token ")" after')]),
        ("matrix: {sets: {s: '()'}}\n", [(5, "matrix.sets.s", 'set "s": parse: unexpected token ")"')]),
        (
            "matrix: {sets: {s: 'a # b'}}\n",
            [(5, "matrix.sets.s", "set \"s\": tokenize: unexpected character '#'")],
        ),
        ("matrix: {sets: {s: ' '}}\n", [(5, "matrix.sets.s", 'set "s": empty DSL expression')]),
    ],
)
def test_llama_swaps_routing_errors_are_refused_at_the_key(
    tmp_path: Path, extra: str, expected: list[tuple[int, str, str]]
) -> None:
    found = refused(tmp_path, MODELS + textwrap.indent(extra, "    "))
    assert [(line, field) for line, field, _ in found] == [(line, field) for line, field, _ in expected]
    for (_, _, message), (_, _, start) in zip(found, expected, strict=True):
        assert message.startswith(start), message


def test_null_routing_selectors_and_profiles_are_empty_as_in_llama_swap(tmp_path: Path) -> None:
    r = load(tmp_path, MODELS + "    routing: ~\n    selectors: ~\n    profiles: ~\n")
    assert (r.router, r.selectors, r.profiles) == ("group", {}, {})


def test_a_matrix_not_in_use_is_not_checked(tmp_path: Path) -> None:
    r = load(tmp_path, MODELS + "    routing: {router: {settings: {matrix: {sets: {s: nobody}}}}}\n")
    assert r.router == "group" and r.matrix is None


def test_an_unknown_id_in_a_set_gets_a_did_you_mean(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(MODELS) + "matrix: {sets: {s: a & bb}}\n")
    with pytest.raises(Invalid) as caught:
        io.load(path, environ={})
    (found,) = caught.value.diagnostics
    assert found.hint == "did you mean 'b'?"


SELECTORS_AND_PROFILES = """\
    groups:
      side: {swap: false, exclusive: false, members: [b, c]}
    selectors:
      best: {strategy: warm, targets: [a-alias, b], name: Best, description: the warm one, metadata: {k: 1}}
      fill: {strategy: spillover, targets: [b, c], settings: {spillover: 2}}
    profiles:
      night:
        description: quiet hours
        pins: {best: c, a: ~, big: fill}
"""


def test_selectors_and_profiles_load_with_their_targets_resolved(tmp_path: Path) -> None:
    r = load(tmp_path, MODELS + SELECTORS_AND_PROFILES)
    best = r.selectors["best"]
    assert (best.strategy, best.targets, best.models) == ("warm", ("a-alias", "b"), ("a", "b"))
    assert (best.name, best.description, dict(best.metadata)) == ("Best", "the warm one", {"k": 1})
    assert r.selectors["fill"].spillover == 2
    assert r.profiles["night"].description == "quiet hours"
    assert dict(r.profiles["night"].pins) == {"best": "c", "a": "", "big": "fill"}


REMOTE = {"remote": {"proxy": "http://127.0.0.1:9", "models": ["remote-model"]}}


@pytest.mark.parametrize(
    ("change", "field", "start"),
    [
        # TestSelectors_* (internal/config/selectors_test.go)
        (
            {"selectors": {"a": {"strategy": "pin", "targets": ["b"]}}},
            "selectors.a",
            "name conflicts with model ID 'a'",
        ),
        (
            {"selectors": {"c-alias": {"strategy": "pin", "targets": ["b"]}}},
            "selectors.c-alias",
            "name conflicts with model alias 'c-alias'",
        ),
        ({"selectors": {"s": {"targets": ["b"]}}}, "selectors.s.strategy", "strategy is required"),
        (
            {"selectors": {"s": {"strategy": "hot", "targets": ["b"]}}},
            "selectors.s.strategy",
            "unknown strategy",
        ),
        (
            {"selectors": {"s": {"strategy": "pin"}}},
            "selectors.s.targets",
            "targets must contain at least one",
        ),
        (
            {"selectors": {"s": {"strategy": "pin", "targets": ["best"]}}},
            "selectors.s.targets[0]",
            "references selector 'best'; selector chaining",
        ),
        (
            {"selectors": {"s": {"strategy": "pin", "targets": ["zz"]}}},
            "selectors.s.targets[0]",
            "references unknown model 'zz'",
        ),
        (
            {"selectors": {"s": {"strategy": "spillover", "targets": ["b"], "settings": {"spillover": 0}}}},
            "selectors.s.settings.spillover",
            "settings.spillover must be >= 1",
        ),
        (
            {"selectors": {"s": {"strategy": "spillover", "targets": ["a", "a-alias"]}}},
            "selectors.s.targets",
            "targets contains duplicate resolved model 'a'",
        ),
        (
            {"selectors": {"s": {"strategy": "spillover", "targets": ["a", "b"]}}},
            "selectors.s.targets",
            "spillover targets must share a group with swap: false",
        ),
        # TestConfig_Selectors_Validation: peers' models as targets.
        (
            {"peers": REMOTE, "selectors": {"s": {"strategy": "warm", "targets": ["remote-model"]}}},
            "selectors.s.targets[0]",
            'must resolve to a local model for strategy "warm"',
        ),
        (
            {
                "peers": REMOTE,
                "selectors": {
                    "s": {"strategy": "spillover", "targets": ["remote-model", "remote/remote-model"]}
                },
            },
            "selectors.s.targets",
            "targets contains duplicate resolved model 'remote/remote-model'",
        ),
        # ValidatePeerNamespace (internal/config/peer.go)
        (
            {"peers": REMOTE, "selectors": {"remote/remote-model": {"strategy": "pin", "targets": ["a"]}}},
            "selectors.remote/remote-model",
            "selector ID 'remote/remote-model' conflicts with fully qualified peer model name",
        ),
        # profile_test.go (internal/config)
        ({"profiles": {"p": {"pins": {}}}}, "profiles.p.pins", "pins must contain at least one entry"),
        (
            {"profiles": {"p": {"pins": {"x": "nothing"}}}},
            "profiles.p.pins.x",
            "references unknown model 'nothing'",
        ),
        (
            {"profiles": {"p": ["a", "b"]}},
            "profiles.p",
            "profile must be a mapping with description and pins",
        ),
    ],
)
def test_llama_swaps_selector_and_profile_errors_are_refused_at_the_key(
    tmp_path: Path, change: dict[str, Any], field: str, start: str
) -> None:
    data = yaml.safe_load(textwrap.dedent(MODELS + SELECTORS_AND_PROFILES))
    for key, value in change.items():
        data[key].update(value) if key in data and isinstance(value, dict) else data.__setitem__(key, value)
        if key == "profiles" and isinstance(value.get("p"), list):
            data[key] = value
    found = refused(tmp_path, yaml.safe_dump(data, sort_keys=False))
    assert [f for _, f, _ in found] == [field], found
    assert found[0][1:] == (field, found[0][2]) and found[0][2].startswith(start), found


def test_pin_and_spillover_selectors_may_name_peers_models_bare_or_qualified(tmp_path: Path) -> None:
    # TestConfig_Selectors_PeerModelFQN, TestConfig_Selectors_SpilloverCoexistence "mixed local
    # and remote targets" (internal/config/selectors_test.go): a selector id may be a bare peer
    # name; peers' targets are left out of the group check.
    extra = """\
    peers:
      remote: {proxy: "http://127.0.0.1:9", models: [remote-model, other]}
    selectors:
      remote-model: {strategy: spillover, targets: [remote/remote-model]}
      mixed: {strategy: spillover, targets: [a, b, other]}
      first: {strategy: pin, targets: [other, a]}
    """
    r = load(tmp_path, MODELS + extra.replace("[a, b, other]", "[a, other]"))
    assert r.selectors["remote-model"].models == ("remote/remote-model",)
    assert r.selectors["mixed"].models == ("a", "remote/other")
    assert r.selectors["mixed"].peers == {"remote/other"}
    assert r.selectors["first"].peers == {"remote/other"}
    found = refused(tmp_path, MODELS + extra)  # a and b still must share a group
    assert [f for _, f, _ in found] == ["selectors.mixed.targets"]


def test_spillover_targets_must_share_a_matrix_set(tmp_path: Path) -> None:
    extra = """\
    matrix: {sets: {ab: a & b, c: c}}
    selectors:
      ok: {strategy: spillover, targets: [a, b]}
      bad: {strategy: spillover, targets: [a, c]}
    """
    found = refused(tmp_path, MODELS + extra)
    assert [(f, m) for _, f, m in found] == [
        ("selectors.bad.targets", "spillover targets must all appear together in one expanded matrix set")
    ]


# --- llama-swap's own example config ---------------------------------------------------------

# Keys of config.example.yaml `halogen serve` refuses by name: none (the web UI's captureBuffer,
# ui and performance are read since issue 20).
STILL_REFUSED: set[str] = set()


def example() -> dict[str, Any]:
    """config.example.yaml with every model's command a fake upstream."""
    data: dict[str, Any] = yaml.safe_load((REFERENCE / "config.example.yaml").read_text())
    for model in data["models"].values():
        model["cmd"] = FAKE
        model.pop("cmdStop", None)
        model["proxy"] = "http://127.0.0.1:${PORT}"
    return data


def test_llama_swaps_example_config_refuses_no_key_by_name(tmp_path: Path) -> None:
    found = refused(tmp_path, yaml.safe_dump(example(), sort_keys=False))
    # What is refused is the example's illustrative names (see below), never a key.
    assert not any("does not support the llama-swap key" in message for _, _, message in found)
    assert {field.split(".")[0].split("[")[0] for _, field, _ in found} <= {
        "routing",
        "hooks",
        "selectors",
        "profiles",
    }


def test_llama_swaps_example_config_loads_with_routing_selectors_and_profiles_intact(tmp_path: Path) -> None:
    data = example()
    for dotted in STILL_REFUSED:
        *parents, last = dotted.split(".")
        node = data
        for part in parents:
            node = node[part]
        del node[last]
    # The example's groups, priorities and spillover name models it says are "illustrative and
    # not defined above"; llama-swap itself refuses them (load.go, group.go). Define them.
    text = yaml.safe_dump(data, sort_keys=False)
    with pytest.raises(Invalid) as caught:
        load(tmp_path, text)
    undefined = {d.field for d in caught.value.diagnostics}
    assert undefined == {
        "routing.router.settings.groups.forever.members[0]",
        "routing.router.settings.groups.forever.members[1]",
        "routing.router.settings.groups.forever.members[2]",
        "routing.router.settings.groups.group1.members[0]",
        "routing.router.settings.groups.group1.members[1]",
        "routing.router.settings.groups.group2.members[1]",
        "routing.router.settings.groups.group2.members[2]",
        "routing.scheduler.settings.fifo.priority.A",
        "routing.scheduler.settings.fifo.priority.B",
        "routing.scheduler.settings.fifo.priority.C",
        "routing.scheduler.settings.fifo.priority.D",
        "hooks.on_startup.preload[0]",
        "selectors.coding-model.targets[1]",
        "selectors.llama.targets[1]",
        "selectors.llama.targets[2]",
        "profiles.coding.pins.llm-plan",
    }
    # "llama" is both a selector and a group member in the example: keep it a selector.
    data["routing"]["router"]["settings"]["groups"]["group1"]["members"].remove("llama")
    data["hooks"]["on_startup"]["preload"] = []
    illustrative = [
        "qwen-unlisted", "modelA", "modelB", "forever-modelA", "forever-modelB", "forever-modelc",
        "A", "B", "C", "D",
    ]  # fmt: skip
    for name in illustrative:
        data["models"][name] = {"cmd": FAKE}
    r = load(tmp_path, yaml.safe_dump(data, sort_keys=False))

    assert r.router == "group" and r.matrix is None  # `use: group`: the matrix beside it is ignored
    # The web UI's keys: captureBuffer 15 MB, the default session headers, performance every 15s.
    assert (r.capture_mb, r.store_path, r.performance_every) == (15, "", 15.0)
    assert r.session_headers == ("X-Session-ID", "X-Litellm-Session-Id")
    assert r.groups["group2"].members == ["docker-llama", "modelA", "modelB"]
    assert r.groups["forever"].persistent
    assert r.priority == {"A": 10, "B": 5, "C": 5, "D": 1}
    assert {sid: s.strategy for sid, s in r.selectors.items()} == {
        "coding-model": "warm",
        "llm-plan": "pin",
        "llama": "spillover",
    }
    assert r.selectors["coding-model"].name == "Coding Model"
    assert r.selectors["coding-model"].metadata == {"purpose": "coding"}
    assert r.selectors["llama"].spillover == 4
    # llm-plan's second target is openrouter's model (the example's peers).
    assert r.selectors["llm-plan"].models == ("gpt-oss-120b", "openrouter/z-ai/glm-4.7")
    assert r.selectors["llm-plan"].peers == {"openrouter/z-ai/glm-4.7"}
    assert dict(r.profiles["coding"].pins) == {
        "llm-code": "gpt-oss-120b",
        "llm-plan": "qwen-unlisted",
        "image-gen": "",
    }

    # The same example's matrix, switched on, compiles once its models exist.
    data["routing"]["router"]["use"] = "matrix"
    for name in [
        "gemma-model",
        "qwen-model",
        "mistral-model",
        "voxtral-model",
        "reranker-model",
        "stable-diffusion",
        "llama-70B",
    ]:
        data["models"][name] = {"cmd": FAKE}
    data["selectors"]["llama"]["targets"] = ["docker-llama"]
    r = load(tmp_path, yaml.safe_dump(data, sort_keys=False))
    assert r.matrix is not None
    assert [s.name for s in r.matrix.program.sets] == ["standard", "with_rerank", "creative", "full"]
    assert r.matrix.evict_costs == {"voxtral-model": 50, "llama-70B": 30}
