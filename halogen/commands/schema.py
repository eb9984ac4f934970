from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel

from halogen.commands import sites
from halogen.compiler.site.inputs import ModelFile, SiteFile
from halogen.diagnostics import render

SCHEMAS: dict[str, type[BaseModel]] = {"halogen.schema.json": SiteFile, "model.schema.json": ModelFile}


# What the models check in validators, said in JSON Schema where it can be (the rest, rules that
# compare values or span files, is listed in tests/compiler/test_schema_corpus.py).
RULES: dict[str, dict[str, Any]] = {
    "Image": {
        "not": {"required": ["tag", "digest"]},  # give a tag or a digest, not both
        "properties": {"tag": {"not": {"const": "latest"}}},
    },
    "SiteFile": {"properties": {"macros": {"propertyNames": {"not": {"enum": ["PORT", "MODEL_ID", "PID"]}}}}},
    "Filters": {
        "properties": {
            "stripParams": {"items": {"not": {"const": "model"}}},
            "setParams": {"propertyNames": {"not": {"const": "model"}}},
        }
    },
    "ModelFile": {
        "properties": {
            "aliases": {"items": {"not": {"pattern": ":[Ll][Aa][Tt][Ee][Ss][Tt]$"}}},
            # `<id>:latest` names the model itself; a variant runs on its model's process.
            "variants": {
                "propertyNames": {"not": {"const": "latest"}},
                "additionalProperties": {"propertyNames": {"not": {"const": "model"}}},
            },
        },
        "anyOf": [{"required": ["file"]}, {"required": ["cmd"]}],
        "if": {"required": ["cmd"]},
        "then": {"allOf": [{"not": {"required": [key]}} for key in ("file", "args", "contextSize")]},
    },
}


def _strict(node: Any) -> Any:
    """Mappings whose keys must match a pattern allow no other key (pydantic writes the
    pattern alone, which JSON Schema reads as 'other keys are anything')."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if "patternProperties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def _with_rules(schema: dict[str, Any], title: str) -> dict[str, Any]:
    for name, rule in RULES.items():
        target = schema if title == name else schema.get("$defs", {}).get(name)
        if target is not None:
            target["allOf"] = [*target.get("allOf", []), rule]
    return schema


def documents() -> dict[str, bytes]:
    out = {}
    for name, cls in SCHEMAS.items():
        schema = {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$id": name,
            **_with_rules(_strict(cls.model_json_schema()), cls.__name__),
        }
        out[name] = (json.dumps(schema, indent=2, sort_keys=False) + "\n").encode()
    return out


def run(src: Path | None, *, check: bool) -> int:
    """Write (or check) schemas/ in the site found from the current folder, or in `src`."""
    root, found = sites.one([], src)
    if root is None:
        click.echo(render(found, "text"), err=True)
        return 1
    folder = root / "schemas"
    wanted = documents()
    stale = [
        name
        for name, data in wanted.items()
        if not (folder / name).is_file() or (folder / name).read_bytes() != data
    ]
    if check:
        for name in stale:
            click.echo(f"halogen: schemas/{name} is stale: run `halogen schema`", err=True)
        return 1 if stale else 0
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in wanted.items():
        (folder / name).write_bytes(data)
    click.echo(f"halogen: wrote {len(SCHEMAS)} schemas to {folder}", err=True)
    return 0
