"""The memory budget, on sparse GGUF headers shaped like real large models (tests/gguf_shapes.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from halogen.compiler import budget
from halogen.compiler.site.lock import Lock, write_lock
from halogen.llamacpp.gguf_header import read_facts
from tests.compiler.conftest import SITE, SiteTree, halogen
from tests.gguf_shapes import GPT_OSS_20B, GPT_OSS_120B, QWEN25_32B, Shape, sparse_lock, write_sparse

SHAPES = {"qwen32b.gguf": QWEN25_32B, "gpt-oss-20b.gguf": GPT_OSS_20B, "gpt-oss-120b.gguf": GPT_OSS_120B}


@pytest.fixture(scope="module")
def lock(tmp_path_factory: pytest.TempPathFactory) -> Lock:
    folder = tmp_path_factory.mktemp("ggufs")
    return sparse_lock({name: write_sparse(folder / name, shape) for name, shape in SHAPES.items()}, folder)


def site_with(
    tree: Callable[..., SiteTree],
    lock: Lock,
    models: dict[str, dict[str, object]],
    *,
    limit: str = "128Gi",
    memory_budget: str | None = "120Gi",
    groups: dict[str, object] | None = None,
) -> SiteTree:
    site_data: dict[str, object] = {
        **SITE,
        "deployment": {**SITE["deployment"], "resources": {"limits": {"memory": limit}}},  # type: ignore[dict-item]
        "groups": groups if groups is not None else {},
    }
    if memory_budget is not None:
        site_data["memoryBudget"] = memory_budget
    site = tree(site=site_data, models=models)
    write_lock(site.root / "halogen.lock", lock)
    return site


def model(file: str, context: int, **extra: object) -> dict[str, object]:
    return {"file": file, "contextSize": context, **extra}


def test_quantities_read_as_kubernetes_reads_them() -> None:
    assert budget.quantity_bytes("120Gi") == 120 * 2**30
    assert budget.quantity_bytes("128G") == 128 * 10**9
    assert budget.quantity_bytes("1.5Ti") == int(1.5 * 2**40)
    assert budget.quantity_bytes("1e9") == 10**9
    assert budget.quantity_bytes(4096) == 4096
    assert budget.quantity_bytes("500m") is None  # milli-bytes: not a memory size


def test_a_site_whose_models_fit_builds(tree: Callable[..., SiteTree], lock: Lock) -> None:
    site = site_with(
        tree, lock, {"qwen": model("qwen32b.gguf", 32768), "oss": model("gpt-oss-20b.gguf", 32768)}
    )
    result = halogen("build", "--src", site.root)
    assert result.returncode == 0, result.stderr


def test_a_model_alone_over_the_budget_fails_at_its_context_size_with_the_numbers(
    tree: Callable[..., SiteTree], lock: Lock
) -> None:
    # gpt-oss-120b: about 59 GiB of weights; a 48Gi pod cannot hold it at any context.
    site = site_with(
        tree, lock, {"big": model("gpt-oss-120b.gguf", 131072)}, limit="48Gi", memory_budget=None
    )
    result = halogen("validate", site.root)
    assert result.returncode == 1
    line = next(x for x in result.stderr.splitlines() if "big.yaml" in x)
    assert line.startswith("models.d/big.yaml:2:")  # contextSize is the file's second key
    assert "needs 63.7 GiB (weights 58.9 GiB, KV cache 4.5 GiB at 131072 tokens" in line
    assert "over the budget of 47.8 GiB (the pod's memory limit less 0.2 GiB for the proxy)" in line


def test_a_memory_limit_under_the_budget_fails_at_the_limit(
    tree: Callable[..., SiteTree], lock: Lock
) -> None:
    site = site_with(tree, lock, {"qwen": model("qwen32b.gguf", 8192)}, limit="64Gi", memory_budget="120Gi")
    result = halogen("validate", site.root)
    assert result.returncode == 1
    assert (
        "deployment.resources.limits.memory: the pod's memory limit 64Gi (64.0 GiB) is under the memoryBudget 120Gi"
        in result.stderr
    )


def test_a_group_that_runs_its_members_together_past_the_budget_fails_at_the_group(
    tree: Callable[..., SiteTree], lock: Lock
) -> None:
    site = site_with(
        tree,
        lock,
        {
            "big": model("gpt-oss-120b.gguf", 131072, group="all"),
            "qwen": model("qwen32b.gguf", 32768, group="all"),
            "oss": model("gpt-oss-20b.gguf", 131072, group="all"),
        },
        memory_budget="96Gi",
        groups={"all": {"swap": False, "exclusive": True}},
    )
    result = halogen("validate", site.root)
    assert result.returncode == 1
    (line,) = [x for x in result.stderr.splitlines() if "groups.all.swap" in x]
    assert "group 'all' runs its members together: big (" in line and "over the budget of 96.0 GiB" in line
    # The same models in a swapping group fit: one at a time.
    site = site_with(
        tree,
        lock,
        {
            m: model(f, 32768, group="all")
            for m, f in (("big", "gpt-oss-120b.gguf"), ("qwen", "qwen32b.gguf"))
        },
        memory_budget="96Gi",
        groups={"all": {"swap": True, "exclusive": True}},
    )
    assert halogen("validate", site.root).returncode == 0


def test_non_exclusive_groups_are_counted_beside_the_largest_exclusive_one(
    tree: Callable[..., SiteTree], lock: Lock
) -> None:
    site = site_with(
        tree,
        lock,
        {
            "big": model("gpt-oss-120b.gguf", 65536, group="main"),
            "qwen": model("qwen32b.gguf", 32768, group="side"),
            "oss": model("gpt-oss-20b.gguf", 65536, group="side2"),
        },
        memory_budget="100Gi",
        groups={
            "main": {"swap": True, "exclusive": True},
            "side": {"swap": True, "exclusive": False},
            "side2": {"swap": True, "exclusive": False},
        },
    )
    result = halogen("validate", site.root)
    assert result.returncode == 1
    (line,) = [x for x in result.stderr.splitlines() if "can run" in x]
    assert "groups.side.exclusive" in line and "'main', 'side', 'side2'" in line
    assert "big (" in line and "qwen (" in line and "oss (" in line


def test_models_without_locked_facts_are_not_counted(tree: Callable[..., SiteTree], lock: Lock) -> None:
    site = site_with(tree, lock, {"unknown": model("not-locked.gguf", 4096)}, limit="1Gi", memory_budget=None)
    assert halogen("validate", site.root).returncode == 0


@pytest.mark.parametrize(
    ("shape", "expected"),
    [(QWEN25_32B, 32.76e9), (GPT_OSS_20B, 20.91e9), (GPT_OSS_120B, 116.8e9)],
    ids=["qwen2.5-32b", "gpt-oss-20b", "gpt-oss-120b"],
)
def test_sparse_headers_read_back_with_the_real_models_parameter_counts(
    tmp_path: Path, shape: Shape, expected: float
) -> None:
    facts = read_facts(write_sparse(tmp_path / "x.gguf", shape))
    assert facts.parameterCount == pytest.approx(expected, rel=0.01)  # the model cards' counts
    assert facts.slidingWindowLayers == (list(range(0, shape.layers, 2)) if shape.sliding_window else [])
    assert (tmp_path / "x.gguf").stat().st_blocks * 512 < 1 << 20  # sparse: the data is a hole


def test_a_matrix_set_that_lets_models_run_together_past_the_budget_is_an_error_at_the_set(
    tree: Callable[..., SiteTree], lock: Lock
) -> None:
    site = site_with(
        tree,
        lock,
        {
            "big": model("gpt-oss-120b.gguf", 131072),
            "qwen": model("qwen32b.gguf", 32768),
            "oss": model("gpt-oss-20b.gguf", 32768),
        },
        memory_budget="80Gi",
    )
    data = yaml.safe_load((site.root / "halogen.yaml").read_text())
    # "fits" allows big+oss (about 68 GiB) or qwen+oss; "over" inlines it and adds qwen: big+oss+qwen.
    data["matrix"] = {"sets": {"fits": "(big | qwen) & oss", "over": "+fits & qwen", "alone": "big"}}
    (site.root / "halogen.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    result = halogen("validate", site.root)
    assert result.returncode == 1
    (line,) = [x for x in result.stderr.splitlines() if "matrix set" in x]
    written = (site.root / "halogen.yaml").read_text().splitlines()
    row = next(i for i, t in enumerate(written, 1) if t.strip().startswith("over:"))
    assert line.startswith(f"halogen.yaml:{row}:"), line
    assert "matrix.sets.over: matrix set 'over' lets big (" in line
    assert "qwen (" in line and "oss (" in line and "over the budget of 80.0 GiB" in line
