"""Peers declared in halogen.yaml: written as llama-swap's `peers`, the key named as
`${env.NAME}` and passed from a Kubernetes Secret by the Deployment, never written to out/."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
import yaml

from halogen.compiler.pipeline import build
from halogen.diagnostics import Invalid

from .conftest import LLAMA_SWAP_SCHEMA, MODEL, SITE, SiteTree

PEERS: dict[str, Any] = {
    "box2": {
        "proxy": "http://box2.lan:8080",
        "models": ["qwen3", "gemma"],
        "apiKey": {"secret": "box2-key", "key": "token", "env": "BOX2_API_KEY"},
        "timeouts": {"connect": 5},
        "filters": {"stripParams": ["seed"]},
    },
    "hosted": {"proxy": "https://api.example.com/v1", "models": ["big"]},
}


def test_site_peers_are_written_with_the_key_from_a_secret(tree: Callable[..., SiteTree]) -> None:
    files, _ = build(tree(site={**SITE, "peers": PEERS}, models={"tiny": MODEL}).root)
    config = yaml.safe_load(files["config.yaml"])
    jsonschema.Draft7Validator(json.loads(LLAMA_SWAP_SCHEMA.read_text())).validate(config)
    assert config["peers"]["box2"] == {
        "proxy": "http://box2.lan:8080",
        "apiKey": "${env.BOX2_API_KEY}",
        "models": ["qwen3", "gemma"],
        "filters": {"stripParams": "seed"},
        "timeouts": {"connect": 5},
    }
    assert config["peers"]["hosted"] == {"proxy": "https://api.example.com/v1", "models": ["big"]}
    deployment = yaml.safe_load(files["deployment.yaml"])
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {
        "name": "BOX2_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "box2-key", "key": "token"}},
    } in env


def test_a_peer_name_that_is_a_local_alias_is_an_error_at_the_peer(tree: Callable[..., SiteTree]) -> None:
    t = tree(site={**SITE, "peers": PEERS}, models={"tiny": {**MODEL, "aliases": ["hosted/big"]}})
    with pytest.raises(Invalid) as raised:
        build(t.root)
    said = str(raised.value)
    assert "'hosted/big' is also a local model id or alias" in said and "halogen.yaml" in said
