"""Facts from halogen.lock: model files may leave them out, may not contradict them, and the
compiler writes them into config.yaml's metadata for the runtime."""

from __future__ import annotations

from collections.abc import Callable

import yaml

from halogen.compiler.site.lock import Lock, LockedFile, write_lock
from halogen.llamacpp.gguf_facts import GgufFacts
from tests.compiler.conftest import MODEL, SiteTree, halogen

# SmolLM2-135M-Instruct Q4_1, as `halogen lock` reads it (tests/compiler/test_lock.py).
SMOL = GgufFacts(
    architecture="llama",
    fileType="Q4_1",
    parameterCount=134_515_008,
    tensorBytes=96_576_768,
    contextLength=8192,
    blockCount=30,
    embeddingLength=576,
    headCount=9,
    headCountKv=3,
    keyLength=64,
    valueLength=64,
    vocabSize=49152,
    info={"general.architecture": "llama", "llama.context_length": 8192, "general.file_type": 3},
)


def locked(tree: Callable[..., SiteTree], model: dict[str, object]) -> SiteTree:
    site = tree(models={"smol": {**MODEL, "file": "smol.gguf", **model}})
    write_lock(site.root / "halogen.lock", Lock({"smol.gguf": LockedFile(98_362_432, "a" * 64, SMOL)}))
    return site


def built_metadata(site: SiteTree) -> dict[str, object]:
    result = halogen("build", "--src", site.root)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((site.out / "config.yaml").read_text())
    meta: dict[str, object] = config["models"]["smol"]["metadata"]
    return meta


def test_a_model_file_may_leave_out_every_fact_the_header_states(tree: Callable[..., SiteTree]) -> None:
    meta = built_metadata(locked(tree, {}))
    assert meta["architecture"] == "llama"
    assert meta["parameterSize"] == "134.52M"  # as Ollama's format.HumanNumber writes it
    assert meta["quantizationLevel"] == "Q4_1"
    assert meta["contextLength"] == 8192
    assert meta["fileSize"] == 98_362_432
    assert meta["modelInfo"] == dict(sorted(SMOL.info.items()))


def test_hand_written_values_that_agree_are_kept_as_written(tree: Callable[..., SiteTree]) -> None:
    meta = built_metadata(locked(tree, {"metadata": {"parameterSize": "135M", "family": "smollm"}}))
    assert meta["parameterSize"] == "135M"  # within rounding of 134.5M
    assert meta["family"] == "smollm"  # not in the header: the file's to say


def test_a_value_contradicting_the_lock_is_an_error_at_its_position(tree: Callable[..., SiteTree]) -> None:
    site = locked(
        tree,
        {"metadata": {"architecture": "qwen2", "quantizationLevel": "Q8_0", "parameterSize": "7B"}},
    )
    result = halogen("validate", site.root)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    text = (site.root / "models.d" / "smol.yaml").read_text().splitlines()
    for key, found in (
        ("architecture", "'llama'"),
        ("quantizationLevel", "'Q4_1'"),
        ("parameterSize", "134.52M"),
    ):
        line = next(i for i, t in enumerate(text, 1) if t.strip().startswith(f"{key}:"))
        (hit,) = [x for x in lines if f"metadata.{key}:" in x]
        assert hit.startswith(f"models.d/smol.yaml:{line}:"), hit
        assert "contradicts" in hit and found in hit and "halogen.lock" in hit


def test_a_context_size_above_the_trained_context_is_an_error(tree: Callable[..., SiteTree]) -> None:
    site = locked(tree, {"contextSize": 16384})
    result = halogen("validate", site.root)
    assert result.returncode == 1
    assert "contextSize: contextSize 16384 is above the 8192 tokens smol.gguf was trained on" in result.stderr
    assert "set it to 8192 or less" in result.stderr


def test_a_raw_cmd_whose_ctx_size_is_above_the_trained_context_is_an_error_at_cmd(
    tree: Callable[..., SiteTree],
) -> None:
    cmd = "/usr/local/bin/llama-server --port ${PORT} -m /models/smol.gguf --ctx-size 32768"
    site = tree(models={"smol": {"cmd": cmd}})
    write_lock(site.root / "halogen.lock", Lock({"smol.gguf": LockedFile(98_362_432, "a" * 64, SMOL)}))
    result = halogen("validate", site.root)
    assert result.returncode == 1
    assert (
        "models.d/smol.yaml:1:1: cmd: the --ctx-size of cmd 32768 is above the 8192 tokens" in result.stderr
    )


def test_models_whose_files_are_not_locked_are_built_as_written(tree: Callable[..., SiteTree]) -> None:
    site = tree(models={"other": {**MODEL, "metadata": {"architecture": "anything"}}})
    write_lock(site.root / "halogen.lock", Lock({"smol.gguf": LockedFile(1, "a" * 64, SMOL)}))
    assert halogen("build", "--src", site.root).returncode == 0
    meta = yaml.safe_load((site.out / "config.yaml").read_text())["models"]["other"]["metadata"]
    assert meta == {"architecture": "anything"}


def test_a_broken_lock_is_an_error_at_its_position(tree: Callable[..., SiteTree]) -> None:
    site = tree()
    (site.root / "halogen.lock").write_text("version: 1\nfiles:\n  x.gguf: {size: big, sha256: abc}\n")
    result = halogen("validate", site.root)
    assert result.returncode == 1
    assert "halogen.lock:3:" in result.stderr
