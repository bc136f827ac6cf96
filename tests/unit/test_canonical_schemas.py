"""The canonical model's documentation: the checked-in JSON Schemas and the schema routes."""

from __future__ import annotations

from pathlib import Path

from churnguard.canonical import ENTITIES, SCHEMA_VERSION, entity_schema
from churnguard.canonical.schema_files import rendered
from tests.support.handlers import REPO


def test_the_checked_in_schemas_are_the_models() -> None:
    directory = Path(REPO) / "docs" / "schemas"
    on_disk = {path.name: path.read_text() for path in directory.glob("*.json")}
    assert on_disk == rendered(), "docs/schemas differs from the models: run `make schemas` and commit the result"


def test_every_entity_has_an_id_its_sources_and_the_raw_object() -> None:
    for name in ENTITIES:
        schema = entity_schema(name)
        assert schema["x-schema-version"] == SCHEMA_VERSION
        assert {"id", "source_ids"} <= set(schema["required"]), name
        assert "raw" in schema["properties"], name


def test_money_is_never_a_float() -> None:
    def numbers(node: object, path: str) -> list[str]:
        found = []
        if isinstance(node, dict):
            if node.get("type") == "number":
                found.append(path)
            for key, value in node.items():
                found += numbers(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                found += numbers(value, f"{path}[{index}]")
        return found

    for name in ENTITIES:
        assert numbers(entity_schema(name), name) == [], "amounts are integer minor units, percentages decimals"
