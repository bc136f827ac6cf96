"""The canonical customer-data model: one pydantic model per kind of object, whatever its source.

Every provider's objects become these entities through that provider's `canonical.py`
(churnguard/providers/<provider>/), which the sync path and the webhook path both call, so the
same object lands as the same entity, record id, dedupe key and data however it arrived.

- `entities`: the models. Money is integer minor units next to an ISO 4217 currency, never a
  float; times are UTC; every entity carries `source_ids` ({provider: id}) and the provider's
  original object under `raw`.
- `SCHEMA_VERSION`: written on every record; raised whenever an entity changes shape.
"""

from churnguard.canonical.entities import (
    ENTITIES,
    SCHEMA_VERSION,
    CanonicalEntity,
    entity_schema,
    mapped_onto,
    tombstone,
)

__all__ = ["ENTITIES", "SCHEMA_VERSION", "CanonicalEntity", "entity_schema", "mapped_onto", "tombstone"]
