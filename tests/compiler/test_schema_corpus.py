"""The JSON Schemas editors and check-jsonschema use refuse what halogen refuses, wherever JSON
Schema can say it: every case of the bad-input corpus is run through `jsonschema`, and the
cases a schema cannot express are listed here, each with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from halogen import yamlio
from halogen.diagnostics import Invalid

from .conftest import REPO
from .test_bad_inputs import CASES, SITE, SMALL, TINY, Case

SCHEMAS = REPO / "schemas"

# What no JSON Schema of one file can refuse.
NOT_A_SCHEMA_MATTER = {
    # The YAML itself: a schema sees the data a YAML reader made of it, or nothing.
    **dict.fromkeys(
        [
            "unclosed-flow-list",
            "tab-indentation",
            "duplicate-key",
            "undefined-alias",
            "yaml-version-2",
            "latin-1-bytes",
            "utf-16-file",
            "nul-byte",
            "integer-over-64-bits",
            "custom-tag",
            "omap-tag",
            "set-tag",
            "lone-surrogate",
            "keys-equal-once-read-as-text",
            "mapping-in-a-plain-value",
            "several-documents",
            "mapping-as-a-key",
            "ten-megabyte-file",
            "10000-nested-flow-lists",
            "10000-nested-block-lists",
            "billion-laughs",
            "aliases-of-a-long-string",
            "integer-of-5000-digits",
            "python-object-tag",
            "unquoted-date",
            "python-apply-tag",
            "binary-tag",
            "file-name-not-utf-8",
        ],
        "YAML syntax, tags, limits or merge keys, before any schema",
    ),
    # Files and folders, not their content.
    **dict.fromkeys(
        [
            "symlink-to-a-file-outside",
            "symlink-loop",
            "models-folder-empty",
            "file-name-not-an-id",
            "symlink-to-etc-passwd",
            "symlink-to-nothing",
            "directory-named-like-a-model",
            "halogen-yaml-is-a-directory",
            "halogen-yaml-is-dev-zero",
            "halogen-yaml-missing",
            "models-folder-holding-only-a-readme",
            "one-id-in-two-files",
            "models-folder-missing",
        ],
        "the site's files and folders",
    ),
    # Rules across files: model to site (backends, groups, macros, mount), or model to model.
    **dict.fromkeys(
        [
            "file-climbing-out-through-a-macro",
            "ids-differing-only-in-case",
            "alias-equal-to-another-id",
            "variant-id-equal-to-an-alias",
            "alias-in-two-models",
            "unknown-macro-in-file",
            "unknown-macro-in-args",
            "backend-not-declared",
            "backend-ambiguous",
            "group-not-declared",
            "preload-naming-no-model",
            "flag-contradicting-the-backend",
            "file-absolute-outside-the-mount",
            "raw-cmd-loading-a-model-outside-the-mount",
            "proxy-port-among-model-ports",
        ],
        "a rule across files",
    ),
    # Rules inside one file that compare values, or read a command line or text.
    **dict.fromkeys(
        [
            "macro-using-itself",
            "macro-using-a-later-one",
            "macro-using-an-unknown-one",
            "macro-named-like-a-backend",
            "context-above-the-model-context-length",
            "flag-given-twice",
            "flag-halogen-writes",
            "flag-halogen-writes-spelled-with-underscores",
            "cmd-without-port",
            "cmd-with-an-open-quote",
            "grace-period-shorter-than-unload",
            "binary-where-the-image-has-none",
            "address-without-a-load-balancer",
            "kubernetes-version-without-a-schema",
            "kubernetes-version-without-the-sleep-action",
            "file-climbing-out-with-dotdot",
            "mount-path-with-dotdot",
            "mount-path-over-scratch",
            "peer-proxy-with-a-bracket-left-open",
            "peer-proxy-port-out-of-range",
        ],
        "compares values or parses a command line, a path or a version",
    ),
}


def schema(name: str) -> jsonschema.protocols.Validator:
    document = json.loads((SCHEMAS / name).read_text())
    return jsonschema.Draft7Validator(document, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def refused(root: Path) -> bool | None:
    """True when a schema refuses a file of the site; None when there is no data to check.
    The files are read as halogen reads them (its size, depth and alias limits included)."""
    documents: list[tuple[str, Any]] = []
    try:
        documents.append(("halogen.schema.json", yamlio.read(root / "halogen.yaml").data))
        documents += [
            ("model.schema.json", yamlio.read(path).data)
            for path in sorted((root / "models.d").glob("*.yaml"))
            if path.is_file() and not path.is_symlink()
        ]
    except Invalid:
        return None
    return any(next(schema(name).iter_errors(data), None) is not None for name, data in documents)


def site(tmp_path: Path, case: Case) -> Path:
    root = tmp_path / "site"
    (root / "models.d").mkdir(parents=True)
    (root / "halogen.yaml").write_text(SITE)
    (root / "models.d" / "tiny.yaml").write_text(TINY)
    (root / "models.d" / "small.yaml").write_text(SMALL)
    case.breaks(root)
    return root


def test_the_good_site_passes_the_schemas(tmp_path: Path) -> None:
    assert refused(site(tmp_path, Case("none", lambda root: None, "", ""))) is False


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_schemas_refuse_each_bad_input_they_can_express(case: Case, tmp_path: Path) -> None:
    verdict = refused(site(tmp_path, case))
    if case.id in NOT_A_SCHEMA_MATTER:
        assert verdict is not True, f"the schema refuses {case.id}: take it off the list"
    else:
        assert verdict is True, f"the schema accepts {case.id}, which halogen refuses"


def test_a_whole_number_written_with_a_fraction_is_the_one_type_rule_a_schema_cannot_say(
    tmp_path: Path,
) -> None:
    # JSON has one number type: `"type": "integer"` accepts 32768.0 (draft 6 on), and so do
    # editors; halogen reads YAML's float and refuses it (tests/compiler/test_messages.py).
    model = {"file": "x.gguf", "contextSize": 32768.0}
    assert next(schema("model.schema.json").iter_errors(model), None) is None
    assert next(schema("model.schema.json").iter_errors({**model, "contextSize": 32768.5}), None) is not None
