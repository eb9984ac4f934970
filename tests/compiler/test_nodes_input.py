"""`nodes:` in halogen.yaml and `node:`/`split:` in model files: what is refused, at the value
that breaks it (file:line:col), with what to do; and the console script exits 1 without a
traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from halogen.compiler.pipeline import compile_config
from halogen.diagnostics import Invalid

from .conftest import MODEL, SITE, SiteTree

HALOGEN = Path(sys.executable).with_name("halogen")  # the installed console script

SITE_NODES: dict[str, Any] = {
    **{k: v for k, v in SITE.items() if k != "groups"},
    "backends": {
        **SITE["backends"],
        "rocm": {"args": ["-ngl", "999"], "devices": ["/dev/dri", "/dev/kfd"], "supplementalGroups": [44]},
    },
    "nodes": {
        "halo-a": {"memoryBudget": "7Gi", "frontDoor": True},
        "halo-b": {"memoryBudget": "7Gi", "backends": ["cpu"]},
    },
}
PLAIN = {**{k: v for k, v in MODEL.items() if k != "group"}, "backend": "cpu"}


def _problems(t: SiteTree) -> list[str]:
    with pytest.raises(Invalid) as raised:
        compile_config(t.root)
    return [d.text() for d in raised.value.diagnostics if d.severity == "error"]


def _site(**nodes: Any) -> dict[str, Any]:
    return {**SITE_NODES, "nodes": nodes}


def test_a_model_on_an_unknown_node_is_an_error_at_its_node_with_a_did_you_mean(
    tree: Callable[..., SiteTree],
) -> None:
    t = tree(site=SITE_NODES, models={"tiny": {**PLAIN, "node": "halo-c"}})
    [problem] = _problems(t)
    assert problem.startswith("models.d/tiny.yaml:5:1: node: node 'halo-c' is not declared in halogen.yaml")
    assert "did you mean" in problem


def test_an_unknown_node_in_a_split_is_an_error_at_its_item(tree: Callable[..., SiteTree]) -> None:
    t = tree(site=SITE_NODES, models={"tiny": {**PLAIN, "split": ["halo-a", "halo-x"]}})
    [problem] = _problems(t)
    assert re.match(r"models\.d/tiny\.yaml:7:3: split\[1\]: node 'halo-x' is not declared", problem)


def test_a_node_named_twice_in_a_split_is_an_error(tree: Callable[..., SiteTree]) -> None:
    t = tree(site=SITE_NODES, models={"tiny": {**PLAIN, "split": ["halo-a", "halo-a"]}})
    [problem] = _problems(t)
    assert "split[1]: node 'halo-a' is named twice" in problem


def test_two_front_doors_are_an_error_at_the_second(tree: Callable[..., SiteTree]) -> None:
    site = _site(
        **{
            "halo-a": {"memoryBudget": "7Gi", "frontDoor": True},
            "halo-b": {"memoryBudget": "7Gi", "frontDoor": True},
        }
    )
    [problem] = _problems(tree(site=site, models={"tiny": PLAIN}))
    assert re.match(
        r"halogen\.yaml:\d+:\d+: nodes\.halo-b\.frontDoor: 'halo-a' is already the front door", problem
    )


def test_no_front_door_is_an_error_at_nodes(tree: Callable[..., SiteTree]) -> None:
    site = _site(**{"halo-a": {"memoryBudget": "7Gi"}, "halo-b": {"memoryBudget": "7Gi"}})
    [problem] = _problems(tree(site=site, models={"tiny": PLAIN}))
    assert re.match(r"halogen\.yaml:\d+:\d+: nodes: no node is the front door \(set frontDoor: true", problem)


def test_a_pinned_model_whose_backend_the_node_lacks_is_an_error_at_its_node(
    tree: Callable[..., SiteTree],
) -> None:
    t = tree(site=SITE_NODES, models={"tiny": {**PLAIN, "backend": "rocm", "node": "halo-b"}})
    [problem] = _problems(t)
    assert "node: node 'halo-b' does not run backend 'rocm' (its backends: cpu)" in problem
    assert "add 'rocm' to nodes.halo-b.backends" in problem


def test_a_split_over_a_node_that_lacks_its_backend_is_an_error_at_that_item(
    tree: Callable[..., SiteTree],
) -> None:
    t = tree(site=SITE_NODES, models={"tiny": {**PLAIN, "backend": "rocm", "split": ["halo-a", "halo-b"]}})
    [problem] = _problems(t)
    assert "split[1]: node 'halo-b' does not run backend 'rocm'" in problem


def test_a_node_naming_an_unknown_backend_is_an_error_at_it(tree: Callable[..., SiteTree]) -> None:
    site = _site(**{"halo-a": {"memoryBudget": "7Gi", "frontDoor": True, "backends": ["cpu", "rcom"]}})
    [problem] = _problems(tree(site=site, models={"tiny": PLAIN}))
    assert (
        "nodes.halo-a.backends[1]: backend 'rcom' is not declared in halogen.yaml (did you mean 'rocm'?"
        in problem
    )


def test_node_and_split_must_agree_on_the_main_node(tree: Callable[..., SiteTree]) -> None:
    t = tree(site=SITE_NODES, models={"tiny": {**PLAIN, "node": "halo-b", "split": ["halo-a", "halo-b"]}})
    [problem] = _problems(t)
    assert "node: node 'halo-b' is not the split's main node 'halo-a'" in problem


def test_a_split_model_may_not_write_the_flags_halogen_writes(tree: Callable[..., SiteTree]) -> None:
    t = tree(
        site=SITE_NODES, models={"tiny": {**PLAIN, "args": ["--rpc", "x:1"], "split": ["halo-a", "halo-b"]}}
    )
    [problem] = _problems(t)
    assert "args[0]: --rpc is written by halogen for a split model" in problem


def test_node_without_nodes_is_an_error(tree: Callable[..., SiteTree]) -> None:
    t = tree(models={"tiny": {**MODEL, "node": "halo-a"}})
    [problem] = _problems(t)
    assert "node: `node` names a node, and halogen.yaml declares no `nodes:`" in problem


def test_a_node_id_that_is_no_kubernetes_name_is_refused(tree: Callable[..., SiteTree]) -> None:
    site = _site(**{"Halo_A": {"memoryBudget": "7Gi", "frontDoor": True}})
    t = tree(site=site, models={"tiny": PLAIN})
    with pytest.raises(Invalid) as raised:
        compile_config(t.root)
    assert "nodes.Halo_A" in str(raised.value) and "a Kubernetes name" in str(raised.value)


def test_the_console_script_reports_a_bad_node_with_exit_1_and_no_traceback(
    tree: Callable[..., SiteTree],
) -> None:
    t = tree(site=SITE_NODES, models={"tiny": {**PLAIN, "node": "halo-c"}})
    done = subprocess.run(
        [HALOGEN, "build"], cwd=t.root / "models.d", capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert "models.d/tiny.yaml:5:1: node: node 'halo-c' is not declared" in done.stderr
    assert "Traceback" not in done.stderr and not t.out.exists()


def test_an_ipv6_address_is_refused_since_rpc_cannot_take_it(tree: Callable[..., SiteTree]) -> None:
    site = _site(**{"halo-a": {"memoryBudget": "7Gi", "frontDoor": True, "address": "fd00::1"}})
    [problem] = _problems(tree(site=site, models={"tiny": PLAIN}))
    assert "nodes.halo-a.address: fd00::1 is an IPv6 address, which llama.cpp's --rpc cannot take" in problem


def test_an_address_is_where_the_other_nodes_go_and_a_warning_says_out_does_not_open_it(
    tree: Callable[..., SiteTree],
) -> None:
    site = _site(
        **{
            "halo-a": {"memoryBudget": "7Gi", "frontDoor": True, "address": "127.0.0.1", "port": 8081},
            "halo-b": {"memoryBudget": "7Gi", "address": "127.0.0.1", "port": 8082, "rpcPort": 50053},
        }
    )
    split = {**PLAIN, "backend": "rocm", "split": ["halo-a", "halo-b"]}  # a GPU main: no layer count needed
    t = tree(site=site, models={"tiny": split, "small": {**PLAIN, "node": "halo-b"}})
    compiled = compile_config(t.root)
    a = compiled.nodes["halo-a"].config
    assert a.peers["halo-b"].proxy == "http://127.0.0.1:8082"
    assert "--rpc 127.0.0.1:50053" in a.models["tiny"].cmd
    warned = [d.text() for d in compiled.warnings if d.field.startswith("nodes.")]
    assert any("nodes.halo-b.address: the other nodes reach 'halo-b' at 127.0.0.1" in w for w in warned)


def test_two_nodes_at_one_address_and_port_are_refused(tree: Callable[..., SiteTree]) -> None:
    site = _site(
        **{
            "halo-a": {"memoryBudget": "7Gi", "frontDoor": True, "address": "127.0.0.1"},
            "halo-b": {"memoryBudget": "7Gi", "address": "127.0.0.1"},
        }
    )
    problems = _problems(tree(site=site, models={"tiny": PLAIN}))
    assert any("nodes.halo-b.port: 127.0.0.1:8080 is already the proxy of 'halo-a'" in p for p in problems)


def test_a_split_on_a_cpu_main_needs_the_locks_layer_count(tree: Callable[..., SiteTree]) -> None:
    t = tree(site=SITE_NODES, models={"tiny": {**PLAIN, "split": ["halo-a", "halo-b"]}})
    [problem] = _problems(t)
    assert problem.startswith(
        "models.d/tiny.yaml:5:1: split: 'halo-a' keeps its share of the layers on the CPU"
    )
    assert "run `halogen lock`" in problem


def test_a_node_whose_names_would_pass_63_characters_is_refused(tree: Callable[..., SiteTree]) -> None:
    long_id = "n" * 40
    site = _site(**{long_id: {"memoryBudget": "7Gi", "frontDoor": True}})
    site["deployment"] = {**SITE["deployment"], "name": "a" * 20}
    [problem] = _problems(tree(site=site, models={"tiny": PLAIN}))
    assert (
        f"nodes.{long_id}: the name '{'a' * 20}-{long_id}-rpc' of its rpc-server's Service is 65 characters"
        in problem
    )


def test_a_node_budget_that_is_no_memory_size_is_an_error_at_it(tree: Callable[..., SiteTree]) -> None:
    site = _site(**{"halo-a": {"memoryBudget": "100000000000000000000Gi", "frontDoor": True}})
    [problem] = _problems(tree(site=site, models={"tiny": PLAIN}))
    assert "nodes.halo-a.memoryBudget: '100000000000000000000Gi' is more than the 2^63 - 1 bytes" in problem


def test_the_nodes_send_each_other_the_sites_api_key_from_its_secret(tree: Callable[..., SiteTree]) -> None:
    site = {**SITE_NODES, "apiKeys": [{"secret": "llm-keys", "key": "token", "env": "LLM_KEY"}]}
    t = tree(site=site, models={"tiny": {**PLAIN, "node": "halo-a"}, "small": {**PLAIN, "node": "halo-b"}})
    compiled = compile_config(t.root)
    assert compiled.nodes["halo-b"].config.peers["halo-a"].apiKey == "${env.LLM_KEY}"
    assert compiled.nodes["halo-b"].config.apiKeys == ["${env.LLM_KEY}"]


def test_halogen_validate_checks_a_two_node_site_from_a_sub_folder(tree: Callable[..., SiteTree]) -> None:
    t = tree(site=SITE_NODES, models={"tiny": {**PLAIN, "node": "halo-b"}})
    done = subprocess.run(
        [HALOGEN, "validate"], cwd=t.root / "models.d", capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    t.model("tiny", {**PLAIN, "node": "halo-z"})
    done = subprocess.run(
        [HALOGEN, "validate"], cwd=t.root / "models.d", capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1 and "node 'halo-z' is not declared" in done.stderr
