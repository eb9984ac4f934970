"""A model's command line is read as llama-server reads it (halogen.llamacpp.cmdline), by the
budget, the trained-context check and the mount check alike: the holes a probe found, each shut."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from halogen.compiler.site.lock import Lock, LockedFile, write_lock
from tests.compiler.conftest import SiteTree, halogen
from tests.compiler.test_facts import SMOL

HALOGEN = Path(sys.executable).parent / "halogen"
SERVER = "/usr/local/bin/llama-server --port ${PORT}"


def _site(tree: Callable[..., SiteTree], cmd: str, env: dict[str, str] | None = None) -> SiteTree:
    site = tree(models={"smol": {"cmd": cmd, **({"env": env} if env else {})}})
    write_lock(site.root / "halogen.lock", Lock({"smol.gguf": LockedFile(98_362_432, "a" * 64, SMOL)}))
    return site


def _validate(site: SiteTree) -> subprocess.CompletedProcess[str]:
    """The installed console script, run in the site folder as a user runs it."""
    return subprocess.run(
        [str(HALOGEN), "validate"], cwd=site.root, capture_output=True, text=True, timeout=120
    )


def test_the_last_of_two_model_flags_is_the_one_checked_against_the_trained_context(
    tree: Callable[..., SiteTree],
) -> None:
    # llama-server loads the last -m: the budget and the context check read that file's facts.
    site = _site(tree, f"{SERVER} -m /models/other.gguf -m /models/smol.gguf --ctx-size 32768")
    result = halogen("validate", site.root)
    assert result.returncode == 1
    assert "the --ctx-size of cmd 32768 is above the 8192 tokens smol.gguf was trained on" in result.stderr


def test_the_mount_check_reads_the_model_llama_server_loads(tree: Callable[..., SiteTree]) -> None:
    result = _validate(_site(tree, f"{SERVER} -m /models/smol.gguf --model /elsewhere/x.gguf"))
    assert result.returncode == 1
    assert "models.d/smol.yaml:1:1: cmd: model path /elsewhere/x.gguf is not under the models mount" in (
        result.stderr
    )
    # An earlier -m that llama-server replaces loads nothing.
    assert _validate(_site(tree, f"{SERVER} -m /elsewhere/x.gguf -m /models/smol.gguf")).returncode == 0


@pytest.mark.parametrize(
    ("cmd", "env"),
    [
        (f"{SERVER} -m /models/smol.gguf --ctx_size 1000000", None),
        (f"{SERVER} -m /models/smol.gguf -c 1000000", None),
        (f"{SERVER} -m /models/smol.gguf", {"LLAMA_ARG_CTX_SIZE": "1000000"}),
    ],
    ids=["--ctx_size", "-c", "LLAMA_ARG_CTX_SIZE"],
)
def test_every_spelling_of_the_context_fails_the_trained_context_check(
    tree: Callable[..., SiteTree], cmd: str, env: dict[str, str] | None
) -> None:
    result = halogen("validate", _site(tree, cmd, env).root)
    assert result.returncode == 1
    assert "1000000 is above the 8192 tokens smol.gguf was trained on" in result.stderr


def test_a_model_named_by_llama_arg_model_is_seen_by_the_mount_check(tree: Callable[..., SiteTree]) -> None:
    result = _validate(_site(tree, SERVER, {"LLAMA_ARG_MODEL": "/elsewhere/x.gguf"}))
    assert result.returncode == 1
    assert "cmd: model path /elsewhere/x.gguf is not under the models mount /models" in result.stderr


def test_model_equals_path_is_refused_with_the_two_word_form_to_write(tree: Callable[..., SiteTree]) -> None:
    result = _validate(_site(tree, f"{SERVER} --model=/models/smol.gguf"))
    assert result.returncode == 1
    (line,) = [x for x in result.stderr.splitlines() if "--model=" in x]
    assert line.startswith(
        "models.d/smol.yaml:1:1: cmd: llama-server does not read --model=/models/smol.gguf"
    )
    assert "--model /models/smol.gguf" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("cmd", "env", "said"),
    [
        (f"{SERVER} -hf org/repo", None, "-hf org/repo"),
        (f"{SERVER} --hf-repo org/repo -hff m.gguf", None, "--hf-repo org/repo"),
        (f"{SERVER} -mu https://example.com/m.gguf", None, "-mu https://example.com/m.gguf"),
        (f"{SERVER} -m /models/smol.gguf --models-dir /models", None, "--models-dir /models"),
        (f"{SERVER} --models-preset /models/p.ini", None, "--models-preset /models/p.ini"),
        (SERVER, {"LLAMA_ARG_HF_REPO": "org/repo"}, "LLAMA_ARG_HF_REPO"),
    ],
)
def test_a_command_that_fetches_its_model_at_run_time_is_refused(
    tree: Callable[..., SiteTree], cmd: str, env: dict[str, str] | None, said: str
) -> None:
    result = halogen("validate", _site(tree, cmd, env).root)
    assert result.returncode == 1
    assert f"cmd: {said} makes llama-server fetch a model at run time" in result.stderr
    assert "name a file under the models mount /models: `file`, or -m in a raw `cmd`" in result.stderr
