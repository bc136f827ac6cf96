"""Routes for the canonical model's schemas: what every entity's `data` holds, by version."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router

from churnguard.canonical import ENTITIES, SCHEMA_VERSION, entity_schema
from churnguard.errors import NotFoundError
from churnguard.models import Model

router = Router()


class EntitySummary(Model):
    entity: str
    description: str
    schema_url: str


class SchemaIndex(Model):
    schema_version: int
    entities: list[EntitySummary]


@router.get("/api/schemas", tags=["schemas"], summary="The canonical entities and their schema version")
def list_schemas() -> SchemaIndex:
    return SchemaIndex(
        schema_version=SCHEMA_VERSION,
        entities=[
            EntitySummary(
                entity=name,
                description=(model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else name,
                schema_url=f"/api/schemas/{name}",
            )
            for name, model in ENTITIES.items()
        ],
    )


@router.get("/api/schemas/<entity>", tags=["schemas"], summary="The JSON Schema of one canonical entity")
def get_schema(entity: str) -> dict[str, Any]:
    if entity not in ENTITIES:
        raise NotFoundError("no such canonical entity", {"entity": entity[:64]})
    return entity_schema(entity)
