"""An adopter's first hour, as one run, offline: `halogen init` in a sub-folder of a Flux
monorepo, `halogen add` for two models from the (local) Hugging Face Hub, `halogen lock --remote`,
`halogen build`, a commit through the hooks `init` configured, and then the real `pre-commit`
refusing a commit with a typo in a model file. The models are sparse GGUFs of real shapes: no
weights are downloaded, only their headers, by range."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from halogen.commands.init import PROJECT
from tests import gguf_shapes as shapes
from tests.hub.local_hub import LocalHub, running

from .conftest import SITE_DIR, git, offline

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

HALOGEN = Path(sys.executable).with_name("halogen")
MODELS = {
    "qwen2.5-coder-3b-instruct-q4_k_m": ("Qwen/Qwen2.5-Coder-3B-Instruct-GGUF", "qwen2.5-coder-3b-instruct-q4_k_m.gguf", shapes.QWEN25_3B),
    "qwen2.5-coder-7b-instruct-q5_k_m": ("Qwen/Qwen2.5-Coder-7B-Instruct-GGUF", "qwen2.5-coder-7b-instruct-q5_k_m.gguf", shapes.QWEN25_7B),
}  # fmt: skip


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[LocalHub]:
    local = LocalHub()
    for repo, name, shape in MODELS.values():
        path = shapes.write_sparse(tmp_path / "hub" / repo / name, shape)
        local.add(repo, name, path, sha256=hashlib.sha256(name.encode()).hexdigest())
    with running(local) as served:
        yield served


def test_an_adopter_starts_a_site_adds_two_models_locks_them_remotely_builds_and_pre_commit_blocks_a_typo(
    hub: LocalHub, project: Path, wheels: Path, tmp_path: Path
) -> None:
    root = tmp_path / "flux"
    site = root / SITE_DIR
    (root / "clusters" / "home").mkdir(parents=True)
    (root / "README.md").write_text("# home cluster\n")
    site.mkdir(parents=True)
    env = {
        **offline(wheels, tmp_path / "home"),
        "HF_ENDPOINT": hub.endpoint,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(tmp_path / "hf-home"),
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        # pre-commit clones the hooks' repository as .pre-commit-config.yaml names it: here,
        # this project's own checkout.
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.file://{project}.insteadOf",
        "GIT_CONFIG_VALUE_0": PROJECT,
    }
    git("init", "-q", "-b", "main", cwd=root)
    log: list[str] = []

    def run(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        log.append(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}")
        return result

    def ok(cwd: Path, *argv: str) -> str:
        result = run(cwd, *argv)
        assert result.returncode == 0, "\n".join(log)
        return result.stdout + result.stderr

    ok(site, str(HALOGEN), "init")
    (site / "models.d" / "example.yaml").unlink()
    for repo, name, _ in MODELS.values():
        ok(site, str(HALOGEN), "add", f"{repo}/{name}")
    assert sorted(p.stem for p in (site / "models.d").iterdir()) == sorted(MODELS)
    locked = ok(site / "models.d", str(HALOGEN), "lock", "--remote")
    assert "unchanged on the Hub" in locked  # add locked them already
    assert hub.fetched() <= len(MODELS) << 20  # headers only: at most 1 MiB a model
    built = ok(site, str(HALOGEN), "build")
    fitted = ok(site / "models.d", str(HALOGEN), "fit")
    print("\n".join(log))
    assert "wrote out/" in built
    # The fit table names both models with their estimates, known before any weights were fetched.
    assert all(model_id in fitted for model_id in MODELS) and "GiB" in fitted
    config = (site / "out" / "config.yaml").read_text()
    assert all(model_id in config for model_id in MODELS)
    ok(root, sys.executable, "-m", "pre_commit", "install")
    ok(root, "git", "add", "-A")
    committed = ok(root, "git", "commit", "-m", "llm: a halogen site with two models")
    assert "halogen validate" in committed and "Failed" not in committed

    model = site / "models.d" / "qwen2.5-coder-3b-instruct-q4_k_m.yaml"
    model.write_text(model.read_text().replace("contextSize:", "contextSze:"))
    line = (
        model.read_text()
        .splitlines()
        .index(next(x for x in model.read_text().splitlines() if x.startswith("contextSze")))
        + 1
    )
    git("add", str(model), cwd=root)
    refused = run(root, "git", "commit", "-m", "typo")
    output = refused.stdout + refused.stderr
    print(output)
    assert refused.returncode == 1, "\n".join(log)
    assert (
        f"{SITE_DIR}/models.d/{model.name}:{line}:1: contextSze: unknown key (did you mean 'contextSize'?)"
        in output
    )
    assert git("rev-list", "--count", "HEAD", cwd=root).strip() == "1"
    assert not any(os.environ.get("HF_TOKEN", "\0") in p.read_text() for p in (site / "out").rglob("*.yaml"))
