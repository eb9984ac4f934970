"""The README's table of llama-swap's keys: every key of llama-swap's schema is there, and what
it says (implemented, accepted without effect, refused) is what halogen's config model does."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel

from halogen.llamaswap import config

from .conftest import LLAMA_SWAP_SCHEMA, REPO

ROW = re.compile(r"^\| `([^`]+)` \| (implemented|accepted|refused) \|(.*)\|$")


def _table() -> dict[str, tuple[str, str]]:
    text = (REPO / "README.md").read_text()
    body = text.split("<!-- llama-swap keys: begin -->", 1)[1].split("<!-- llama-swap keys: end -->", 1)[0]
    rows = {}
    for line in body.strip().splitlines()[2:]:
        match = ROW.match(line)
        assert match, f"not a row of the keys table: {line!r}"
        assert match.group(1) not in rows, f"{match.group(1)} is in the table twice"
        rows[match.group(1)] = (match.group(2), match.group(3).strip())
    return rows


def _schema_keys() -> dict[str, tuple[type[BaseModel], dict[str, Any]]]:
    """Each key path of the schema, with the halogen model that holds it and its refusals."""
    schema = json.loads(LLAMA_SWAP_SCHEMA.read_text())
    model = schema["properties"]["models"]["additionalProperties"]["properties"]
    out: dict[str, tuple[type[BaseModel], dict[str, Any]]] = {}
    for key in schema["properties"]:
        out[key] = (config.Config, config.UNSUPPORTED_TOP)
    for key in model:
        out[f"models.*.{key}"] = (config.Model, config.UNSUPPORTED_MODEL)
    for key in model["filters"]["properties"]:
        out[f"models.*.filters.{key}"] = (config.Filters, config.UNSUPPORTED_FILTERS)
    for key in schema["definitions"]["timeouts"]["properties"]:
        out[f"models.*.timeouts.{key}"] = (config.Timeouts, {})
    return out


def test_the_readme_names_every_key_of_llama_swaps_schema_as_halogen_treats_it() -> None:
    table = _table()
    keys = _schema_keys()
    assert sorted(set(keys) - set(table)) == [], "keys of llama-swap's schema missing from the README"
    assert sorted(set(table) - set(keys)) == [], "README rows for keys llama-swap's schema does not have"
    for path, (holder, refused) in keys.items():
        status, why = table[path]
        name = path.rsplit(".", 1)[-1]
        if name in refused:
            assert status == "refused" and why, f"{path}: halogen refuses it, the README must say why"
        else:
            assert name in holder.model_fields, f"{path}: halogen's config model does not know it"
            assert status in ("implemented", "accepted"), (
                f"{path}: halogen reads it, the README says {status}"
            )
        if status == "accepted":
            assert why.startswith("no effect:"), f"{path}: say why it has no effect"
