"""Each message a new user met that said the wrong thing: one error, at the value's line and
column, saying what to write, and exit 1."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import MODEL, SITE, SiteTree, halogen

TINY = "name: Tiny\nfile: tiny/tiny.gguf\ngroup: main\n"


def the_error(t: SiteTree) -> dict[str, Any]:
    """The one error `validate --format json` reports (exit 1), whatever else it warns about."""
    result = halogen("validate", "--format", "json", t.root)
    assert result.returncode == 1, result.stdout + result.stderr
    found = [d for d in json.loads(result.stdout) if d["severity"] == "error"]
    assert len(found) == 1, found
    error: dict[str, Any] = found[0]
    return error


@pytest.mark.parametrize(
    ("written", "column", "hint"),
    [
        ('"4096"', 14, "write the number without quotes"),
        ("'4096'", 14, "write the number without quotes"),
        ("32k", 14, "write a number, a whole one"),
        ("32768.0", 14, "write a whole number, without a fraction"),
    ],
)
def test_a_number_written_wrong_is_reported_at_the_value_with_the_right_hint(
    tree: Callable[..., SiteTree], written: str, column: int, hint: str
) -> None:
    t = tree(models={"tiny": TINY + f"contextSize: {written}\n"})
    error = the_error(t)
    assert (error["file"], error["line"], error["column"], error["field"]) == (
        "models.d/tiny.yaml",
        4,
        column,
        "contextSize",
    )
    assert error["hint"] == hint


def test_a_kubernetes_version_read_as_a_float_gets_a_quote_it_hint(tree: Callable[..., SiteTree]) -> None:
    site = {**SITE, "deployment": {**SITE["deployment"], "kubernetesVersion": 1.30}}  # type: ignore[dict-item]
    t = tree(site=site)
    text = (t.root / "halogen.yaml").read_text().replace("kubernetesVersion: 1.3", "kubernetesVersion: 1.30")
    (t.root / "halogen.yaml").write_text(text)
    line = text.splitlines().index("  kubernetesVersion: 1.30") + 1
    error = the_error(t)
    assert (error["line"], error["column"], error["field"]) == (line, 22, "deployment.kubernetesVersion")
    assert error["hint"] == 'quote it, "1.30": YAML reads 1.30 as the number 1.3'


@pytest.mark.parametrize(
    ("deployment", "field"),
    [
        ({"name": "LLM_X"}, "deployment.name"),
        ({"image": {"tag": "1.2.3", "digest": "sha256:xyz"}}, "deployment.image.digest"),
        ({"models": {"hostPath": "srv/models"}}, "deployment.models.hostPath"),
    ],
)
def test_a_value_of_the_wrong_form_is_described_in_words_not_as_a_regex(
    tree: Callable[..., SiteTree], deployment: dict[str, Any], field: str
) -> None:
    site = {**SITE, "deployment": {**SITE["deployment"], **deployment}}  # type: ignore[dict-item]
    error = the_error(tree(site=site))
    assert error["field"] == field
    assert error["message"] == "is not in the form expected here"
    assert error["hint"] and not re.search(r"[\^$\\]|\[[^\]]*-[^\]]*\]", error["hint"]), error["hint"]


def test_a_flag_the_backend_sets_is_an_error_even_with_the_same_value(tree: Callable[..., SiteTree]) -> None:
    # README: "a flag the backend also sets is an error"; the same value was accepted and
    # written twice into the command line.
    t = tree(models={"tiny": {**MODEL, "args": ["--threads", "2"]}})
    error = the_error(t)
    assert (error["file"], error["line"], error["column"], error["field"]) == (
        "models.d/tiny.yaml",
        6,
        3,
        "args[0]",
    )
    assert error["message"] == "--threads 2 is already set by backend 'cpu'"


def test_a_flag_given_twice_with_the_same_value_is_an_error(tree: Callable[..., SiteTree]) -> None:
    t = tree(models={"tiny": TINY + 'contextSize: 2048\nargs: [-b, "8", --batch-size, "8"]\n'})
    error = the_error(t)
    assert (error["line"], error["column"], error["field"]) == (5, 17, "args[2]")
    assert error["message"] == "--batch-size is given twice in this list"


def _patterns_in(node: object) -> set[str]:
    if isinstance(node, dict):
        own = {v for k, v in node.items() if k == "pattern" and isinstance(v, str)}
        return own.union(*(_patterns_in(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_patterns_in(v) for v in node))
    return set()


def test_every_pattern_of_the_input_models_has_words_for_its_diagnostic() -> None:
    from halogen import patterns
    from halogen.commands.schema import RULES, documents

    found = set().union(*(_patterns_in(json.loads(data)) for data in documents().values()))
    # Patterns the schema adds itself never reach a diagnostic: halogen's own check reports those.
    assert found - _patterns_in(RULES) - set(patterns.HINTS) - set(patterns.WORDS) == set()
