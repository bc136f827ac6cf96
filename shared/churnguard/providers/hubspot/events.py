"""HubSpot events as changes. HubSpot's webhooks name a property change, not the object: the
processor re-reads the object through the integration's source (`incomplete`), which makes the
change the canonical entity a sync writes. Where it cannot (an endpoint without the integration's
credentials), a property change stays a partial change of the record, ordered per property
(`ordering_key`). Deletions are deletes; a merge deletes the merged records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from churnguard.canonical.entities import tombstone
from churnguard.inbound.changes import Change, compact, epoch, generic_change, parse_time
from churnguard.inbound.queued import ProviderEvent
from churnguard.pipeline.records import Operation
from churnguard.providers.hubspot.canonical import PROVIDER

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
        return [Change(entity, record_id, Operation.UPSERT, occurred_at, {"hubspot_event": action}, incomplete=True)]
    if action == "propertyChange":
        name = str(payload.get("propertyName") or "")
        if not name:
            return [generic_change(event, occurred_at)]
        data = {name: payload.get("propertyValue"), "change_source": payload.get("changeSource")}
        ordering = f"{record_id}#{name}"
        return [Change(entity, record_id, Operation.UPSERT, occurred_at, compact(data), ordering, incomplete=True)]
    if action in ("deletion", "privacyDeletion"):
        return [
            Change(entity, record_id, Operation.DELETE, occurred_at, tombstone(PROVIDER, record_id), canonical=True)
        ]
    if action == "merge":
        primary = str(payload.get("primaryObjectId") or record_id)
        merged = [str(value) for value in payload.get("mergedObjectIds") or []]
        merge = {"hubspot_event": "merge", "merged_ids": merged}
        result = [Change(entity, primary, Operation.UPSERT, occurred_at, merge, incomplete=True)]
        result += [
            Change(entity, old, Operation.DELETE, occurred_at, tombstone(PROVIDER, old), canonical=True)
            for old in merged
            if old != primary
        ]
        return result
    return [generic_change(event, occurred_at)]
