"""HubSpot events as changes. HubSpot's webhooks name a property change, not the object, so they
stay partial changes of the canonical entity's record, ordered per property (`ordering_key`);
creations, deletions, restores and merges are whole-record changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from churnguard.inbound.changes import Change, compact, epoch, generic_change, parse_time
from churnguard.inbound.queued import ProviderEvent
from churnguard.pipeline.records import Operation

# subscriptionType's object part → canonical entity.
ENTITIES = {"contact": "contact", "company": "company", "deal": "deal", "ticket": "ticket"}


def changes(event: ProviderEvent, endpoint: Mapping[str, Any]) -> list[Change]:  # noqa: PLR0911 - one answer per HubSpot action
    payload = event.payload
    occurred_at = parse_time(payload.get("occurredAt")) or epoch(event.received_at)
    object_type, _, action = event.event_type.partition(".")
    entity = ENTITIES.get(object_type)
    object_id = payload.get("objectId")
    if entity is None or object_id is None:
        return [generic_change(event, occurred_at)]
    record_id = str(object_id)
    if action in ("creation", "restore"):
        return [Change(entity, record_id, Operation.UPSERT, occurred_at, {"hubspot_event": action})]
    if action == "propertyChange":
        name = str(payload.get("propertyName") or "")
        if not name:
            return [generic_change(event, occurred_at)]
        data = {name: payload.get("propertyValue"), "change_source": payload.get("changeSource")}
        return [Change(entity, record_id, Operation.UPSERT, occurred_at, compact(data), f"{record_id}#{name}")]
    if action in ("deletion", "privacyDeletion"):
        return [Change(entity, record_id, Operation.DELETE, occurred_at, {"hubspot_event": action})]
    if action == "merge":
        primary = str(payload.get("primaryObjectId") or record_id)
        merged = [str(value) for value in payload.get("mergedObjectIds") or []]
        result = [
            Change(entity, primary, Operation.UPSERT, occurred_at, {"hubspot_event": "merge", "merged_ids": merged})
        ]
        result += [
            Change(entity, old, Operation.DELETE, occurred_at, {"hubspot_event": "merge", "merged_into": primary})
            for old in merged
            if old != primary
        ]
        return result
    return [generic_change(event, occurred_at)]
