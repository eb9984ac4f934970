"""Same input, same bytes; any semantic change, a new config-version."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from halogen.compiler.pipeline import build

from .conftest import MODEL, SITE, SiteTree


def _version(t: SiteTree) -> str:
    files, _ = build(t.root)
    return str(
        yaml.safe_load(files["deployment.yaml"])["spec"]["template"]["metadata"]["annotations"][
            "config-version"
        ]
    )


def test_file_order_and_comments_change_nothing(tree: Callable[..., SiteTree]) -> None:
    a = tree(models={"tiny": MODEL, "small": {**MODEL, "file": "small.gguf"}})
    b = tree(models={"small": {**MODEL, "file": "small.gguf"}, "tiny": MODEL})
    b.model("tiny", "# a comment\n" + yaml.safe_dump(dict(reversed(list(MODEL.items())))) + "# trailing\n")
    assert build(a.root)[0] == build(b.root)[0]


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


@pytest.mark.parametrize(
    ("target", "path", "value"),
    [
        ("model", "contextSize", 1024),
        ("model", "file", "tiny/other.gguf"),
        ("model", "args", ["--jinja"]),
        ("model", "env", {"EXTRA": "1"}),
        ("model", "aliases", ["t"]),
        ("model", "ttl", 60),
        ("model", "name", "Other"),
        ("model", "description", "changed"),
        ("model", "metadata", {"family": "x"}),
        ("model", "capabilities", ["completion"]),
        ("model", "unlisted", True),
        ("model", "group", None),
        ("site", "backends.cpu.args", ["--threads", "3", "-ngl", "0"]),
        ("site", "backends.cpu.env", {}),
        ("site", "backends.cpu.host", "0.0.0.0"),
        ("site", "llamaSwap.globalTTL", 5),
        ("site", "groups.main.exclusive", False),
        ("site", "deployment.models.mountPath", "/data"),
    ],
)
def test_every_semantic_change_changes_the_config_version(
    tree: Callable[..., SiteTree], target: str, path: str, value: Any
) -> None:
    base = tree(models={"tiny": MODEL, "small": {**MODEL, "file": "small.gguf"}})
    if target == "model":
        changed_model = {k: v for k, v in _set(MODEL, path, value).items() if v is not None}
        other = tree(models={"tiny": changed_model, "small": {**MODEL, "file": "small.gguf"}})
    else:
        other = tree(site=_set(SITE, path, value))
    assert _version(base) != _version(other)


def test_ambiguous_strings_are_quoted_so_yaml_1_1_reads_them_as_strings(
    tree: Callable[..., SiteTree],
) -> None:
    t = tree(models={"tiny": MODEL})
    t.model(
        "tiny",
        yaml.safe_dump({k: v for k, v in MODEL.items() if k != "name"})
        + "name: 'yes'\ndescription: 'on'\nmetadata:\n  parameterSize: '1e3'\n  family: '0x1F'\n",
    )
    files, _ = build(t.root)
    model = yaml.safe_load(files["config.yaml"])["models"]["tiny"]
    assert (model["name"], model["description"]) == ("yes", "on")
    assert model["metadata"]["parameterSize"] == "1e3" and model["metadata"]["family"] == "0x1F"
    configmap = yaml.safe_load(files["configmap.yaml"])
    assert configmap["data"]["config.yaml"] == files["config.yaml"].decode()
