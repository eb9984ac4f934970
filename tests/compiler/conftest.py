"""Small, realistic site trees in tmp dirs, and the paths tests share."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _shared() -> Path:
    """`../shared` beside the checkout; from a git worktree, beside its main checkout."""
    here = REPO.parent / "shared"
    if here.exists():
        return here
    common = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return Path(common).parent.parent / "shared" if common else here


SHARED = _shared()
LLAMA_SWAP_SCHEMA = SHARED / "reference" / "llama-swap" / "config-schema.json"
SEED_CONFIG = SHARED / "reference" / "seed" / "config" / "strix-halo-cpu-only.yaml"

SITE = {
    "deployment": {
        "name": "llm",
        "namespace": "ai",
        "image": {"tag": "1.2.3"},
        "models": {"hostPath": "/srv/models", "mountPath": "/models"},
        "resources": {"limits": {"memory": "8Gi"}},
    },
    "llamaSwap": {"healthCheckTimeout": 60},
    "groups": {"main": {"swap": True, "exclusive": True}},
    "backends": {"cpu": {"args": ["--threads", "2", "-ngl", "0"], "env": {"HIP_VISIBLE_DEVICES": "-1"}}},
}
MODEL = {"name": "Tiny", "file": "tiny/tiny.gguf", "group": "main", "contextSize": 2048}


class SiteTree:
    """A site folder: halogen.yaml plus models.d/, written from dicts or raw text."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "models.d").mkdir(parents=True)

    def site(self, data: dict[str, object] | str) -> SiteTree:
        self._write(self.root / "halogen.yaml", data)
        return self

    def model(self, model_id: str, data: dict[str, object] | str | bytes) -> SiteTree:
        self._write(self.root / "models.d" / f"{model_id}.yaml", data)
        return self

    @staticmethod
    def _write(path: Path, data: dict[str, object] | str | bytes) -> None:
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))

    @property
    def out(self) -> Path:
        return self.root / "out"


@pytest.fixture
def tree(tmp_path: Path) -> Callable[..., SiteTree]:
    """`tree()` is a valid two-model site; pass overrides to break it."""
    counter = iter(range(1000))

    def make(site: dict[str, object] | None = None, models: dict[str, object] | None = None) -> SiteTree:
        t = SiteTree(tmp_path / f"site{next(counter)}")
        t.site(site if site is not None else SITE)
        for model_id, data in (
            models if models is not None else {"tiny": MODEL, "small": {**MODEL, "file": "small.gguf"}}
        ).items():
            t.model(model_id, data)  # type: ignore[arg-type]
        return t

    return make


def copy_shipped(root: Path) -> Path:
    """A copy of this repo's own site (halogen.yaml, models.d/, out/) at `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("halogen.yaml", "models.d", "out"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / name)
    return root


def halogen(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user (or pre-commit, or CI) would."""
    return subprocess.run(
        [sys.executable, "-m", "halogen", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
