"""Stripe events as canonical changes: the event's object becomes its canonical entity through
canonical.py, the mapping the sync path uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from churnguard.canonical.entities import tombstone
from churnguard.inbound.changes import Change, epoch, generic_change, include_raw, parse_time
from churnguard.inbound.parsing import lookup
from churnguard.inbound.queued import ProviderEvent
from churnguard.pipeline.records import Operation
from churnguard.providers.stripe import canonical


def changes(event: ProviderEvent, endpoint: Mapping[str, Any]) -> list[Change]:
    payload = event.payload
    occurred_at = parse_time(payload.get("created")) or epoch(event.received_at)
    obj = lookup(payload, "data.object") or {}
    object_id = obj.get("id") if isinstance(obj, dict) else None
    entity = canonical.entity_of(obj) if isinstance(object_id, str) else None
    if entity is None:
        return [generic_change(event, occurred_at)]
    # A subscription's `*.deleted` only means canceled: its object says so and it is kept.
    deleted = event.event_type.endswith(".deleted") and entity != "subscription"
    operation = Operation.DELETE if deleted or obj.get("deleted") is True else Operation.UPSERT
    if operation is Operation.DELETE:
        data = tombstone(canonical.PROVIDER, str(object_id))
    else:
        data = canonical.canonical(obj, raw=include_raw(endpoint))
    # A subscription's discounts are ids in an event: its MRR is exact only from a re-read.
    incomplete = operation is Operation.UPSERT and data.get("mrr_complete") is False
    return [Change(entity, str(object_id), operation, occurred_at, data, canonical=True, incomplete=incomplete)]
