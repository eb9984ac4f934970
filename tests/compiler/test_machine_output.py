"""What CI and pre-commit read: `--format json` is one JSON document in every case, every
failure in `--format github` is at least one annotation on a path that exists in the
repository, and the site is found from wherever the command runs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import MODEL, SITE, SiteTree, halogen

WARNED = {**SITE, "groups": {"main": {}, "idle": {}}}  # an unused group: one warning


def in_git_repo(t: SiteTree) -> Path:
    """Moves the site to apps/llm/ of a new git repository; returns the repository."""
    repo = t.root.parent / f"{t.root.name}-repo"
    (repo / "apps").mkdir(parents=True)
    t.root.rename(repo / "apps" / "llm")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    t.root = repo / "apps" / "llm"
    return repo


def document(result: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    """stdout as exactly one JSON document (json.loads refuses trailing data)."""
    parsed = json.loads(result.stdout)
    assert isinstance(parsed, list)
    return parsed


def test_json_for_a_stale_out_is_one_document_naming_each_stale_file(tree: Callable[..., SiteTree]) -> None:
    t = tree()
    assert halogen("build", "--src", t.root).returncode == 0
    t.model("tiny", {**MODEL, "contextSize": 1024})
    result = halogen("build", "--check", "--format", "json", "--src", t.root)
    assert result.returncode == 1
    found = document(result)
    assert {d["file"] for d in found} == {"out/config.yaml", "out/configmap.yaml", "out/deployment.yaml"}
    assert all("out/ is stale" in str(d["message"]) and d["severity"] == "error" for d in found)
    [config] = [d for d in found if d["file"] == "out/config.yaml"]
    line = int(str(config["line"]))
    assert "--ctx-size 2048" in (t.out / "config.yaml").read_text().splitlines()[line - 1]


def test_json_with_a_warning_and_a_foreign_file_is_one_document(tree: Callable[..., SiteTree]) -> None:
    t = tree(site=WARNED)
    t.out.mkdir()
    (t.out / "notes.txt").write_text("mine\n")
    result = halogen("build", "--format", "json", "--src", t.root)
    assert result.returncode == 1
    found = document(result)
    assert [(d["file"], d["severity"]) for d in found] == [
        ("halogen.yaml", "warning"),
        ("out/notes.txt", "error"),
    ]


def test_json_of_a_good_build_is_an_empty_list(tree: Callable[..., SiteTree]) -> None:
    t = tree()
    assert document(halogen("build", "--format", "json", "--src", t.root)) == []
    assert document(halogen("build", "--check", "--format", "json", "--src", t.root)) == []


def test_github_annotates_a_stale_out_relative_to_the_repository(tree: Callable[..., SiteTree]) -> None:
    t = tree()
    repo = in_git_repo(t)
    assert halogen("build", "apps/llm", cwd=repo).returncode == 0
    t.model("tiny", {**MODEL, "contextSize": 1024})
    result = halogen("build", "--check", "--format", "github", "--src", "apps/llm", cwd=repo)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("::error ")]
    assert errors and all(line.startswith("::error file=apps/llm/out/") for line in errors), result.stderr
    for line in errors:
        assert (repo / line.split("file=")[1].split(",")[0]).is_file()


def test_github_annotates_an_input_error_relative_to_the_repository_from_any_folder(
    tree: Callable[..., SiteTree],
) -> None:
    t = tree(models={"tiny": {**MODEL, "group": "zzz"}})
    repo = in_git_repo(t)
    for cwd, args in [
        (repo, ["--src", "apps/llm"]),
        (t.root / "models.d", []),
        (repo, ["apps/llm/models.d"]),
    ]:
        for command in (["build"], ["validate"]):
            result = halogen(*command, "--format", "github", *args, cwd=cwd)
            assert result.returncode == 1
            [error] = [line for line in result.stderr.splitlines() if line.startswith("::error ")]
            assert error.startswith("::error file=apps/llm/models.d/tiny.yaml,line=3,col=1,title=group::")


def test_github_annotates_a_foreign_file_and_an_out_that_is_a_file(tree: Callable[..., SiteTree]) -> None:
    t = tree()
    repo = in_git_repo(t)
    t.out.write_text("not a folder\n")
    result = halogen("build", "--format", "github", "apps/llm", cwd=repo)
    assert result.returncode == 1
    assert result.stderr.startswith("::error file=apps/llm/out::is not a folder")


def test_build_run_from_models_d_finds_the_site_above(tree: Callable[..., SiteTree]) -> None:
    t = tree()
    result = halogen("build", cwd=t.root / "models.d")
    assert result.returncode == 0, result.stderr
    assert (t.out / "config.yaml").is_file()
    assert not (t.root / "models.d" / "out").exists()


def test_validate_takes_src(tree: Callable[..., SiteTree]) -> None:
    t = tree(models={"tiny": {**MODEL, "group": "zzz"}})
    result = halogen("validate", "--src", t.root)
    assert result.returncode == 1
    assert "models.d/tiny.yaml:3:1: group: group 'zzz' is not declared" in result.stderr


def test_outside_any_site_the_advice_is_to_find_one_not_to_create_models_d(tmp_path: Path) -> None:
    for command in ("build", "validate"):
        result = halogen(command, cwd=tmp_path)
        assert result.returncode == 1
        assert "no halogen.yaml here or in a folder above" in result.stderr
        assert "create models.d" not in result.stderr


def test_an_out_that_is_a_regular_file_is_named_once(tree: Callable[..., SiteTree]) -> None:
    t = tree()
    t.out.write_text("x\n")
    result = halogen("build", "--src", t.root)
    assert result.returncode == 1
    assert result.stderr.startswith("out: is not a folder")
    assert "out/out" not in result.stderr


def test_an_absolute_out_keeps_its_leading_slash(tree: Callable[..., SiteTree], tmp_path: Path) -> None:
    t = tree()
    out = tmp_path / "elsewhere"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    result = halogen("build", "--src", t.root, "--out", out)
    assert result.returncode == 1
    assert result.stderr.startswith(f"{out}/notes.txt: halogen did not write this file")


def test_check_with_a_foreign_file_does_not_advise_a_build_that_would_refuse(
    tree: Callable[..., SiteTree],
) -> None:
    t = tree()
    assert halogen("build", "--src", t.root).returncode == 0
    (t.out / "notes.txt").write_text("mine\n")
    result = halogen("build", "--check", "--src", t.root)
    assert result.returncode == 1
    assert "out/notes.txt: halogen did not write this file and will not replace it" in result.stderr
    assert "run `halogen build`" not in result.stderr


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_an_internal_error_exits_3_with_one_line(tree: Callable[..., SiteTree], fmt: str) -> None:
    t = tree()
    # A bug stand-in: the build pipeline raising where no input problem is reported.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from halogen import cli; "
            "import halogen.compiler.pipeline as p; p.build = lambda root: 1/0; sys.argv=['halogen','build','--src',sys.argv[1],'--format',sys.argv[2]]; cli.main()",
            str(t.root),
            fmt,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        "halogen: internal error: ZeroDivisionError: division by zero (please report it; HALOGEN_DEBUG=1 shows where)"
    ]
