"""The canonical Record: what every sink receives, whatever the source.

One record is one JSON line in the data lake:

    {"organization_id": "org_1", "integration_id": "int_…", "provider": "postgresql",
     "entity": "customer", "operation": "upsert", "record_id": "42",
     "cursor": "2024-05-01T10:00:00+00:00", "dedupe_key": "9f2c…", "source": "public.customers",
     "batch_id": "syn_…", "schema_version": 2, "data": {…}}

`record_id` is the source's primary key as a string (a composite key is a JSON array of its
parts). `cursor` is the source's change marker (a database's incremental column, which is also
the change's time there); `event_time` is added by sources that report when an event happened
(webhooks, streams). `dedupe_key` hashes the organisation, integration, entity, record_id and
cursor (without a cursor: the whole record): the same version of the same record gets the same
key however often it is read, so a consumer can drop repeats across syncs, webhooks and streams.
`schema_version` is the canonical model's (churnguard.canonical): for a provider's object,
`data` is its canonical entity with the object under `data.raw`; a database row keeps its own
columns. The hot path writes lines directly (see `pipeline.core`); this model is the schema for reading
them back.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict

from churnguard.models import Model


class Operation(StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"


class Record(Model):
    model_config = ConfigDict(extra="forbid", frozen=True)

    organization_id: str
    integration_id: str
    provider: str
    entity: str
    operation: Operation
    record_id: str
    cursor: Any = None
    event_time: datetime | None = None
    dedupe_key: str
    source: str
    batch_id: str
    schema_version: int = 1  # lines written before the canonical model carry none
    data: dict[str, Any]
