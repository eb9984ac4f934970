"""A new user's first hour, offline: the project as a git repository pip and pre-commit can
install from, a wheelhouse for its dependencies, and a Flux repo of the user's own with the
site in a sub-folder (apps/llm/)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import yaml

from tests import wheelhouse
from tests.compiler.conftest import MODEL, SITE

REPO = Path(__file__).resolve().parents[2]
DISTRIBUTION = "halogen-llamaswap"
SITE_DIR = "apps/llm"
AUTHOR = {
    "GIT_AUTHOR_NAME": "New User",
    "GIT_AUTHOR_EMAIL": "user@example.invalid",
    "GIT_COMMITTER_NAME": "New User",
    "GIT_COMMITTER_EMAIL": "user@example.invalid",
}


def git(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This work tree as committed-and-not (tracked and untracked files, not ignored ones, as
    scripts/build-image takes them), committed on `main` in a repository of its own: what a
    user's `git+https://...` or pre-commit's `repo:` would clone."""
    root = tmp_path_factory.mktemp("project")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = REPO / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the work tree
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            target.write_bytes(source.read_bytes())
            target.chmod(source.stat().st_mode)
    env = {**os.environ, **AUTHOR}
    git("init", "-q", "-b", "main", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "snapshot", cwd=root, env=env)
    return root


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """halogen's dependencies (build extra) and setuptools, its build backend, as installed here."""
    return wheelhouse.make(
        tmp_path_factory.mktemp("wheelhouse"),
        {DISTRIBUTION: ["build"], "setuptools": []},
        skip=[DISTRIBUTION],
    )


def offline(wheels: Path, home: Path) -> dict[str, str]:
    """An environment in which pip installs from `wheels` alone, whatever the machine's pip
    configuration says."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))}
    return {
        **env,
        **AUTHOR,
        "HOME": str(home),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "VIRTUALENV_NO_PERIODIC_UPDATE": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    }


class FluxRepo:
    """A user's repository with a halogen site in apps/llm/ (two models, one preloaded)."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.site = root / SITE_DIR
        self.env = env
        (self.site / "models.d").mkdir(parents=True)
        site = {**SITE, "llamaSwap": {"healthCheckTimeout": 60, "preload": ["tiny"]}}
        (self.site / "halogen.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
        self.model("tiny", MODEL)
        self.model("small", {**MODEL, "file": "small.gguf"})
        (root / "README.md").write_text("# cluster\n")
        self.run(sys.executable, "-m", "halogen", "build", "--src", str(self.site))
        git("init", "-q", "-b", "main", cwd=root)
        self.commit("site")

    def model(self, model_id: str, data: dict[str, object] | str) -> Path:
        path = self.site / "models.d" / f"{model_id}.yaml"
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return path

    def commit(self, message: str) -> None:
        git("add", "-A", cwd=self.root)
        git("commit", "-q", "--no-verify", "-m", message, cwd=self.root, env=self.env)

    def run(self, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )


@pytest.fixture
def flux_repo(tmp_path: Path, wheels: Path) -> Callable[[], FluxRepo]:
    def make() -> FluxRepo:
        return FluxRepo(tmp_path / "flux", offline(wheels, tmp_path / "home"))

    return make
