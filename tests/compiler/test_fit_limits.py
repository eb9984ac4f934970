"""The edges of fitted routing's search (halogen/compiler/fit.py): exactly MAX_SETS combinations still make
a matrix and one more stops the build; a model over the budget alone is in no set, and a site
where no model fits alone gets no matrix at all (the budget's own error says why), never a set
with no members."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from halogen.compiler import fit
from halogen.compiler.site.load import load
from halogen.compiler.site.lock import Lock
from tests.compiler.conftest import SiteTree, halogen
from tests.compiler.test_budget import model, site_with
from tests.gguf_shapes import QWEN25_32B, sparse_lock, write_sparse


def test_exactly_the_limit_of_combinations_is_a_matrix_and_one_more_is_refused() -> None:
    # Models of one size, each alone filling the budget: one set per model.
    hundred = {f"m{i:03d}": 10 for i in range(fit.MAX_SETS)}
    sets = fit.maximal_sets(hundred, 10)
    assert len(sets) == fit.MAX_SETS
    assert sorted(s.members for s in sets) == [(m,) for m in sorted(hundred)]
    with pytest.raises(fit.TooManySets):
        fit.maximal_sets({**hundred, "one-more": 10}, 10)


def test_no_set_is_made_of_no_models() -> None:
    assert fit.maximal_sets({"a": 50}, 10) == []
    assert fit.maximal_sets({}, 10) == []
    # A model over the budget alone is left out; the others still get their sets.
    assert fit.maximal_sets({"a": 50, "b": 5, "c": 4}, 10) == [fit.FitSet(("b", "c"), 9)]


@pytest.fixture(scope="module")
def lock(tmp_path_factory: pytest.TempPathFactory) -> Lock:
    folder = tmp_path_factory.mktemp("ggufs")
    return sparse_lock({"qwen32b.gguf": write_sparse(folder / "qwen32b.gguf", QWEN25_32B)}, folder)


def test_a_site_where_no_model_fits_alone_gets_no_matrix_and_the_budget_error(
    tree: Callable[..., SiteTree], lock: Lock
) -> None:
    site = site_with(tree, lock, {"qwen": model("qwen32b.gguf", 32768)}, limit="128Gi", memory_budget="16Gi")
    loaded, _ = load(site.root)
    assert loaded is not None
    assert fit.fitted(loaded) == (None, [])
    result = halogen("validate", site.root)
    assert result.returncode == 1
    (line,) = [x for x in result.stderr.splitlines() if "qwen.yaml" in x]
    assert "needs 29.3 GiB" in line and "over the budget of 16.0 GiB (memoryBudget)" in line
