"""llama-swap keys a site carries into config.yaml as given: client API keys from a Secret, the
log time format, /upstream's ignored paths, and a model's proxy, timeouts, compat, capabilities,
unloadTimeout and free-form metadata (what `halogen import` brings over from a llama-swap config)."""

from __future__ import annotations

import json
from collections.abc import Callable

import jsonschema
import yaml

from halogen.compiler.pipeline import build

from .conftest import LLAMA_SWAP_SCHEMA, MODEL, SITE, SiteTree

API_KEYS = [{"secret": "llm-api-keys", "key": "key1", "env": "LLM_API_KEY_1"}]


def test_api_keys_are_named_as_environment_variables_filled_from_a_secret(
    tree: Callable[..., SiteTree],
) -> None:
    files, _ = build(tree(site={**SITE, "apiKeys": API_KEYS}, models={"tiny": MODEL}).root)
    config = yaml.safe_load(files["config.yaml"])
    assert config["apiKeys"] == ["${env.LLM_API_KEY_1}"]
    container = yaml.safe_load(files["deployment.yaml"])["spec"]["template"]["spec"]["containers"][0]
    assert {
        "name": "LLM_API_KEY_1",
        "valueFrom": {"secretKeyRef": {"name": "llm-api-keys", "key": "key1"}},
    } in (container["env"])


def test_log_time_format_and_upstream_ignore_paths_reach_the_config(tree: Callable[..., SiteTree]) -> None:
    swap = {"healthCheckTimeout": 60, "logTimeFormat": "rfc3339", "upstream": {"ignorePaths": ["^/ws$"]}}
    files, _ = build(tree(site={**SITE, "llamaSwap": swap}, models={"tiny": MODEL}).root)
    config = yaml.safe_load(files["config.yaml"])
    assert config["logTimeFormat"] == "rfc3339"
    assert config["upstream"] == {"ignorePaths": ["^/ws$"]}


def test_a_model_carries_llama_swap_keys_it_has_no_key_of_its_own_for(tree: Callable[..., SiteTree]) -> None:
    carried = {
        "proxy": "http://127.0.0.1:${PORT}",
        "unloadTimeout": 20,
        "timeouts": {"responseHeader": 60},
        "compat": {"ignoreWebsockets": True},
        "capabilities": {"in": ["text", "image"], "tools": True},
        "metadata": {"purpose": "coding"},
    }
    files, _ = build(tree(models={"tiny": {**MODEL, "llamaSwap": carried}}).root)
    config = yaml.safe_load(files["config.yaml"])
    jsonschema.Draft7Validator(json.loads(LLAMA_SWAP_SCHEMA.read_text())).validate(config)
    model = config["models"]["tiny"]
    assert model["proxy"] == "http://127.0.0.1:${PORT}"
    assert model["unloadTimeout"] == 20
    assert model["timeouts"] == {"responseHeader": 60}
    assert model["compat"] == {"ignoreWebsockets": True}
    assert model["capabilities"] == {"in": ["text", "image"], "tools": True}
    assert model["metadata"]["purpose"] == "coding"
