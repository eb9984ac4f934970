"""Every command finds its site as the README and `--help` show it: typed through the installed
console script from the site folder, from a folder inside it, or with PATHS, never with --src.
The site sits in a sub-folder of a git repository, as in a Flux monorepo (`apps/llm/`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gguf
import pytest
import yaml

from halogen.compiler.site.lock import read_lock
from tests.gguf_shapes import Q, Shape, write_sparse
from tests.hub.local_hub import LocalHub, running

HALOGEN = Path(sys.executable).with_name("halogen")
SITE_DIR = "apps/llm"
REPO_ID = "example/tiny-GGUF"
NAME = "tiny-f16.gguf"
TINY = Shape("llama", "tiny (synthetic)", gguf.LlamaFileType.MOSTLY_F16, Q.F16, 1, 64, 128, 2, 2, 256, 4096)
"""A GGUF of a few hundred KB: lock hashes it in no time."""


def write_site(repo: Path, models: Path) -> Path:
    """A Flux monorepo (a git repository) with the site in apps/llm/ and one model sourced from
    the Hub; its site folder."""
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    root = repo / SITE_DIR
    (root / "models.d").mkdir(parents=True)
    site = {
        "deployment": {
            "name": "llm",
            "image": {"tag": "1.2.3"},
            "models": {"hostPath": str(models), "mountPath": "/models"},
            "resources": {"limits": {"memory": "8Gi"}},
        },
        "backends": {"cpu": {"args": ["-ngl", "0"]}},
    }
    (root / "halogen.yaml").write_text(yaml.safe_dump(site))
    model = {"file": f"{REPO_ID}/{NAME}", "contextSize": 2048, "source": {"repo": REPO_ID, "file": NAME}}
    (root / "models.d" / "tiny.yaml").write_text(yaml.safe_dump(model))
    return root


@pytest.fixture
def site(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    write_sparse(models / REPO_ID / NAME, TINY)
    return write_site(tmp_path / "flux", models)


@pytest.fixture
def hub(site: Path, tmp_path: Path) -> Iterator[LocalHub]:
    local = LocalHub()
    local.add(REPO_ID, NAME, tmp_path / "models" / REPO_ID / NAME)
    with running(local) as served:
        yield served


def typed(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(HALOGEN), *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    return result


WHERE = ["the site folder", "a folder inside the site"]


def inside(site: Path, where: str) -> Path:
    return site if where == "the site folder" else site / "models.d"


@pytest.mark.parametrize("where", WHERE)
def test_halogen_lock_without_src_locks_the_site_it_runs_in(site: Path, where: str) -> None:
    result = typed(inside(site, where), "lock")
    assert result.returncode == 0, result.stderr
    assert f"{REPO_ID}/{NAME}" in read_lock(site / "halogen.lock").files


def test_halogen_lock_with_a_path_locks_the_site_the_path_is_in(site: Path) -> None:
    result = typed(site.parents[1], "lock", SITE_DIR)
    assert result.returncode == 0, result.stderr
    assert (site / "halogen.lock").is_file()


@pytest.mark.parametrize("where", WHERE)
def test_halogen_pull_without_src_pulls_into_the_sites_models_folder(
    site: Path, hub: LocalHub, tmp_path: Path, where: str
) -> None:
    (tmp_path / "models" / REPO_ID / NAME).rename(tmp_path / "served.gguf")
    hub.add(REPO_ID, NAME, tmp_path / "served.gguf")
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = typed(inside(site, where), "pull", "--no-progress", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "models" / REPO_ID / NAME).read_bytes() == (tmp_path / "served.gguf").read_bytes()
    assert f"{REPO_ID}/{NAME}" in read_lock(site / "halogen.lock").files


@pytest.mark.parametrize("where", WHERE)
def test_halogen_build_and_validate_without_src_work_on_the_site_they_run_in(site: Path, where: str) -> None:
    assert typed(inside(site, where), "validate").returncode == 0
    result = typed(inside(site, where), "build")
    assert result.returncode == 0, result.stderr
    assert (site / "out" / "config.yaml").is_file()
    assert typed(inside(site, where), "build", "--check").returncode == 0


@pytest.mark.parametrize("where", WHERE)
def test_halogen_schema_without_src_writes_the_sites_schemas(site: Path, where: str) -> None:
    result = typed(inside(site, where), "schema")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (site / "schemas").iterdir()) == [
        "halogen.schema.json",
        "model.schema.json",
    ]
    assert typed(inside(site, where), "schema", "--check").returncode == 0


@pytest.mark.parametrize("command", ["lock", "pull", "schema", "build", "validate"])
def test_every_command_outside_any_site_says_where_it_looked_and_exits_1(
    tmp_path: Path, command: str
) -> None:
    result = typed(tmp_path, command)
    assert result.returncode == 1, result.stderr
    assert "no halogen.yaml here or in a folder above" in result.stderr
