"""`halogen lock` on the real SmolLM2 GGUF, and halogen.lock's format."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from halogen.compiler.site.lock import Lock, LockedFile, dumps, read_lock, write_lock
from halogen.diagnostics import Invalid
from tests.compiler.conftest import MODEL, SiteTree, halogen

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def smol_site(tree: Callable[..., SiteTree], smollm2_gguf: Path, tmp_path: Path) -> tuple[SiteTree, Path]:
    """A site whose one model loads a copy of SmolLM2 (a copy: tests change it)."""
    models = tmp_path / "models"
    (models / SMOL).parent.mkdir(parents=True)
    shutil.copyfile(smollm2_gguf, models / SMOL)
    return tree(models={"smollm2": {**MODEL, "file": SMOL}}), models


def test_lock_states_smollm2s_architecture_context_parameters_and_quantization(
    smol_site: tuple[SiteTree, Path],
) -> None:
    site, models = smol_site
    result = halogen("lock", "--src", site.root, "--models-dir", models)
    assert result.returncode == 0, result.stderr
    facts = read_lock(site.root / "halogen.lock").files[SMOL].gguf
    assert facts is not None
    assert facts.architecture == "llama"
    assert facts.fileType == "Q4_1"
    assert facts.contextLength == 8192  # SmolLM2-135M's config.json: max_position_embeddings
    assert facts.parameterCount == 134_515_008  # the tensors' elements (135M by its model card)
    assert (facts.blockCount, facts.embeddingLength, facts.headCount, facts.headCountKv) == (30, 576, 9, 3)
    assert (facts.keyLength, facts.valueLength) == (64, 64)
    assert facts.info["general.architecture"] == "llama"
    assert facts.info["llama.context_length"] == 8192
    assert facts.info["llama.attention.layer_norm_rms_epsilon"] == 1e-05


def test_locked_sha256_and_size_are_those_of_the_file(smol_site: tuple[SiteTree, Path]) -> None:
    site, models = smol_site
    assert halogen("lock", "--src", site.root, "--models-dir", models).returncode == 0
    entry = read_lock(site.root / "halogen.lock").files[SMOL]
    data = (models / SMOL).read_bytes()
    assert entry.sha256 == hashlib.sha256(data).hexdigest()
    assert entry.size == len(data)


def test_sha256_equals_sha256sum(smol_site: tuple[SiteTree, Path]) -> None:
    if shutil.which("sha256sum") is None:
        pytest.skip("no sha256sum on this machine")
    import subprocess

    site, models = smol_site
    assert halogen("lock", "--src", site.root, "--models-dir", models).returncode == 0
    expected = subprocess.run(["sha256sum", models / SMOL], capture_output=True, text=True, check=True)
    assert read_lock(site.root / "halogen.lock").files[SMOL].sha256 == expected.stdout.split()[0]


def test_a_second_run_writes_identical_bytes(smol_site: tuple[SiteTree, Path]) -> None:
    site, models = smol_site
    assert halogen("lock", "--src", site.root, "--models-dir", models).returncode == 0
    first = (site.root / "halogen.lock").read_bytes()
    (site.root / "halogen.lock").unlink()
    assert halogen("lock", "--src", site.root, "--models-dir", models).returncode == 0
    assert (site.root / "halogen.lock").read_bytes() == first
    assert first.startswith(b"# halogen.lock: written by `halogen lock`")


def test_check_passes_on_a_fresh_lock_and_fails_after_the_file_changes(
    smol_site: tuple[SiteTree, Path],
) -> None:
    site, models = smol_site
    assert halogen("lock", "--src", site.root, "--models-dir", models).returncode == 0
    assert halogen("lock", "--check", "--src", site.root, "--models-dir", models).returncode == 0
    with (models / SMOL).open("r+b") as fh:  # one byte of the weights, same size
        fh.seek(-1, os.SEEK_END)
        last = fh.read(1)
        fh.seek(-1, os.SEEK_END)
        fh.write(bytes([last[0] ^ 1]))
    before = (site.root / "halogen.lock").read_bytes()
    result = halogen("lock", "--check", "--src", site.root, "--models-dir", models)
    assert result.returncode == 1
    assert f"{SMOL}: size or sha256 differs" in result.stderr
    assert (site.root / "halogen.lock").read_bytes() == before  # --check writes nothing


def test_check_fails_when_no_lock_was_written(smol_site: tuple[SiteTree, Path]) -> None:
    site, models = smol_site
    result = halogen("lock", "--check", "--src", site.root, "--models-dir", models)
    assert result.returncode == 1
    assert "not in halogen.lock" in result.stderr


def test_a_missing_model_file_is_reported_at_the_models_file_key(
    tree: Callable[..., SiteTree], tmp_path: Path
) -> None:
    site = tree(models={"gone": {**MODEL, "file": "nowhere/gone.gguf"}})
    result = halogen("lock", "--src", site.root, "--models-dir", tmp_path)
    assert result.returncode == 1
    assert "models.d/gone.yaml:" in result.stderr and "file: " in result.stderr
    assert "--models-dir" in result.stderr
    assert not (site.root / "halogen.lock").exists()


def test_a_file_that_is_not_gguf_is_an_error_not_a_traceback(
    tree: Callable[..., SiteTree], tmp_path: Path
) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x.gguf").write_bytes(b"not a gguf file at all" * 10)
    site = tree(models={"x": {**MODEL, "file": "x.gguf"}})
    result = halogen("lock", "--src", site.root, "--models-dir", tmp_path / "m")
    assert result.returncode == 1
    assert "is not a readable GGUF file" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_lock_written_by_pull_without_facts_reads_back(tmp_path: Path) -> None:
    lock = Lock({"a/b.gguf": LockedFile(12, "0" * 64)})
    assert write_lock(tmp_path / "halogen.lock", lock)
    assert read_lock(tmp_path / "halogen.lock") == lock
    assert not write_lock(tmp_path / "halogen.lock", lock)  # unchanged: not rewritten
    assert b"\n    gguf:" not in dumps(lock)


def test_a_missing_lock_is_empty_and_a_bad_one_is_an_error_with_its_position(tmp_path: Path) -> None:
    assert read_lock(tmp_path / "halogen.lock") == Lock()
    (tmp_path / "halogen.lock").write_text("version: 1\nfiles:\n  a.gguf:\n    size: -1\n    sha256: xyz\n")
    with pytest.raises(Invalid) as caught:
        read_lock(tmp_path / "halogen.lock")
    texts = [d.text() for d in caught.value.diagnostics]
    assert any(t.startswith("halogen.lock:4:") and "size" in t for t in texts), texts
    assert any(t.startswith("halogen.lock:5:") and "sha256" in t for t in texts), texts


def test_lock_rewrites_a_broken_lock_and_check_reports_it(smol_site: tuple[SiteTree, Path]) -> None:
    site, models = smol_site
    (site.root / "halogen.lock").write_text("version: 1\nfiles: [not, a, mapping]\n")
    checked = halogen("lock", "--check", "--src", site.root, "--models-dir", models)
    assert checked.returncode == 1 and "halogen.lock:2:" in checked.stderr
    assert halogen("lock", "--src", site.root, "--models-dir", models).returncode == 0
    assert read_lock(site.root / "halogen.lock").files[SMOL].gguf is not None
