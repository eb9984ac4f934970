"""Fitted routing: a site with a memoryBudget and no groups gets a llama-swap matrix whose sets are
the largest combinations that fit. Sites built from the seed's five models, as synthetic sparse
GGUF headers (tests/gguf_shapes.py), plus gpt-oss-120b."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from halogen.compiler import fit
from halogen.compiler.site.lock import write_lock
from tests.compiler.conftest import LLAMA_SWAP_SCHEMA, SITE, SiteTree, halogen
from tests.gguf_shapes import GPT_OSS_120B_MODEL, SEED, sparse_lock, write_models

GiB = 1024**3
BUDGET = "120Gi"


def fitted_site(tree: Callable[..., SiteTree], folder: Path, with_120b: bool) -> SiteTree:
    models = dict(SEED)
    if with_120b:
        models[GPT_OSS_120B_MODEL[0]] = GPT_OSS_120B_MODEL[1]
    paths = write_models(folder, models)
    site_data = {
        **SITE,
        "deployment": {**SITE["deployment"], "resources": {"limits": {"memory": "128Gi"}}},  # type: ignore[dict-item]
        "groups": {},
        "memoryBudget": BUDGET,
    }
    # No metadata: the facts come from the lock (the seed's hand-written ones contradict it).
    site = tree(
        site=site_data,
        models={mid: {"file": rel, "contextSize": ctx} for mid, (_, rel, ctx) in models.items()},
    )
    write_lock(site.root / "halogen.lock", sparse_lock(paths, folder))
    return site


def built(site: SiteTree) -> dict[str, Any]:
    result = halogen("build", "--src", site.root)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load((site.out / "config.yaml").read_text())
    return config


def expanded(config: dict[str, Any]) -> list[set[str]]:
    """The matrix's sets as model ids, read as llama-swap's loader does: vars resolve to models,
    `&` joins (internal/config/matrix.go, internal/matrix/dsl.go)."""
    matrix = config["routing"]["router"]["settings"]["matrix"]
    out = []
    for dsl in matrix["sets"].values():
        assert re.fullmatch(r"[A-Za-z0-9]+( & [A-Za-z0-9]+)*", dsl), dsl
        out.append({matrix["vars"][v] for v in dsl.split(" & ")})
    return out


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.mark.parametrize("with_120b", [False, True], ids=["seed", "seed+gpt-oss-120b"])
def test_no_set_exceeds_the_budget_and_every_model_alone_is_in_a_set(
    tree: Callable[..., SiteTree], ggufs: Path, with_120b: bool
) -> None:
    config = built(fitted_site(tree, ggufs, with_120b))
    need = {mid: model["metadata"]["memory"] for mid, model in config["models"].items()}
    sets = expanded(config)
    for members in sets:
        assert sum(need[m] for m in members) <= 120 * GiB, members
        # Largest: no other model would still fit beside them.
        assert all(sum(need[m] for m in members) + need[o] > 120 * GiB for o in set(need) - members)
    assert set(need) == set().union(*sets)
    if not with_120b:  # the seed's five need some 66 GiB: all stay loaded together
        assert sets == [set(SEED)]
    else:
        assert len(sets) == 5 and all("gpt-oss-120b" in s for s in sets[:4])


def test_the_matrix_is_valid_for_llama_swap_readable_and_deterministic(
    tree: Callable[..., SiteTree], ggufs: Path
) -> None:
    site = fitted_site(tree, ggufs, with_120b=True)
    config = built(site)
    first = (site.out / "config.yaml").read_bytes()
    assert halogen("build", "--src", site.root).returncode == 0
    assert (site.out / "config.yaml").read_bytes() == first
    matrix = config["routing"]["router"]["settings"]["matrix"]
    assert config["routing"]["router"]["use"] == "matrix"
    assert "groups" not in config  # llama-swap: groups or a matrix, not both
    assert matrix["vars"]["qwen32b"] == "qwen2.5-coder-32b-instruct-q5_k_m"
    assert matrix["vars"]["gpt120b"] == "gpt-oss-120b"
    assert list(matrix["sets"]) == [f"fit{i}" for i in range(1, len(matrix["sets"]) + 1)]
    # evict_costs are load costs: the file's size in MiB.
    files = {m: (ggufs / SEED[m][1]).stat().st_size for m in SEED}
    assert matrix["evict_costs"]["qwen32b"] == -(-files["qwen2.5-coder-32b-instruct-q5_k_m"] // 2**20)
    assert all(isinstance(c, int) and c >= 1 for c in matrix["evict_costs"].values())
    schema = json.loads(LLAMA_SWAP_SCHEMA.read_text())
    jsonschema.validate(config, schema)


def test_past_the_limit_of_sets_the_build_stops_at_the_budget(
    tree: Callable[..., SiteTree], ggufs: Path
) -> None:
    # 3B-sized models, 14 of which fit: C(30, 14) combinations.
    shape, rel, _ = SEED["qwen2.5-coder-3b-instruct-q4_k_m"]
    paths = write_models(ggufs, {"small": (shape, rel, 4096)})
    site_data = {**SITE, "groups": {}, "memoryBudget": "20Gi"}
    site_data["deployment"] = {**SITE["deployment"], "resources": {"limits": {"memory": "32Gi"}}}  # type: ignore[dict-item]
    site = tree(site=site_data, models={f"m{i:02d}": {"file": rel, "contextSize": 4096} for i in range(30)})
    write_lock(site.root / "halogen.lock", sparse_lock(paths, ggufs))
    result = halogen("validate", site.root)
    assert result.returncode == 1
    line = next(x for x in result.stderr.splitlines() if "memoryBudget" in x)
    assert line.startswith("halogen.yaml:")
    assert f"30 models make more than {fit.MAX_SETS} combinations that fit 20.0 GiB" in line
    assert "declare groups" in line


def test_a_site_with_groups_of_its_own_keeps_them(tree: Callable[..., SiteTree], ggufs: Path) -> None:
    site = fitted_site(tree, ggufs, with_120b=False)
    data = yaml.safe_load((site.root / "halogen.yaml").read_text())
    data["groups"] = {"main": {"swap": True, "exclusive": True}}
    (site.root / "halogen.yaml").write_text(yaml.safe_dump(data))
    config = built(site)
    assert config.get("routing", {}).get("router", {}).get("use", "group") == "group"


def test_maximal_sets_are_every_largest_combination() -> None:
    sizes = {"a": 60, "b": 50, "c": 40, "d": 10}
    sets = fit.maximal_sets(sizes, 100)
    assert [s.members for s in sets] == [("a", "c"), ("b", "c", "d"), ("a", "d")]
    assert all(x.total >= y.total for x, y in pairwise(sets))
    assert fit.maximal_sets({"huge": 200, "a": 10}, 100) == [fit.FitSet(("a",), 10)]
    with pytest.raises(fit.TooManySets):
        fit.maximal_sets({f"m{i}": 10 for i in range(20)}, 100)  # C(20, 10) sets
