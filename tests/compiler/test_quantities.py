"""Memory quantities past what Kubernetes holds are errors at their position, never a crash."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from halogen.compiler import budget
from tests.compiler.conftest import SITE, SiteTree

HALOGEN = Path(sys.executable).with_name("halogen")


def test_a_quantity_reads_up_to_the_largest_kubernetes_holds_and_no_further() -> None:
    assert budget.quantity_bytes("9223372036854775807") == 2**63 - 1
    assert budget.quantity_bytes("9223372036854775808") is None
    assert budget.quantity_bytes("8191Pi") == 8191 * 2**50
    for value in ("1e400", "1e1000000", "1e99999999999999999999", "9.3e18", "1" + "0" * 5000):
        assert budget.quantity_bytes(value) is None
        assert budget.too_large(value) is not None
    assert budget.quantity_bytes("1e-1000000") == 0  # less than a byte: no overflow either way
    assert budget.too_large("120Gi") is None and budget.too_large("500m") is None


def _site_with(tree: Callable[..., SiteTree], memory_budget: str | None, limit: str) -> SiteTree:
    deployment = {**SITE["deployment"], "resources": {"limits": {"memory": limit}}}  # type: ignore[dict-item]
    site: dict[str, object] = {**SITE, "deployment": deployment}
    if memory_budget is not None:
        site["memoryBudget"] = memory_budget
    made = tree(site=site)
    text = (made.root / "halogen.yaml").read_text()
    for value in {memory_budget, limit} - {
        None
    }:  # quoted, as a user writes a string YAML 1.2 reads as a number
        text = text.replace(f": {value}\n", f': "{value}"\n')
    made.site(text)
    return made


@pytest.mark.parametrize(
    ("memory_budget", "limit", "where"),
    [
        ("1e400", "8Gi", "memoryBudget: '1e400'"),
        ("1e1000000", "8Gi", "memoryBudget: '1e1000000'"),
        (None, "1e1000000", "deployment.resources.limits.memory: '1e1000000'"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "build"])
def test_an_overflowing_memory_quantity_is_an_error_at_its_position_with_exit_1(
    memory_budget: str | None, limit: str, where: str, command: str, tree: Callable[..., SiteTree]
) -> None:
    site = _site_with(tree, memory_budget, limit)
    lines = (site.root / "halogen.yaml").read_text().splitlines()
    key = where.split(":")[0].split(".")[-1]
    line = next(i for i, text in enumerate(lines, 1) if text.lstrip().startswith(f"{key}:"))
    result = subprocess.run([HALOGEN, command], cwd=site.root, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert f"halogen.yaml:{line}:" in result.stderr
    assert f"{where} is more than the 2^63 - 1 bytes (8 EiB) a Kubernetes quantity may hold" in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert not site.out.exists()
