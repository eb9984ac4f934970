"""The shipped pre-commit hooks, driven by the real `pre-commit` against a Flux repo whose site
lies in apps/llm/: first as a user tries them (`pre-commit try-repo`), then as they run on every
`git commit` once installed. Hook environments are built by pip from the project's own checkout
and a local wheelhouse."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import FluxRepo, git

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

NAMES = {"halogen-validate": "halogen validate", "halogen-build-check": "halogen build --check"}
TYPO = "name: Small\nfile: small.gguf\ngroup: main\ncontextSze: 2048\n"


@pytest.fixture(scope="session")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PRE_COMMIT_HOME for the session: the installed hooks' environment is built once
    (try-repo builds its own each time, in a store of its own)."""
    return tmp_path_factory.mktemp("pre-commit-home")


@pytest.fixture
def repo(flux_repo: Callable[[], FluxRepo], pre_commit_home: Path) -> FluxRepo:
    made = flux_repo()
    made.env["PRE_COMMIT_HOME"] = str(pre_commit_home)
    return made


def pre_commit(repo: FluxRepo, *args: str) -> subprocess.CompletedProcess[str]:
    return repo.run(sys.executable, "-m", "pre_commit", *args)


def outcomes(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Each hook's Passed, Failed or Skipped, as pre-commit reports it."""
    out = {}
    for hook, name in NAMES.items():
        lines = [line for line in result.stdout.splitlines() if line.startswith(name + ".")]
        if lines:
            out[hook] = lines[0].rsplit(".", 1)[-1].split(")")[-1]
    return out


def try_repo(repo: FluxRepo, project: Path, *, all_files: bool = False) -> subprocess.CompletedProcess[str]:
    """`pre-commit try-repo PROJECT` (both hooks) on the staged files, or on every file."""
    ref = git("rev-parse", "HEAD", cwd=project).strip()
    return pre_commit(repo, "try-repo", str(project), "--ref", ref, *(["--all-files"] if all_files else []))


@pytest.fixture
def installed(repo: FluxRepo, project: Path) -> FluxRepo:
    """The hooks in the repo's .pre-commit-config.yaml, installed as git's pre-commit hook."""
    ref = git("rev-parse", "HEAD", cwd=project).strip()
    (repo.root / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: file://{project}\n    rev: {ref}\n"
        "    hooks:\n      - id: halogen-validate\n      - id: halogen-build-check\n"
    )
    repo.commit("hooks")
    result = pre_commit(repo, "install")
    assert result.returncode == 0, result.stdout + result.stderr
    return repo


def commit(repo: FluxRepo) -> subprocess.CompletedProcess[str]:
    """`git commit` of what is staged, with the installed hooks (git gives a hook's output to
    stderr: it is read as stdout here)."""
    result = repo.run("git", "commit", "-m", "change")
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout + result.stderr, "")


def test_try_repo_passes_both_hooks_on_a_good_site_in_a_sub_folder(repo: FluxRepo, project: Path) -> None:
    result = try_repo(repo, project, all_files=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcomes(result) == {"halogen-validate": "Passed", "halogen-build-check": "Passed"}


def test_try_repo_fails_both_hooks_on_a_typo_at_its_line(repo: FluxRepo, project: Path) -> None:
    git("add", str(repo.model("small", TYPO)), cwd=repo.root)
    result = try_repo(repo, project)
    assert result.returncode == 1, result.stdout
    assert outcomes(result) == {"halogen-validate": "Failed", "halogen-build-check": "Failed"}
    assert result.stdout.count("apps/llm/models.d/small.yaml:4:1: contextSze: unknown key") == 2


def test_a_commit_with_a_typo_is_refused_by_both_hooks(installed: FluxRepo) -> None:
    git("add", str(installed.model("small", TYPO)), cwd=installed.root)
    result = commit(installed)
    assert result.returncode == 1, result.stdout
    assert outcomes(result) == {"halogen-validate": "Failed", "halogen-build-check": "Failed"}


def test_a_good_commit_passes_both_hooks(installed: FluxRepo) -> None:
    installed.model("small", {"name": "Small", "file": "small.gguf", "group": "main", "contextSize": 1024})
    assert installed.run(sys.executable, "-m", "halogen", "build", "apps/llm").returncode == 0
    git("add", "-A", cwd=installed.root)
    result = commit(installed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcomes(result) == {"halogen-validate": "Passed", "halogen-build-check": "Passed"}


def test_a_commit_with_a_stale_out_is_refused_by_build_check(installed: FluxRepo) -> None:
    path = installed.model(
        "small", {"name": "Small", "file": "small.gguf", "group": "main", "contextSize": 1024}
    )
    git("add", str(path), cwd=installed.root)
    result = commit(installed)
    assert outcomes(result) == {"halogen-validate": "Passed", "halogen-build-check": "Failed"}, result.stdout
    assert "apps/llm/out/config.yaml:" in result.stdout and "out/ is stale" in result.stdout


def test_a_commit_with_a_hand_edited_out_is_refused_by_build_check(installed: FluxRepo) -> None:
    deployment = installed.site / "out" / "deployment.yaml"
    deployment.write_text(deployment.read_text().replace("replicas: 1", "replicas: 2"))
    git("add", str(deployment), cwd=installed.root)
    result = commit(installed)
    assert outcomes(result)["halogen-build-check"] == "Failed", result.stdout
    assert "apps/llm/out/deployment.yaml:12:1: out/ is stale" in result.stdout


def test_deleting_a_model_file_runs_both_hooks(installed: FluxRepo) -> None:
    # pre-commit passes a hook no deleted file: without --staged both hooks would be skipped.
    # tiny is preloaded, so the site without it is invalid.
    git("rm", "-q", str(installed.site / "models.d" / "tiny.yaml"), cwd=installed.root)
    result = commit(installed)
    assert outcomes(result) == {"halogen-validate": "Failed", "halogen-build-check": "Failed"}, result.stdout
    assert "apps/llm/halogen.yaml:15:5: llamaSwap.preload[0]: preload names 'tiny'" in result.stdout


def test_deleting_a_model_file_without_rebuilding_is_refused_by_build_check(installed: FluxRepo) -> None:
    git("rm", "-q", str(installed.site / "models.d" / "small.yaml"), cwd=installed.root)
    result = commit(installed)
    assert outcomes(result)["halogen-build-check"] == "Failed", result.stdout
    assert "apps/llm/out/config.yaml:" in result.stdout and "out/ is stale" in result.stdout


def test_a_readme_only_commit_checks_no_site(installed: FluxRepo) -> None:
    # The committed site is broken (committed with --no-verify): a hook that checked it would fail.
    installed.model("small", TYPO)
    installed.commit("broken")
    assert pre_commit(installed, "run", "--all-files").returncode == 1
    (installed.root / "README.md").write_text("# cluster\n\nNotes.\n")
    git("add", "README.md", cwd=installed.root)
    result = commit(installed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "contextSze" not in result.stdout
