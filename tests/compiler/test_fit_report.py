"""The fit summary: `halogen fit` (a table, or JSON) and `halogen build` on a terminal show each
model's estimate against the budget, the sets, and the pairs that never run together with what
they would need, on the seed's models and gpt-oss-120b as sparse GGUFs under a 64 GiB budget."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest
import yaml

from halogen.compiler import budget
from halogen.compiler.site.load import load
from tests.compiler.test_site_finding import HALOGEN, typed
from tests.gguf_shapes import GPT_OSS_120B_MODEL, SEED, fitted_site

BIG = GPT_OSS_120B_MODEL[0]
MODELS = {**SEED, BIG: GPT_OSS_120B_MODEL[1]}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fitted_site(tmp_path_factory.mktemp("fit"), MODELS, budget="64Gi")


def gib(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB"


def test_the_table_gives_each_models_weights_kv_cache_context_and_total_against_the_budget(
    site: Path,
) -> None:
    result = typed(site, "fit")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "memory budget 64.0 GiB (memoryBudget); routing: fitted"
    loaded, _ = load(site)
    assert loaded is not None
    for model_id, e in budget.needs(loaded).items():
        [row] = [line for line in lines if line.startswith(model_id + " ")]
        cells = row.split()
        assert cells[1:3] == gib(e.weights).split(), row
        assert cells[3:5] == gib(e.kv_cache).split(), row
        assert cells[5] == str(e.context), row
        assert cells[-3:-1] == gib(e.total).split(), row
        assert cells[-1] == f"{100 * e.total / (64 * 1024**3):.0f}%"
    [big] = [line for line in lines if line.startswith(BIG + " ")]
    assert big.split()[1:] == ["58.9", "GiB", "4.5", "GiB", "131072", "248", "MiB", "63.7", "GiB", "99%"]


def test_the_table_lists_the_sets_and_the_pairs_that_never_run_together(site: Path) -> None:
    out = typed(site, "fit").stdout
    sets = out.split("sets (the models of a set may run together):\n")[1].split("\n\n")[0].splitlines()
    assert sets[0] == f"  fit1: {BIG} = 63.7 GiB"  # too big for company
    assert len(sets) == 6 and all(BIG not in s for s in sets[1:])
    apart = out.split("never run together (what the two would need):\n")[1].splitlines()
    assert apart[0] == f"  {BIG} + qwen2.5-coder-32b-instruct-q5_k_m: 92.9 GiB"
    assert len(apart) == 5 and all(line.startswith(f"  {BIG} + ") for line in apart)


def test_the_json_has_the_budget_each_models_estimate_the_sets_of_config_yaml_and_the_pairs_apart(
    site: Path,
) -> None:
    result = typed(site / "models.d", "fit", "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"budget", "routing", "models", "sets", "apart", "unknown", "diagnostics"}
    assert doc["budget"] == {"bytes": 64 * 1024**3, "from": "memoryBudget", "derived": False}
    assert doc["routing"] == "fitted" and doc["unknown"] == []
    assert [m["id"] for m in doc["models"]] == sorted(MODELS)
    for m in doc["models"]:
        assert set(m) == {"id", "locked", "weights", "kvCache", "context", "buffers", "total"}
        assert m["total"] == m["weights"] + m["kvCache"] + m["buffers"]
    assert all(s["total"] <= 64 * 1024**3 for s in doc["sets"])
    assert all(a["total"] > 64 * 1024**3 and BIG in a["models"] for a in doc["apart"])
    assert typed(site, "build").returncode == 0
    config = yaml.safe_load((site / "out" / "config.yaml").read_text())
    matrix = config["routing"]["router"]["settings"]["matrix"]
    written = {
        name: sorted(matrix["vars"][v] for v in text.split(" & ")) for name, text in matrix["sets"].items()
    }
    assert written == {s["name"]: sorted(s["models"]) for s in doc["sets"]}


def test_an_unlocked_model_is_unknown_and_said_to_run_alone(site: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "site"
    shutil.copytree(site, root, ignore=shutil.ignore_patterns("out"))
    (root / "models.d" / "new.yaml").write_text("file: new/new.gguf\nbackend: cpu\ncontextSize: 4096\n")
    text = typed(root, "fit")
    assert text.returncode == 0, text.stderr
    assert "new: not in halogen.lock, memory not checked, runs alone" in text.stdout
    doc = json.loads(typed(root, "fit", "--format", "json").stdout)
    assert doc["unknown"] == ["new"] and {"id": "new", "locked": False} in doc["models"]
    assert all("new" not in s["models"] for s in doc["sets"])


def test_build_on_a_terminal_prints_the_table_and_piped_does_not(site: Path) -> None:
    piped = typed(site, "build")
    assert piped.returncode == 0 and "never run together" not in piped.stdout + piped.stderr
    main, child = pty.openpty()
    with subprocess.Popen([str(HALOGEN), "build"], cwd=site, stdout=child, stderr=subprocess.PIPE) as process:
        os.close(child)
        seen = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the terminal's other end closed
                break
            if not chunk:
                break
            seen += chunk
        assert process.wait(timeout=120) == 0
    os.close(main)
    shown = seen.decode().replace("\r\n", "\n")
    assert shown.startswith("memory budget 64.0 GiB (memoryBudget); routing: fitted\n"), shown
    assert f"  {BIG} + qwen2.5-coder-32b-instruct-q5_k_m: 92.9 GiB" in shown
