"""A model file's `variants` become llama-swap's `filters.setParamsByID`, which llama-swap's
schema accepts and `halogen serve` resolves into aliases of the model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jsonschema
import yaml

from halogen.compiler.pipeline import build
from halogen.llamaswap import io

from .conftest import LLAMA_SWAP_SCHEMA, MODEL, SITE, SiteTree


def test_variants_are_written_as_set_params_by_id_keyed_by_id_colon_variant(
    tree: Callable[..., SiteTree], tmp_path: Path
) -> None:
    variants = {
        "low": {"reasoning_effort": "low"},
        "high": {"reasoning_effort": "high", "chat_template_kwargs": {"enable_thinking": True}},
    }
    t = tree(models={"tiny": {**MODEL, "variants": variants}})
    files, _ = build(t.root)
    config = yaml.safe_load(files["config.yaml"])
    jsonschema.Draft7Validator(json.loads(LLAMA_SWAP_SCHEMA.read_text())).validate(config)
    assert config["models"]["tiny"]["filters"]["setParamsByID"] == {
        "tiny:high": {"chat_template_kwargs": {"enable_thinking": True}, "reasoning_effort": "high"},
        "tiny:low": {"reasoning_effort": "low"},
    }
    path = tmp_path / "config.yaml"
    path.write_bytes(files["config.yaml"])
    resolved, _ = io.load(path)
    assert resolved.lookup("tiny:high") == resolved.lookup("tiny:low") == "tiny"
    assert resolved.models["tiny"].set_params_by_id["tiny:low"] == {"reasoning_effort": "low"}


def test_a_model_without_variants_writes_no_set_params_by_id(tree: Callable[..., SiteTree]) -> None:
    files, _ = build(tree(models={"tiny": MODEL}).root)
    assert "setParamsByID" not in files["config.yaml"].decode()


def test_send_loading_state_is_written_globally_and_per_model(tree: Callable[..., SiteTree]) -> None:
    site = {**SITE, "llamaSwap": {**SITE["llamaSwap"], "sendLoadingState": True}}  # type: ignore[dict-item]
    t = tree(site=site, models={"tiny": {**MODEL, "sendLoadingState": False}, "small": MODEL})
    config = yaml.safe_load(build(t.root)[0]["config.yaml"])
    assert config["sendLoadingState"] is True
    assert config["models"]["tiny"]["sendLoadingState"] is False
    assert "sendLoadingState" not in config["models"]["small"]
