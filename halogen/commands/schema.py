from __future__ import annotations

import json
from pathlib import Path

import click
from pydantic import BaseModel

from halogen.spec.inputs import ModelFile, SiteFile

SCHEMAS: dict[str, type[BaseModel]] = {"halogen.schema.json": SiteFile, "model.schema.json": ModelFile}


def documents() -> dict[str, bytes]:
    out = {}
    for name, cls in SCHEMAS.items():
        schema = {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$id": name,
            **cls.model_json_schema(),
        }
        out[name] = (json.dumps(schema, indent=2, sort_keys=False) + "\n").encode()
    return out


def run(src: Path, *, check: bool) -> int:
    folder = src / "schemas"
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
