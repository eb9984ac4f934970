"""The shipped pre-commit hooks, driven by the real `pre-commit` (as `pre-commit try-repo`, as
a user tries them first) against a Flux repo whose site lies in apps/llm/: hook environments
are built by pip from the project's own checkout and a local wheelhouse."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import FluxRepo, git

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

HOOKS = ("halogen-validate", "halogen-build-check")


@pytest.fixture(scope="session")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PRE_COMMIT_HOME for the session: each hook environment is built once."""
    return tmp_path_factory.mktemp("pre-commit-home")


@pytest.fixture
def repo(flux_repo: Callable[[], FluxRepo], pre_commit_home: Path) -> FluxRepo:
    made = flux_repo()
    made.env["PRE_COMMIT_HOME"] = str(pre_commit_home)
    return made


def try_repo(
    repo: FluxRepo, project: Path, hook: str, *, all_files: bool = False
) -> subprocess.CompletedProcess[str]:
    """`pre-commit try-repo PROJECT HOOK`: on the staged files, or on every file."""
    ref = git("rev-parse", "HEAD", cwd=project).strip()
    argv = [sys.executable, "-m", "pre_commit", "try-repo", str(project), hook, "--ref", ref, "--verbose"]
    return repo.run(*argv, *(["--all-files"] if all_files else []))


def outcome(result: subprocess.CompletedProcess[str], hook: str) -> str:
    """Passed, Failed or Skipped, as pre-commit reports the hook."""
    name = {"halogen-validate": "halogen validate", "halogen-build-check": "halogen build --check"}[hook]
    lines = [line for line in result.stdout.splitlines() if line.startswith(name + ".")]
    assert len(lines) == 1, result.stdout + result.stderr
    return lines[0].rsplit(".", 1)[-1].split(")")[-1]


@pytest.mark.parametrize("hook", HOOKS)
def test_both_hooks_pass_on_a_good_site_in_a_sub_folder(repo: FluxRepo, project: Path, hook: str) -> None:
    result = try_repo(repo, project, hook, all_files=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcome(result, hook) == "Passed"


@pytest.mark.parametrize("hook", HOOKS)
def test_a_typo_in_a_model_file_fails_both_hooks_at_its_line(repo: FluxRepo, project: Path, hook: str) -> None:
    path = repo.model("small", "name: Small\nfile: small.gguf\ncontextSze: 2048\n")
    git("add", str(path), cwd=repo.root)
    result = try_repo(repo, project, hook)
    assert result.returncode == 1, result.stdout
    assert outcome(result, hook) == "Failed"
    assert "apps/llm/models.d/small.yaml:3:1: contextSze: unknown key" in result.stdout


def test_a_stale_out_fails_build_check_and_passes_validate(repo: FluxRepo, project: Path) -> None:
    path = repo.model("small", {"name": "Small", "file": "small.gguf", "group": "main", "contextSize": 1024})
    git("add", str(path), cwd=repo.root)
    check = try_repo(repo, project, "halogen-build-check")
    assert outcome(check, "halogen-build-check") == "Failed"
    assert "out/config.yaml:" in check.stdout and "out/ is stale" in check.stdout
    assert outcome(try_repo(repo, project, "halogen-validate"), "halogen-validate") == "Passed"


def test_a_hand_edited_out_fails_build_check(repo: FluxRepo, project: Path) -> None:
    deployment = repo.site / "out" / "deployment.yaml"
    deployment.write_text(deployment.read_text().replace("replicas: 1", "replicas: 2"))
    git("add", str(deployment), cwd=repo.root)
    result = try_repo(repo, project, "halogen-build-check")
    assert outcome(result, "halogen-build-check") == "Failed", result.stdout
    assert "apps/llm/out/deployment.yaml:" in result.stdout


def test_deleting_a_model_file_runs_both_hooks(repo: FluxRepo, project: Path) -> None:
    # pre-commit passes a hook no deleted file: without --staged both hooks would be skipped.
    # tiny is preloaded, so the site without it is invalid.
    git("rm", "-q", str(repo.site / "models.d" / "tiny.yaml"), cwd=repo.root)
    for hook in HOOKS:
        result = try_repo(repo, project, hook)
        assert outcome(result, hook) == "Failed", result.stdout
        assert "apps/llm/halogen.yaml:15:5: llamaSwap.preload[0]: preload names 'tiny'" in result.stdout


def test_deleting_a_model_file_without_rebuilding_fails_build_check(repo: FluxRepo, project: Path) -> None:
    git("rm", "-q", str(repo.site / "models.d" / "small.yaml"), cwd=repo.root)
    result = try_repo(repo, project, "halogen-build-check")
    assert outcome(result, "halogen-build-check") == "Failed", result.stdout
    assert "apps/llm/out/config.yaml:" in result.stdout and "out/ is stale" in result.stdout


@pytest.mark.parametrize("hook", HOOKS)
def test_a_readme_only_commit_checks_no_site(repo: FluxRepo, project: Path, hook: str) -> None:
    # The committed site is broken (committed with --no-verify): a hook that checked it would fail.
    repo.model("small", "name: Small\nfile: small.gguf\ncontextSze: 2048\n")
    repo.commit("broken")
    assert try_repo(repo, project, hook, all_files=True).returncode == 1
    (repo.root / "README.md").write_text("# cluster\n\nNotes.\n")
    git("add", "README.md", cwd=repo.root)
    result = try_repo(repo, project, hook)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "contextSze" not in result.stdout
