"""A site that routes with a matrix, priorities, selectors and profiles: what it writes, and
what it refuses, with positions."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from halogen.compiler.pipeline import build
from halogen.diagnostics import Invalid
from halogen.llamaswap import io as llamaswap_io
from halogen.runtime.scheduling.eviction import eviction_for

from .conftest import LLAMA_SWAP_SCHEMA, MODEL, SITE, SiteTree

ROUTED = {
    **{k: v for k, v in SITE.items() if k != "groups"},
    "matrix": {
        "sets": {  # not in alphabetical order: the order written is the order ties go by
            "solo": "big",
            "chat": "tiny | small",
            "pair": "+chat & embed",
        },
        "evictCosts": {"embed": 5},
    },
    "selectors": {
        "coder": {
            "strategy": "warm",
            "targets": ["tiny", "small-alias"],
            "name": "Coder",
            "description": "warm",
        },
        "pool": {"strategy": "spillover", "targets": ["tiny", "embed"], "settings": {"spillover": 2}},
    },
    "profiles": {"night": {"description": "quiet", "pins": {"coder": "tiny", "big": None}}},
}
UNGROUPED = {k: v for k, v in MODEL.items() if k != "group"}
MODELS: dict[str, object] = {
    "tiny": {**UNGROUPED, "priority": 5},
    "small": {**UNGROUPED, "file": "small.gguf", "aliases": ["small-alias"]},
    "embed": {**UNGROUPED, "file": "embed.gguf"},
    "big": {**UNGROUPED, "file": "big.gguf"},
}


def written(t: SiteTree) -> dict[str, Any]:
    files, _ = build(t.root)
    config: dict[str, Any] = yaml.safe_load(files["config.yaml"])
    return config


def test_a_matrix_site_writes_the_routing_style_that_llama_swaps_schema_accepts(
    tree: Callable[..., SiteTree],
) -> None:
    config = written(tree(site=ROUTED, models=MODELS))
    jsonschema.Draft7Validator(json.loads(LLAMA_SWAP_SCHEMA.read_text())).validate(config)
    assert "groups" not in config and "matrix" not in config
    router = config["routing"]["router"]
    assert router["use"] == "matrix"
    matrix = router["settings"]["matrix"]
    assert matrix["vars"] == {"m1": "big", "m2": "embed", "m3": "small", "m4": "tiny"}
    assert list(matrix["sets"].items()) == [("solo", "m1"), ("chat", "m4 | m3"), ("pair", "+chat & m2")]
    assert matrix["evict_costs"] == {"m2": 5}
    assert config["routing"]["scheduler"] == {"settings": {"fifo": {"priority": {"tiny": 5}}}}
    assert config["selectors"]["coder"]["targets"] == ["tiny", "small-alias"]
    assert config["profiles"]["night"]["pins"] == {"coder": "tiny", "big": None}


def test_what_the_site_writes_routes_as_the_site_says(tree: Callable[..., SiteTree], tmp_path: Path) -> None:
    files, _ = build(tree(site=ROUTED, models=MODELS).root)
    path = tmp_path / "config.yaml"
    path.write_bytes(files["config.yaml"])
    resolved, _ = llamaswap_io.load(path, environ={})
    router = eviction_for(resolved)
    assert router.admit("embed", ["small", "big"]).evict == ("big",)  # small & embed share "pair"
    assert router.admit("big", ["small", "embed"]).evict == ("small", "embed")
    assert resolved.priority == {"tiny": 5}
    assert resolved.selectors["coder"].models == ("tiny", "small")
    assert dict(resolved.profiles["night"].pins) == {"coder": "tiny", "big": ""}


def test_the_shipped_group_site_writes_routing_router_groups(tree: Callable[..., SiteTree]) -> None:
    config = written(tree())
    assert config["routing"]["router"] == {
        "use": "group",
        "settings": {"groups": {"main": {"members": ["small", "tiny"]}}},
    }
    jsonschema.Draft7Validator(json.loads(LLAMA_SWAP_SCHEMA.read_text())).validate(config)


def lines_of(t: SiteTree) -> list[str]:
    return (t.root / "halogen.yaml").read_text().splitlines()


def refused(t: SiteTree) -> list[tuple[str, int, str, str, str]]:
    with pytest.raises(Invalid) as caught:
        build(t.root)
    return [
        (d.file, d.line, d.field, d.message, d.hint)
        for d in caught.value.diagnostics
        if d.severity == "error"
    ]


def with_site(**changes: Any) -> dict[str, Any]:
    site: dict[str, Any] = json.loads(json.dumps(ROUTED))
    for key, value in changes.items():
        site[key] = value
    return site


@pytest.mark.parametrize(
    ("site", "field", "line_text", "message", "hint"),
    [
        (
            with_site(matrix={"sets": {"chat": "tiny | smal"}}, selectors={}),
            "matrix.sets.chat",
            "    chat: tiny | smal",
            'set "chat": unknown var or model "smal"',
            "did you mean 'small'?",
        ),
        (
            with_site(matrix={"sets": {"chat": "tiny | small-alias"}}, selectors={}),
            "matrix.sets.chat",
            "    chat: tiny | small-alias",
            'set "chat": unknown var or model "small-alias"',
            "did you mean 'small'?",
        ),
        (
            with_site(matrix={"sets": {"a": "+b & tiny", "b": "+a"}}, selectors={}),
            "matrix.sets.a",
            "    a: +b & tiny",
            'circular reference detected involving set "a"',
            "",
        ),
        (
            with_site(matrix={"sets": {"a": "tiny"}, "evictCosts": {"tinny": 2}}, selectors={}),
            "matrix.evictCosts.tinny",
            "    tinny: 2",
            "evict_costs: unknown var or model 'tinny'",
            "did you mean 'tiny'?",
        ),
        (
            with_site(profiles={"night": {"pins": {"coder": "nobody"}}}),
            "profiles.night.pins.coder",
            "      coder: nobody",
            "references unknown model 'nobody'",
            "pin a model, an alias or a selector, or ~ to disable the id",
        ),
        (
            with_site(selectors={"x": {"strategy": "pin", "targets": ["tiny", "ghost"]}}),
            "selectors.x.targets[1]",
            "    - ghost",
            "references unknown model 'ghost'",
            "",
        ),
    ],
)
def test_routing_mistakes_are_reported_where_the_site_wrote_them(
    tree: Callable[..., SiteTree], site: dict[str, Any], field: str, line_text: str, message: str, hint: str
) -> None:
    t = tree(site=site, models=MODELS)
    ((file, line, got_field, got_message, got_hint),) = refused(t)
    assert (file, got_field, got_message, got_hint) == ("halogen.yaml", field, message, hint)
    assert lines_of(t)[line - 1] == line_text


@pytest.mark.parametrize(
    ("selector", "holder"),
    [("tiny", "the id of 'tiny'"), ("Small-Alias", "an alias of 'small'")],
)
def test_a_selector_id_may_not_be_a_model_id_or_alias(
    tree: Callable[..., SiteTree], selector: str, holder: str
) -> None:
    t = tree(site=with_site(selectors={selector: {"strategy": "pin", "targets": ["big"]}}), models=MODELS)
    ((_, line, field, message, _),) = refused(t)
    assert (field, message) == (f"selectors.{selector}", f"selector id {selector!r} is already {holder}")
    assert lines_of(t)[line - 1] == f"  {selector}:"


def test_a_site_routes_with_groups_or_a_matrix_not_both(tree: Callable[..., SiteTree]) -> None:
    t = tree(site=with_site(groups={"main": {}}), models={**MODELS, "tiny": {**MODEL, "priority": 5}})
    assert [(field, message) for _, _, field, message, _ in refused(t)] == [
        ("matrix", "the site declares both groups and a matrix")
    ]


def test_a_site_spills_over_from_a_local_model_to_a_peers(
    tree: Callable[..., SiteTree], tmp_path: Path
) -> None:
    site = with_site(
        peers={"box2": {"proxy": "http://box2.lan:8080", "models": ["big-70b"]}},
        selectors={"auto": {"strategy": "spillover", "targets": ["tiny", "box2/big-70b"]}},
    )
    files, _ = build(tree(site=site, models=MODELS).root)
    path = tmp_path / "config.yaml"
    path.write_bytes(files["config.yaml"])
    resolved, _ = llamaswap_io.load(path, environ={})
    assert resolved.selectors["auto"].models == ("tiny", "box2/big-70b")
    assert resolved.selectors["auto"].peers == {"box2/big-70b"}
    warm = with_site(
        peers={"box2": {"proxy": "http://box2.lan:8080", "models": ["big-70b"]}},
        selectors={"auto": {"strategy": "warm", "targets": ["tiny", "big-70b"]}},
    )
    ((_, _, field, message, _),) = refused(tree(site=warm, models=MODELS))
    assert field == "selectors.auto.targets[1]"
    assert message.startswith('must resolve to a local model for strategy "warm"')
