"""llama-swap's macros: the names a config declares, and `${name}` expanded in a model's fields
(global macros, then the model's own over them), as LoadConfigFromReader does
(internal/config/config.go). `${PID}` is left for cmdStop."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from halogen import patterns
from halogen.llamaswap import command
from halogen.llamaswap.config import Config, MacroValue, Model
from halogen.llamaswap.resolved import RESERVED, FieldPath, Problem

MACRO_NAME = re.compile(patterns.MACRO_NAME)
MACRO_REF = re.compile(r"\$\{([a-zA-Z0-9_.-]+)\}")


def check_macros(macros: Mapping[str, MacroValue], path: FieldPath) -> list[Problem]:
    problems = []
    for name, value in macros.items():
        where = (*path, name)
        if not MACRO_NAME.match(name):
            problems.append(
                Problem(
                    where,
                    f"macro name {name!r} is invalid",
                    "use letters, digits, '_' or '-', under 64 characters",
                )
            )
        elif name in RESERVED:
            problems.append(
                Problem(
                    where, f"macro name {name!r} is reserved", "PORT, MODEL_ID and PID are set by llama-swap"
                )
            )
        if isinstance(value, str):
            if f"${{{name}}}" in value:
                problems.append(Problem(where, f"macro {name!r} refers to itself"))
            if len(value) > 1024:
                problems.append(Problem(where, "macro value is longer than 1024 characters"))
    return problems


def _merged(config: Config, model_id: str, model: Model) -> list[tuple[str, MacroValue]]:
    merged: list[tuple[str, MacroValue]] = [("MODEL_ID", model_id), *config.macros.items()]
    for name, value in model.macros.items():
        for i, (existing, _) in enumerate(merged):
            if existing == name:
                merged[i] = (name, value)
                break
        else:
            merged.append((name, value))
    return merged


def _text(value: MacroValue) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def substitute(value: Any, slug: str, macro: MacroValue) -> Any:
    """Replace one macro inside nested data; a string that is exactly the macro keeps its type."""
    if isinstance(value, str):
        return macro if value == slug else value.replace(slug, _text(macro))
    if isinstance(value, Mapping):
        return {k: substitute(v, slug, macro) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, slug, macro) for v in value]
    return value


def _leftovers(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(MACRO_REF.findall(value))
    if isinstance(value, Mapping):
        return set().union(*(_leftovers(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_leftovers(v) for v in value)) if value else set()
    return set()


def expand(config: Config, model_id: str, model: Model) -> dict[str, Any]:
    """The fields llama-swap expands macros in, with every macro but ${PORT} (and ${PID}) expanded."""
    fields: dict[str, Any] = {
        "cmd": command.strip_comments(model.cmd),
        "cmdStop": command.strip_comments(model.cmdStop),
        "proxy": model.proxy,
        "checkEndpoint": model.checkEndpoint,
        "filters.stripParams": model.filters.stripParams,
        "name": model.name,
        "description": model.description,
        "aliases": list(model.aliases),
        "metadata": dict(model.metadata),
        # Its keys only: they take macros, ${MODEL_ID} above all (internal/config/macros.go).
        "filters.setParamsByID": list(model.filters.setParamsByID),
    }
    for name, value in reversed(_merged(config, model_id, model)):
        slug = f"${{{name}}}"
        fields = {k: substitute(v, slug, value) for k, v in fields.items()}
    return fields


def check_leftover_macros(fields: Mapping[str, Any], base: FieldPath, problems: list[Problem]) -> None:
    """A `${name}` still in a field after expansion names no macro (`${PID}` is cmdStop's)."""
    for name, value in fields.items():
        for ref in sorted(_leftovers(value)):
            if ref == "PID" and name == "cmdStop":
                continue
            problems.append(
                Problem(
                    (*base, *name.split(".")),
                    f"unknown macro ${{{ref}}}",
                    "declare it under macros before the macros that use it",
                )
            )
