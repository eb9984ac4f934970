"""The site's llamaSwap globals for llama-swap's web UI (captureBuffer, ui, performance) reach
config.yaml as llama-swap's schema takes them, and `halogen serve` reads them back."""

from __future__ import annotations

import json
from collections.abc import Callable

import jsonschema
import pytest
import yaml

from halogen.compiler.pipeline import build
from halogen.diagnostics import Invalid
from halogen.llamaswap.config import Config
from halogen.llamaswap.resolve import resolve

from .conftest import LLAMA_SWAP_SCHEMA, MODEL, SITE, SiteTree


def test_the_ui_globals_reach_the_config_and_llama_swaps_schema_takes_them(
    tree: Callable[..., SiteTree],
) -> None:
    swap = {
        "captureBuffer": 0,
        "ui": {"activity": {"session_id": ["X-Trace-ID"]}},
        "performance": {"every": "1m30s"},
    }
    files, _ = build(tree(site={**SITE, "llamaSwap": swap}, models={"tiny": MODEL}).root)
    config = yaml.safe_load(files["config.yaml"])
    jsonschema.Draft7Validator(json.loads(LLAMA_SWAP_SCHEMA.read_text())).validate(config)
    assert config["captureBuffer"] == 0
    assert config["ui"] == {"activity": {"session_id": ["X-Trace-ID"]}}
    assert config["performance"] == {"every": "1m30s"}
    resolved = resolve(Config.model_validate(config))
    assert (resolved.capture_mb, resolved.session_headers, resolved.performance_every) == (
        0,
        ("X-Trace-ID",),
        90.0,
    )


def test_the_defaults_write_no_ui_key(tree: Callable[..., SiteTree]) -> None:
    files, _ = build(tree(site=SITE, models={"tiny": MODEL}).root)
    config = yaml.safe_load(files["config.yaml"])
    assert not {"captureBuffer", "ui", "performance", "store"} & set(config)


@pytest.mark.parametrize("every", ["4s", "500ms", "5", ".5m", "5µs", "fast"])
def test_a_performance_interval_llama_swap_refuses_is_refused_in_the_site(
    tree: Callable[..., SiteTree], every: str
) -> None:
    with pytest.raises(Invalid) as caught:
        build(
            tree(site={**SITE, "llamaSwap": {"performance": {"every": every}}}, models={"tiny": MODEL}).root
        )
    assert any("performance.every" in d.field for d in caught.value.diagnostics), caught.value.diagnostics
