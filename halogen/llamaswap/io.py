"""Read a llama-swap config file the way llama-swap does; write one the way halogen promises."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from halogen import yamlio
from halogen.diagnostics import Diagnostic, Invalid, errors
from halogen.llamaswap.config import (
    UNSUPPORTED_FILTERS,
    UNSUPPORTED_MODEL,
    UNSUPPORTED_TOP,
    Config,
    Filters,
    Model,
)
from halogen.llamaswap.resolve import resolve
from halogen.llamaswap.resolved import Resolved, Unresolvable
from halogen.typed import parse

ENV_REF = re.compile(r"\$\{env\.([a-zA-Z_][a-zA-Z0-9_]*)\}")


def substitute_env(
    doc: yamlio.Document, environ: Mapping[str, str]
) -> tuple[list[Diagnostic], dict[str, str]]:
    """Replace `${env.NAME}` in every string value; the problems, and each value put in with the
    name it came from (values from the environment are secrets: they are never shown).

    llama-swap does this on the raw text, minus comments; doing it on parsed values gives the
    same result for every string field without letting a variable's value change the YAML's
    structure."""
    problems: list[Diagnostic] = []
    used: dict[str, str] = {}

    def visit(value: Any, path: yamlio.Path_) -> Any:
        if isinstance(value, str):

            def repl(match: re.Match[str]) -> str:
                found = environ.get(match.group(1))
                if found is None:
                    problems.append(
                        doc.diagnostic(
                            path,
                            f"environment variable {match.group(1)} is not set",
                            "export it before starting, or remove the reference",
                        )
                    )
                    return ""
                if any(c in found for c in "\n\r\x00"):
                    problems.append(
                        doc.diagnostic(path, f"environment variable {match.group(1)} holds a newline or NUL")
                    )
                if found:
                    used[found] = match.group(1)
                return found

            return ENV_REF.sub(repl, value)
        if isinstance(value, dict):
            return {k: visit(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [visit(v, (*path, i)) for i, v in enumerate(value)]
        return value

    doc.data = visit(doc.data, ())
    return problems, used


def _known_keys(cls: Any) -> set[str]:
    return set(cls.model_fields)


def _screen(doc: yamlio.Document) -> list[Diagnostic]:
    """Refuse what halogen serve does not implement; drop (with a warning) what llama-swap
    itself ignores, so the pydantic model sees only keys it knows."""
    out: list[Diagnostic] = []
    data = doc.data
    if not isinstance(data, dict):
        return [doc.diagnostic((), "the config must be a mapping with a `models` key")]

    def sweep(
        mapping: dict[str, Any], path: yamlio.Path_, known: set[str], unsupported: dict[str, Any]
    ) -> None:
        for key in list(mapping):
            if key in unsupported:
                if mapping[key] in (unsupported[key], None, {}, []):
                    del mapping[key]
                    continue
                out.append(
                    doc.diagnostic(
                        (*path, key),
                        f"halogen serve does not support the llama-swap key {key!r}",
                        "remove it, or run this config under llama-swap itself",
                    )
                )
            elif key not in known:
                out.append(
                    doc.diagnostic(
                        (*path, key),
                        f"unknown key {key!r} is ignored, as llama-swap ignores it",
                        "remove it",
                        severity="warning",
                    )
                )
                del mapping[key]

    sweep(data, (), _known_keys(Config), UNSUPPORTED_TOP)
    for key in ("routing", "selectors", "profiles", "ui", "performance"):
        if key in data and data[key] is None:
            del data[key]  # llama-swap reads a null section as an empty one
    for mid, model in (data.get("models") or {}).items() if isinstance(data.get("models"), dict) else []:
        if isinstance(model, dict):
            sweep(model, ("models", mid), _known_keys(Model), UNSUPPORTED_MODEL)
            if isinstance(model.get("filters"), dict):
                sweep(model["filters"], ("models", mid, "filters"), _known_keys(Filters), UNSUPPORTED_FILTERS)
    hooks = data.get("hooks")
    if (
        isinstance(hooks, dict)
        and isinstance(hooks.get("on_startup"), dict)
        and hooks["on_startup"].get("preload", []) is None
    ):
        hooks["on_startup"]["preload"] = []
        out.append(
            doc.diagnostic(
                ("hooks", "on_startup", "preload"),
                "preload is null",
                "write a list, or remove the key",
                severity="warning",
            )
        )
    for gid, group in (data.get("groups") or {}).items() if isinstance(data.get("groups"), dict) else []:
        if isinstance(group, dict) and "members" not in group:
            out.append(
                doc.diagnostic(
                    ("groups", gid),
                    f"group {gid!r} has no members",
                    "add `members: []`: llama-swap's schema requires it",
                    severity="warning",
                )
            )
    return out


def positioned(doc: yamlio.Document, exc: Unresolvable) -> list[Diagnostic]:
    return [doc.diagnostic(p.path, p.message, p.hint) for p in exc.problems]


def load(path: Path, environ: Mapping[str, str] | None = None) -> tuple[Resolved, list[Diagnostic]]:
    """Load, check and resolve a llama-swap config; return it with any warnings."""
    doc = yamlio.read(path, what="config")
    found = _screen(doc)
    secrets: dict[str, str] = {}
    if not errors(found):
        substituted, secrets = substitute_env(doc, os.environ if environ is None else environ)
        found += substituted
    if errors(found):
        raise Invalid(found)
    config, problems = parse(Config, doc)
    # `parse` also answers a config without the keys that failed, so that later checks can run
    # on the rest; a config with any invalid value is still refused (an `apiKeys` that fails must
    # never run as "no keys").
    if config is None or errors(problems):
        raise Invalid(found + problems)
    try:
        return dataclasses.replace(resolve(config), secrets=secrets, config_version=doc.sha256), found
    except Unresolvable as exc:
        raise Invalid(found + positioned(doc, exc)) from None


def dump(config: Config, header: str) -> str:
    return yamlio.dump(config.document(), header=header)
