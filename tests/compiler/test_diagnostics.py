"""Bad input: every problem at once, positioned, exit 1, no traceback, out/ untouched."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import MODEL, SITE, SiteTree, halogen


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def test_a_broken_models_folder_reports_every_problem_at_once_and_leaves_out_untouched(
    tree: Callable[..., SiteTree],
) -> None:
    t = tree()
    assert halogen("build", "--src", t.root).returncode == 0
    before = _snapshot(t.out)
    t.model("tiny", "name: Tiny\nfile: ../etc/passwd\ngruop: main\ncontextSize: -3\n")
    t.model("small", {**MODEL, "group": "nope", "aliases": ["tiny"]})
    t.model("tabbed", "name: T\n\tfile: x.gguf\n")
    result = halogen("build", "--src", t.root)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    expected = [
        "models.d/tiny.yaml:2:1: file: '../etc/passwd' is not under the models mount /models",
        "models.d/tiny.yaml:3:1: gruop: unknown key (did you mean 'group'?)",
        "models.d/tiny.yaml:4:1: contextSize: input should be greater than 0",
        "models.d/small.yaml:3:1: group: group 'nope' is not declared in halogen.yaml",
        "models.d/small.yaml:6:3: aliases[0]: alias 'tiny' is already the id of 'tiny'",
        "models.d/tabbed.yaml:2:1: found character '\\t' that cannot start any token",
    ]
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, lines)
    assert _snapshot(t.out) == before


@pytest.mark.parametrize(
    ("site", "models", "where", "message"),
    [
        pytest.param(
            None,
            {"a": MODEL, "b": {**MODEL, "aliases": ["A"]}},
            "models.d/b.yaml:",
            "alias 'A' is already the id of 'a'",
            id="alias-equals-id-in-other-case",
        ),
        pytest.param(
            None,
            {"a": {**MODEL, "aliases": ["x"]}, "b": {**MODEL, "aliases": ["X"]}},
            "models.d/b.yaml:",
            "alias 'X' is already an alias of 'a'",
            id="duplicate-alias",
        ),
        pytest.param(
            None,
            {"a": {**MODEL, "backend": "rocm"}},
            "models.d/a.yaml:",
            "backend 'rocm' is not declared",
            id="unknown-backend",
        ),
        pytest.param(
            None,
            {"a": {**MODEL, "group": "other"}},
            "models.d/a.yaml:",
            "group 'other' is not declared",
            id="unknown-group",
        ),
        pytest.param(
            {**SITE, "llamaSwap": {"preload": ["ghost"]}},
            {"a": MODEL},
            "halogen.yaml:",
            "preload names 'ghost'",
            id="preload-unknown",
        ),
        pytest.param(
            None,
            {"a": {**MODEL, "file": "/etc/passwd"}},
            "models.d/a.yaml:",
            "is not under the models mount",
            id="absolute-path-outside-mount",
        ),
        pytest.param(
            None,
            {"a": {**MODEL, "file": "x/../../y.gguf"}},
            "models.d/a.yaml:",
            "is not under the models mount",
            id="dotdot-path",
        ),
        pytest.param(
            None,
            {"a": {**MODEL, "contextSize": 0}},
            "models.d/a.yaml:",
            "contextSize: input should be greater than 0",
            id="context-zero",
        ),
        pytest.param(
            None,
            {"a": {**MODEL, "contextSize": 8192, "metadata": {"contextLength": 4096}}},
            "models.d/a.yaml:",
            "above the model's contextLength 4096",
            id="context-above-metadata",
        ),
        pytest.param(
            None,
            {"a": {**MODEL, "args": ["--n-gpu-layers", "99"]}},
            "models.d/a.yaml:",
            "--n-gpu-layers 99 contradicts -ngl 0 from backend 'cpu'",
            id="flag-twice-backend-and-model",
        ),
        pytest.param(
            None,
            {"a": {**MODEL, "args": ["-b", "1", "--batch-size", "2"]}},
            "models.d/a.yaml:",
            "--batch-size 2 contradicts -b 1 earlier in the same list",
            id="flag-twice-in-model",
        ),
        pytest.param(
            None,
            {"a": {**MODEL, "args": ["--port", "9000"]}},
            "models.d/a.yaml:",
            "--port is written by halogen",
            id="owned-flag",
        ),
        pytest.param(
            None,
            {"a": {**MODEL, "env": {"lower": "x"}}},
            "models.d/a.yaml:",
            "env.lower",
            id="env-name-invalid",
        ),
        pytest.param(
            None,
            {"a": {**MODEL, "env": {"OK": "two\nlines"}}},
            "models.d/a.yaml:",
            "env.OK",
            id="env-value-newline",
        ),
        pytest.param(
            None, {"a": {**MODEL, "args": ["--x\ny"]}}, "models.d/a.yaml:", "args[0]", id="arg-newline"
        ),
        pytest.param(
            None,
            {"a": {**MODEL, "ttl": -1}},
            "models.d/a.yaml:",
            "ttl: input should be greater than or equal to 0",
            id="ttl-negative",
        ),
        pytest.param(
            None,
            {"a": {**MODEL, "args": ["${nope}"]}},
            "models.d/a.yaml:",
            "unknown macro ${nope}",
            id="unknown-macro",
        ),
        pytest.param(
            {**SITE, "macros": {"a": "${b}", "b": "x"}},
            {"m": MODEL},
            "halogen.yaml:",
            "macro 'a' uses ${b}, declared after it",
            id="macro-forward-reference",
        ),
        pytest.param(
            {**SITE, "macros": {"a": "${a}"}},
            {"m": MODEL},
            "halogen.yaml:",
            "macro 'a' refers to itself",
            id="macro-self-reference",
        ),
        pytest.param(
            {**SITE, "macros": {"PORT": "1"}},
            {"m": MODEL},
            "halogen.yaml:",
            "macro name 'PORT' is reserved",
            id="macro-reserved",
        ),
        pytest.param(
            None,
            {
                "a": {
                    **MODEL,
                    "cmd": "x -m /elsewhere/y.gguf --port ${PORT}",
                    "file": None,
                    "contextSize": None,
                }
            },
            "models.d/a.yaml:",
            "model path /elsewhere/y.gguf is not under the models mount",
            id="raw-cmd-outside-mount",
        ),
        pytest.param(
            None,
            {"a": {**MODEL, "cmd": "server --port ${PORT}"}},
            "models.d/a.yaml:",
            "`cmd` replaces `file`, `args` and `contextSize`",
            id="cmd-and-file",
        ),
        pytest.param(None, {}, "models.d:", "no model files", id="empty-models-folder"),
        pytest.param(
            {**SITE, "deployment": {**SITE["deployment"], "image": {"tag": "latest"}}},
            {"a": MODEL},
            "halogen.yaml:",
            "tag 'latest' is not allowed",
            id="image-latest",
        ),  # type: ignore[dict-item]
        pytest.param(
            {**SITE, "deployment": {**SITE["deployment"], "terminationGracePeriodSeconds": 3}},
            {"a": MODEL},
            "halogen.yaml:",
            "leaves no time to stop llama-server",
            id="grace-too-short",
        ),  # type: ignore[dict-item]
        pytest.param(
            {**SITE, "backends": {"cpu": {"binary": "/usr/bin/llama-server"}}},
            {"a": MODEL},
            "halogen.yaml:",
            "/usr/bin/llama-server is not where a rocm image has llama-server (/usr/local/bin/llama-server)",
            id="binary-disagrees-with-image",
        ),
        pytest.param(
            {**SITE, "backends": {"cpu": {"args": ["--threads", "2"]}, "gpu": {}}},
            {"a": {k: v for k, v in MODEL.items()}},
            "models.d/a.yaml:",
            "no backend given and the site declares several",
            id="backend-ambiguous",
        ),
    ],
)
def test_each_rule_broken_once_gives_one_positioned_error(
    tree: Callable[..., SiteTree],
    site: dict[str, object] | None,
    models: dict[str, object],
    where: str,
    message: str,
) -> None:
    models = {k: {f: v for f, v in m.items() if v is not None} for k, m in models.items()}  # type: ignore[attr-defined]
    t = tree(site, models)
    result = halogen("validate", t.root)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    # Exactly one error (warnings aside), positioned at a line and column of a file that has them.
    errors = [
        line
        for line in result.stderr.splitlines()
        if not line.startswith("halogen: ") and ": warning:" not in line
    ]
    assert len(errors) == 1, result.stderr
    positioned = re.escape(where) + (r"[1-9][0-9]*:[1-9][0-9]*: " if where.endswith(".yaml:") else " ")
    assert re.match(positioned, errors[0]) and message in errors[0], result.stderr
    assert result.stderr.endswith("halogen: 1 error\n")  # validate never writes: it does not say so


def test_did_you_mean_names_the_closest_key(tree: Callable[..., SiteTree]) -> None:
    t = tree(models={"a": {**MODEL, "contextSze": 4}})
    result = halogen("validate", t.root)
    assert "contextSze: unknown key (did you mean 'contextSize'?)" in result.stderr


def test_json_format_lists_file_line_column_field_and_hint(tree: Callable[..., SiteTree]) -> None:
    t = tree(models={"a": {**MODEL, "group": "zzz"}})
    result = halogen("validate", "--format", "json", t.root)
    assert result.returncode == 1
    [d] = [d for d in json.loads(result.stdout) if d["severity"] == "error"]
    assert (d["file"], d["line"], d["column"], d["field"], d["severity"]) == (
        "models.d/a.yaml",
        3,
        1,
        "group",
        "error",
    )
    assert d["hint"] == "declared: main"


def test_github_format_writes_error_annotations(tree: Callable[..., SiteTree]) -> None:
    t = tree(models={"a": {**MODEL, "group": "zzz"}})
    result = halogen("validate", "--format", "github", t.root)
    assert (
        "::error file=models.d/a.yaml,line=3,col=1,title=group::group 'zzz' is not declared" in result.stderr
    )
    assert (
        "::warning file=halogen.yaml,line=15,col=3,title=groups.main::group 'main' has no members"
        in result.stderr
    )


def test_warnings_do_not_fail_the_build(tree: Callable[..., SiteTree]) -> None:
    t = tree(site={**SITE, "groups": {"main": {}, "idle": {}}})
    result = halogen("build", "--src", t.root)
    assert result.returncode == 0, result.stderr
    assert (
        "halogen.yaml:" in result.stderr
        and "warning: groups.idle: group 'idle' has no members" in result.stderr
    )
    assert "idle" not in (t.out / "config.yaml").read_text()


def test_validate_finds_the_site_from_a_file_inside_it(tree: Callable[..., SiteTree]) -> None:
    t = tree()
    assert halogen("validate", t.root / "models.d" / "tiny.yaml").returncode == 0


def test_usage_errors_exit_2() -> None:
    assert halogen("build", "--format", "yaml").returncode == 2
    assert halogen("frobnicate").returncode == 2


def test_a_preload_name_in_another_case_or_with_latest_is_reported_at_its_preload_line(
    tree: Callable[..., SiteTree],
) -> None:
    # llama-swap matches preload names exactly, so halogen must refuse these before writing.
    t = tree(site={**SITE, "llamaSwap": {"preload": ["tiny", "tiny:latest", "TINY"]}})
    lines = (t.root / "halogen.yaml").read_text().splitlines()
    result = halogen("validate", t.root)
    assert result.returncode == 1, result.stderr
    reported = result.stderr.splitlines()
    for index, name in ((1, "tiny:latest"), (2, "TINY")):
        line = lines.index(f"  - {name}") + 1
        want = f"llamaSwap.preload[{index}]: preload names {name!r}, which is no model id or alias"
        assert any(r.startswith(f"halogen.yaml:{line}:") and want in r for r in reported), result.stderr
    assert "preload[0]" not in result.stderr
