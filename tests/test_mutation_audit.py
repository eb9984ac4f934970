"""The mutation audit (bench/mutations.py): a mutation the named tests catch is killed, one they
do not is survived, a snippet the code no longer has is stale; the working tree is never
touched, and the report gives the kill ratio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import mutations

REPO = Path(__file__).resolve().parents[1]
MEMORY = REPO / "halogen" / "compiler" / "memory.py"
TESTS = '["tests/compiler/test_kv_cache_slots.py"]'

DATA = f"""
[[mutation]]
id = "unpadded"
file = "halogen/compiler/memory.py"
what = "cells per stream not padded"
original = '''_pad(n_ctx // n_seq)'''
mutated = '''n_ctx // n_seq'''
tests = {TESTS}

[[mutation]]
id = "harmless"
file = "halogen/compiler/memory.py"
what = "a comment changed"
original = '''    context: int  # the context the estimate is for, after llama.cpp's padding'''
mutated = '''    context: int  # changed'''
tests = {TESTS}

[[mutation]]
id = "gone"
file = "halogen/compiler/memory.py"
what = "a line the code no longer has"
original = '''this text is nowhere'''
mutated = ''
tests = {TESTS}
"""


def test_the_audit_reports_killed_survived_and_stale_and_leaves_the_tree_alone(tmp_path: Path) -> None:
    data = tmp_path / "mutations.toml"
    data.write_text(DATA)
    before = MEMORY.read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "bench.mutations", "--data", str(data)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert MEMORY.read_bytes() == before
    assert result.returncode == 1, result.stderr  # one survived
    rows = {
        line.split(" | ")[0].strip("| "): line for line in result.stdout.splitlines() if line.startswith("| ")
    }
    assert "| killed |" in rows["unpadded"] and "halogen/compiler/memory.py:" in rows["unpadded"]
    assert "| survived |" in rows["harmless"]
    assert "| stale: the original snippet is not found |" in rows["gone"]
    assert "**1 of 2 killed (50%).**" in result.stdout


def test_a_data_file_without_a_required_key_is_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "mutations.toml"
    data.write_text('[[mutation]]\nid = "x"\nfile = "halogen/compiler/memory.py"\n')
    result = subprocess.run(
        [sys.executable, "-m", "bench.mutations", "--data", str(data)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "mutation #1 lacks what, original, mutated, tests" in result.stderr
    assert mutations.load(REPO / "bench" / "mutations.toml")  # the shipped data reads
