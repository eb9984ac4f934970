"""scripts/fetch-llama-server's cache: llama-server and rpc-server together, in a folder whose name
says they were built with -DGGML_RPC=ON. A cache holding both is used as it is; anything less
(the older llama-server-<version>/ without RPC, or llama-server alone) is built again, which
these tests see as the build starting: with no cmake on PATH it stops at once, naming it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "fetch-llama-server"
VERSION = "0.3.36"


def fetch(cache: Path) -> subprocess.CompletedProcess[str]:
    """The script with an empty PATH: a cache hit needs nothing from it, a build needs cmake first."""
    bash = shutil.which("bash")
    assert bash is not None
    env = {**os.environ, "HALOGEN_CACHE": str(cache), "PATH": str(cache.parent / "empty")}
    return subprocess.run([bash, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_a_cache_with_both_binaries_is_used_and_llama_servers_path_printed(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    server = executable(cache / f"llama-server-{VERSION}-rpc" / "llama-server")
    executable(cache / f"llama-server-{VERSION}-rpc" / "rpc-server")
    done = fetch(cache)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(server)]


@pytest.mark.parametrize(
    "cached",
    [
        pytest.param([f"llama-server-{VERSION}/llama-server"], id="the older build without RPC"),
        pytest.param([f"llama-server-{VERSION}-rpc/llama-server"], id="llama-server without rpc-server"),
    ],
)
def test_a_cache_without_rpc_server_is_built_again(tmp_path: Path, cached: list[str]) -> None:
    cache = tmp_path / "cache"
    for name in cached:
        executable(cache / name)
    done = fetch(cache)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "fetch-llama-server: cmake is required" in done.stderr
