"""llama-swap's macro rules as `halogen serve` loads a config: the cases of llama-swap's
internal/config/macro_in_macro_test.go, read through the runtime's loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from halogen.diagnostics import Invalid
from halogen.llamaswap import io


def argv(tmp_path: Path, text: str, model: str = "test") -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text("startPort: 10000\n" + text)
    resolved, _ = io.load(path, environ={})
    return list(resolved.models[model].argv)


def test_a_macro_uses_a_macro_declared_before_it(tmp_path: Path) -> None:
    # TestConfig_MacroInMacroBasic
    text = "macros:\n  A: value-A\n  B: prefix-${A}-suffix\nmodels:\n  test:\n    cmd: echo ${B} --port ${PORT}\n"
    assert argv(tmp_path, text) == ["echo", "prefix-value-A-suffix", "--port", "10000"]


def test_macros_three_levels_deep_expand_last_declared_first(tmp_path: Path) -> None:
    # TestConfig_MacroInMacroLIFOOrder
    text = (
        "macros:\n  base: /models\n  path: ${base}/llama\n  full: ${path}/model.gguf\n"
        "models:\n  test:\n    cmd: load ${full} --port ${PORT}\n"
    )
    assert argv(tmp_path, text) == ["load", "/models/llama/model.gguf", "--port", "10000"]


def test_model_id_inside_a_global_macro_is_the_model_using_it(tmp_path: Path) -> None:
    # TestConfig_ModelIdInGlobalMacro
    text = (
        "macros:\n  podman-llama: podman run --name ${MODEL_ID} llama:server\n"
        "models:\n  my-model:\n    cmd: ${podman-llama} -m model.gguf --port ${PORT}\n"
        "  other:\n    cmd: ${podman-llama} -m other.gguf --port ${PORT}\n"
    )
    assert argv(tmp_path, text, "my-model")[:4] == ["podman", "run", "--name", "my-model"]
    assert argv(tmp_path, text, "other")[:4] == ["podman", "run", "--name", "other"]


def test_a_model_macro_overrides_a_global_one_inside_another_macro(tmp_path: Path) -> None:
    # TestConfig_ModelMacroOverridesGlobal
    text = (
        "macros:\n  tag: global\n  msg: value-${tag}\n"
        "models:\n  test:\n    macros:\n      tag: model-level\n    cmd: echo ${msg} --port ${PORT}\n"
        "  plain:\n    cmd: echo ${msg} --port ${PORT}\n"
    )
    assert argv(tmp_path, text)[:2] == ["echo", "value-model-level"]
    assert argv(tmp_path, text, "plain")[:2] == ["echo", "value-global"]


def test_a_macro_referring_to_itself_is_refused(tmp_path: Path) -> None:
    # TestConfig_SelfReferenceDetection
    with pytest.raises(Invalid) as exc:
        argv(
            tmp_path,
            "macros:\n  recursive: value-${recursive}\nmodels:\n  test:\n    cmd: echo ${recursive}\n",
        )
    assert "refers to itself" in str(exc.value)
