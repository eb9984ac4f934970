"""`halogen lock --check` holds the lock to the bytes `halogen lock` writes: a lock with the same
entries written another way (reformatted, its header gone) fails the check, so CI catches a hand
edit even when it changed nothing the compiler reads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gguf
import yaml

from halogen.compiler.site.lock import read_lock
from tests.compiler.conftest import MODEL, SiteTree, halogen
from tests.gguf_shapes import Shape, write_sparse

TINY = Shape(
    "llama", "tiny", gguf.LlamaFileType.ALL_F32, gguf.GGMLQuantizationType.F32, 1, 32, 64, 2, 1, 64, 512
)


def test_check_fails_on_a_lock_with_the_same_entries_in_other_bytes(
    tree: Callable[..., SiteTree], tmp_path: Path
) -> None:
    models = tmp_path / "models"
    write_sparse(models / MODEL["file"], TINY)  # type: ignore[operator]
    site = tree(models={"tiny": MODEL})
    lock_path = site.root / "halogen.lock"
    assert halogen("lock", "--src", site.root, "--models-dir", models).returncode == 0
    assert halogen("lock", "--src", site.root, "--models-dir", models, "--check").returncode == 0
    written = read_lock(lock_path)
    lock_path.write_text(yaml.safe_dump(yaml.safe_load(lock_path.read_text()), default_flow_style=True))
    assert read_lock(lock_path) == written  # the same entries
    result = halogen("lock", "--src", site.root, "--models-dir", models, "--check")
    assert result.returncode == 1, result.stderr
    assert "halogen.lock is not as `halogen lock` writes it" in result.stderr
