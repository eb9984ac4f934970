"""A lock of what is there: `halogen lock` locks the files present and records the missing ones;
the build then names each model whose memory it did not check, and says what that does to the
routing; a `file:` the lock does not know gets a did-you-mean; a site without a lock says once
that nothing was checked; a `file:` read as a Hub download says so."""

from __future__ import annotations

from pathlib import Path

import yaml

from halogen.compiler.site.lock import read_lock
from tests.compiler.test_site_finding import NAME, REPO_ID, site, typed

__all__ = ["site"]  # the fixture, shared with test_site_finding

TINY_FILE = f"{REPO_ID}/{NAME}"


def add_model(root: Path, model_id: str, data: dict[str, object]) -> None:
    (root / "models.d" / f"{model_id}.yaml").write_text(yaml.safe_dump({"contextSize": 2048, **data}))


def with_budget(root: Path, budget: str = "4Gi") -> None:
    """Routing left to the budget: fitted."""
    data = yaml.safe_load((root / "halogen.yaml").read_text())
    data["memoryBudget"] = budget
    (root / "halogen.yaml").write_text(yaml.safe_dump(data))


def test_lock_locks_the_files_present_records_the_missing_one_and_exits_0(site: Path) -> None:
    add_model(site, "gone", {"file": "gone/gone.gguf"})
    result = typed(site, "lock")
    assert result.returncode == 0, result.stderr
    assert "models.d/gone.yaml:" in result.stderr and "warning: file:" in result.stderr
    assert "(1 file; 1 missing, their models' memory unchecked)" in result.stderr
    lock = read_lock(site / "halogen.lock")
    assert list(lock.files) == [TINY_FILE] and lock.missing == ("gone/gone.gguf",)
    assert "missing:\n  - gone/gone.gguf\n" in (site / "halogen.lock").read_text()


def test_lock_strict_fails_on_a_missing_file_and_writes_nothing(site: Path) -> None:
    add_model(site, "gone", {"file": "gone/gone.gguf"})
    result = typed(site, "lock", "--strict")
    assert result.returncode == 1
    assert "models.d/gone.yaml:" in result.stderr and "halogen: 1 error; nothing was written" in result.stderr
    assert not (site / "halogen.lock").exists()


def test_lock_check_fails_on_a_missing_file(site: Path) -> None:
    add_model(site, "gone", {"file": "gone/gone.gguf"})
    assert typed(site, "lock").returncode == 0
    result = typed(site, "lock", "--check")
    assert result.returncode == 1
    assert "models.d/gone.yaml:" in result.stderr


def test_a_complete_lock_has_no_missing_key(site: Path) -> None:
    assert typed(site, "lock").returncode == 0
    assert "missing" not in (site / "halogen.lock").read_text()


def test_the_build_warns_naming_each_model_the_lock_does_not_know(site: Path) -> None:
    add_model(site, "gone", {"file": "gone/gone.gguf"})
    assert typed(site, "lock").returncode == 0
    add_model(site, "later", {"file": "later/later.gguf"})  # added after the lock was written
    result = typed(site, "build")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "memory not checked" in line]
    assert [line.split(":")[0] for line in lines] == ["models.d/gone.yaml", "models.d/later.yaml"]
    assert "was missing where `halogen lock` last ran" in lines[0]
    assert "run `halogen lock` where the file is" in lines[1]


def test_a_fitted_site_says_an_unlocked_model_runs_alone_and_leaves_it_out_of_every_set(site: Path) -> None:
    with_budget(site)
    add_model(site, "gone", {"file": "gone/gone.gguf"})
    assert typed(site, "lock").returncode == 0
    result = typed(site, "build")
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "models.d/gone.yaml" in line]
    assert "memory not checked" in line and "it runs alone: loading it stops every other model" in line
    config = yaml.safe_load((site / "out" / "config.yaml").read_text())
    matrix = config["routing"]["router"]["settings"]["matrix"]
    assert list(matrix["vars"].values()) == ["tiny"]


def test_a_file_the_lock_does_not_know_gets_a_did_you_mean_against_the_locked_names(site: Path) -> None:
    assert typed(site, "lock").returncode == 0
    typo = TINY_FILE.replace("f16", "f61")
    add_model(site, "tiny", {"file": typo, "source": {"repo": REPO_ID, "file": NAME}})
    result = typed(site, "validate")
    assert result.returncode == 0, result.stderr
    assert f"{typo} is not in halogen.lock: memory not checked" in result.stderr
    assert f"did you mean {TINY_FILE}?" in result.stderr


def test_a_site_without_a_lock_says_once_that_memory_was_not_checked(site: Path) -> None:
    for command in ("validate", "build"):
        result = typed(site, command)
        assert result.returncode == 0, result.stderr
        assert result.stderr.count("memory was not checked") == 1, result.stderr
        assert "halogen: warning: no halogen.lock" in result.stderr


def test_a_locked_site_does_not_say_memory_was_not_checked(site: Path) -> None:
    assert typed(site, "lock").returncode == 0
    result = typed(site, "build")
    assert result.returncode == 0, result.stderr
    assert "not checked" not in result.stderr


def test_a_three_part_file_without_source_says_it_becomes_a_hub_download(site: Path) -> None:
    add_model(site, "tiny", {"file": TINY_FILE})
    result = typed(site, "build")
    assert result.returncode == 0, result.stderr
    assert f"read as {NAME} in the Hugging Face repository {REPO_ID}" in result.stderr
    assert "`source: null` for a file placed on the node by hand" in result.stderr
    assert (site / "out" / "pull").is_dir()


def test_source_null_keeps_a_three_part_file_on_the_node_with_no_pull_job(site: Path) -> None:
    add_model(site, "tiny", {"file": TINY_FILE, "source": None})
    result = typed(site, "build")
    assert result.returncode == 0, result.stderr
    assert "Hugging Face" not in result.stderr
    assert not (site / "out" / "pull").exists()


def test_an_explicit_source_gets_no_notice(site: Path) -> None:
    result = typed(site, "build")
    assert result.returncode == 0, result.stderr
    assert "Hugging Face" not in result.stderr
