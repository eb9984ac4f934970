"""The budget counts what a model holds at its context, not its file alone: a model whose weights
fit and whose long context does not is refused; and a group or matrix error names the largest
model a swapping group can hold, which is what it holds at worst."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from halogen.compiler.site.lock import Lock
from tests.compiler.conftest import SiteTree, halogen
from tests.compiler.test_budget import model, site_with
from tests.gguf_shapes import GPT_OSS_20B, GPT_OSS_120B, QWEN25_32B, sparse_lock, write_sparse

SHAPES = {"qwen32b.gguf": QWEN25_32B, "gpt-oss-20b.gguf": GPT_OSS_20B, "gpt-oss-120b.gguf": GPT_OSS_120B}


@pytest.fixture(scope="module")
def lock(tmp_path_factory: pytest.TempPathFactory) -> Lock:
    folder = tmp_path_factory.mktemp("ggufs")
    return sparse_lock({name: write_sparse(folder / name, shape) for name, shape in SHAPES.items()}, folder)


def test_a_model_whose_weights_fit_but_whose_long_context_does_not_is_refused(
    tree: Callable[..., SiteTree], lock: Lock
) -> None:
    # Qwen2.5-32B Q5_K_M: 21.0 GiB of weights; at 32768 tokens the f16 KV cache adds 8 GiB.
    site = site_with(tree, lock, {"qwen": model("qwen32b.gguf", 32768)}, limit="26Gi", memory_budget=None)
    result = halogen("validate", site.root)
    assert result.returncode == 1, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if "qwen.yaml" in x]
    assert "needs 29.3 GiB (weights 21.0 GiB, KV cache 8.0 GiB at 32768 tokens" in line
    assert "over the budget of 25.8 GiB" in line
    # The same model at a short context fits.
    site = site_with(tree, lock, {"qwen": model("qwen32b.gguf", 4096)}, limit="26Gi", memory_budget=None)
    assert halogen("validate", site.root).returncode == 0


def test_a_swapping_group_is_counted_at_its_largest_member_and_the_error_names_it(
    tree: Callable[..., SiteTree], lock: Lock
) -> None:
    # "main" swaps between gpt-oss-120b (about 60 GiB at 32768) and gpt-oss-20b (12 GiB); "side"
    # (qwen, 29 GiB) runs beside whichever is loaded. Beside the 20b it fits 80Gi; beside the 120b not.
    site = site_with(
        tree,
        lock,
        {
            "big": model("gpt-oss-120b.gguf", 32768, group="main"),
            "small": model("gpt-oss-20b.gguf", 32768, group="main"),
            "qwen": model("qwen32b.gguf", 32768, group="side"),
        },
        memory_budget="80Gi",
        groups={"main": {"swap": True, "exclusive": True}, "side": {"swap": True, "exclusive": False}},
    )
    result = halogen("validate", site.root)
    assert result.returncode == 1, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if "can run" in x]
    assert "big (" in line and "qwen (" in line and "small (" not in line
