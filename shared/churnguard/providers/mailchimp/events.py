"""Mailchimp webhook events as canonical changes: audience events are list memberships keyed as
the sync's members (list id and the email's subscriber hash), campaign events are campaigns."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from churnguard.canonical.entities import tombstone
from churnguard.inbound.changes import Change, compact, epoch, generic_change, include_raw
from churnguard.inbound.queued import ProviderEvent
from churnguard.pipeline.records import Operation
from churnguard.providers.mailchimp import canonical


def _fired_at(payload: Mapping[str, Any], received_at: float) -> datetime:
    fired = payload.get("fired_at")
    if isinstance(fired, str):
        try:
            return datetime.strptime(fired, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        except ValueError:
            pass
    return epoch(received_at)


def _membership(data: Mapping[str, Any], email: str, status: str | None, raw: bool) -> dict[str, Any]:
    merges: Mapping[str, Any] = data["merges"] if isinstance(data.get("merges"), dict) else {}
    entity = canonical.membership(
        str(data.get("list_id") or ""), email, status, merges.get("FNAME"), merges.get("LNAME")
    )
    membership = entity.model_dump(mode="json", exclude_none=True)
    if raw:
        membership["raw"] = dict(data)
    return membership


def changes(event: ProviderEvent, endpoint: Mapping[str, Any]) -> list[Change]:
    payload = event.payload
    raw = include_raw(endpoint)
    occurred_at = _fired_at(payload, event.received_at)
    data: dict[str, Any] = payload["data"] if isinstance(payload.get("data"), dict) else {}
    list_id = str(data.get("list_id") or "")
    if event.event_type == "campaign" and data.get("id"):
        campaign_id = str(data["id"])
        campaign = {
            "id": campaign_id,
            "source_ids": {canonical.PROVIDER: campaign_id},
            **compact({"subject": data.get("subject"), "status": data.get("status"), "list_id": list_id or None}),
        }
        if raw:
            campaign["raw"] = dict(data)
        return [Change("campaign", campaign_id, Operation.UPSERT, occurred_at, campaign, canonical=True)]
    if event.event_type == "upemail" and list_id:
        old, new = str(data.get("old_email") or ""), str(data.get("new_email") or "")
        if old and new:
            gone = canonical.membership_id(list_id, canonical.subscriber_hash(old))
            moved = _membership(data, new, None, raw)
            return [
                Change(
                    "list_membership",
                    gone,
                    Operation.DELETE,
                    occurred_at,
                    tombstone(canonical.PROVIDER, gone),
                    canonical=True,
                ),
                Change("list_membership", moved["id"], Operation.UPSERT, occurred_at, moved, canonical=True),
            ]
    merges: Mapping[str, Any] = data["merges"] if isinstance(data.get("merges"), dict) else {}
    email = str(data.get("email") or merges.get("EMAIL") or "")
    if not email or not list_id:
        return [generic_change(event, occurred_at)]
    membership = _membership(data, email, canonical.STATUS_AFTER.get(event.event_type), raw)
    return [Change("list_membership", membership["id"], Operation.UPSERT, occurred_at, membership, canonical=True)]
