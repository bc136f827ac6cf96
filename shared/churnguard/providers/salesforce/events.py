"""Salesforce outbound messages as canonical changes: each Notification's record becomes its
canonical entity through canonical.py, the mapping the sync path uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from churnguard.inbound.changes import GENERIC_ENTITY, Change, epoch, generic_change, include_raw, parse_time
from churnguard.inbound.queued import ProviderEvent
from churnguard.pipeline.records import Operation
from churnguard.providers.salesforce import canonical


def changes(event: ProviderEvent, endpoint: Mapping[str, Any]) -> list[Change]:
    payload = event.payload
    fields: dict[str, Any] = dict(payload.get("fields") or {})
    occurred_at = parse_time(fields.get("LastModifiedDate") or fields.get("SystemModstamp")) or epoch(event.received_at)
    record_id = fields.get("Id")
    object_type = str(payload.get("object_type") or "")
    if not record_id:
        return [generic_change(event, occurred_at)]
    entity = canonical.entity_of(object_type)
    if entity is not None:
        data = canonical.canonical(object_type, fields, raw=include_raw(endpoint))
        return [Change(entity, str(record_id), Operation.UPSERT, occurred_at, data, canonical=True)]
    # An object without a canonical entity keeps its fields, as a sync writes them.
    entity = object_type.lower() or GENERIC_ENTITY
    return [Change(entity, str(record_id), Operation.UPSERT, occurred_at, {"object_type": object_type, **fields})]
