"""schemas/ is generated from the input models and must not go stale."""

from __future__ import annotations

import json

import jsonschema
import yaml

from .conftest import REPO, halogen


def test_schemas_folder_is_up_to_date() -> None:
    result = halogen("schema", "--check", "--src", REPO)
    assert result.returncode == 0, result.stderr


def test_shipped_files_validate_against_the_generated_schemas() -> None:
    site_schema = json.loads((REPO / "schemas" / "halogen.schema.json").read_text())
    model_schema = json.loads((REPO / "schemas" / "model.schema.json").read_text())
    jsonschema.Draft7Validator(site_schema).validate(yaml.safe_load((REPO / "halogen.yaml").read_text()))
    for path in sorted((REPO / "models.d").glob("*.yaml")):
        jsonschema.Draft7Validator(model_schema).validate(yaml.safe_load(path.read_text()))


def test_the_model_schema_rejects_unknown_keys_like_the_cli_does() -> None:
    model_schema = json.loads((REPO / "schemas" / "model.schema.json").read_text())
    errors = list(jsonschema.Draft7Validator(model_schema).iter_errors({"file": "a.gguf", "contxtSize": 1}))
    assert errors
