"""SendGrid Event Webhook events as canonical email_events; a bounce, block, spam report or
unsubscribe is keyed as the suppression a sync reads for it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from churnguard.inbound.changes import Change, epoch, include_raw, parse_time
from churnguard.inbound.queued import ProviderEvent
from churnguard.pipeline.records import Operation
from churnguard.providers.sendgrid import canonical


def changes(event: ProviderEvent, endpoint: Mapping[str, Any]) -> list[Change]:
    payload = event.payload
    occurred_at = parse_time(payload.get("timestamp")) or epoch(event.received_at)
    entity = canonical.webhook_event(event.event_type, payload, event.event_id)
    data = entity.model_dump(mode="json", exclude_none=True)
    if include_raw(endpoint):
        data["raw"] = dict(payload)
    return [Change("email_event", entity.id, Operation.UPSERT, occurred_at, data, canonical=True)]
