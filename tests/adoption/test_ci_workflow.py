"""docs/ci-workflow.yaml, run as written: its `run:` steps, in order, each in `bash -e` as
GitHub Actions runs them, in a Flux repo whose site lies in apps/llm/. The two `uses:` steps are
played by the test: the checkout is the repo itself, setup-python a fresh venv first on PATH.
`pip install ... @ git+https://github.com/...` clones this project's own checkout (git's
`insteadOf`), and pip installs dependencies from a local wheelhouse."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, FluxRepo, git

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

WORKFLOW = REPO / "docs" / "ci-workflow.yaml"
EMULATED = {"actions/checkout", "actions/setup-python"}


def steps() -> list[dict[str, object]]:
    [job] = yaml.safe_load(WORKFLOW.read_text())["jobs"].values()
    return list(job["steps"])


@pytest.fixture
def ci(flux_repo: Callable[[], FluxRepo], project: Path, tmp_path: Path) -> FluxRepo:
    repo = flux_repo()
    venv = tmp_path / "python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    urls = {
        m.group(0)
        for s in steps()
        for m in re.finditer(r"https://github\.com/[\w.-]+/[\w.-]+", str(s.get("run", "")))
    }
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text("".join(f'[url "file://{project}"]\n\tinsteadOf = {url}\n' for url in urls))
    repo.env.update(
        GIT_CONFIG_GLOBAL=str(gitconfig),
        GIT_CONFIG_NOSYSTEM="1",
        PATH=f"{venv / 'bin'}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
        VIRTUAL_ENV=str(venv),
    )
    return repo


def run_workflow(repo: FluxRepo) -> tuple[int, str]:
    """Runs the steps until one fails, as Actions does: (the failing step's index or -1, the log)."""
    log = ""
    for i, step in enumerate(steps()):
        if "uses" in step:
            assert str(step["uses"]).split("@")[0] in EMULATED, f"the test does not know {step['uses']}"
            continue
        result = repo.run("bash", "-e", "-c", str(step["run"]))
        log += f"$ {step['run']}\n{result.stdout}{result.stderr}"
        if result.returncode != 0:
            return i, log
    return -1, log


def index_of(command: str) -> int:
    return next(i for i, s in enumerate(steps()) if str(s.get("run", "")).startswith(command))


def annotations(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("::error ")]


def test_the_workflow_installs_halogen_from_its_repository_not_pypi() -> None:
    [install] = [s["run"] for s in steps() if "pip install" in str(s.get("run", ""))]
    assert "halogen-llamaswap[build] @ git+https://github.com/" in str(install)


def test_the_workflow_passes_on_a_good_site_in_a_sub_folder(ci: FluxRepo) -> None:
    failed, log = run_workflow(ci)
    assert failed == -1, log
    assert not annotations(log)


def test_the_workflow_fails_a_typo_with_an_annotation_on_its_line(ci: FluxRepo) -> None:
    ci.model("small", "name: Small\nfile: small.gguf\ngroup: main\ncontextSze: 2048\n")
    ci.commit("typo")
    failed, log = run_workflow(ci)
    assert failed == index_of("halogen validate"), log
    assert annotations(log) == [
        "::error file=apps/llm/models.d/small.yaml,line=4,col=1,title=contextSze::unknown key "
        "(did you mean 'contextSize'?)"
    ]


def test_the_workflow_fails_a_stale_out_with_an_annotation_per_stale_file(ci: FluxRepo) -> None:
    ci.model("small", {"name": "Small", "file": "small.gguf", "group": "main", "contextSize": 1024})
    ci.commit("stale")
    failed, log = run_workflow(ci)
    assert failed == index_of("halogen build --check"), log
    found = annotations(log)
    assert found and all(a.startswith("::error file=apps/llm/out/") for a in found), log
    assert any(a.startswith("::error file=apps/llm/out/config.yaml,line=") for a in found), log
    assert git("status", "--porcelain", cwd=ci.root) == ""  # --check wrote nothing
