"""Provider events → canonical changes (entity, record id, operation, event time, data).

Each normaliser knows one provider's event shapes. Where the event carries the object (Stripe,
Salesforce outbound messages, Mailchimp audience events, SendGrid events), it becomes its
canonical entity through the provider's canonical.py, the mapping the sync path calls (`canonical`
changes). HubSpot's events name a property change, not the object: they stay partial changes of
the canonical entity's record. Events a normaliser does not model become an `event` record
carrying the provider's object, so nothing accepted is silently dropped. Every change carries
its event time, which decides the order in which changes to one record apply; `ordering_key`
narrows that to a field where a provider sends partial updates (HubSpot property changes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from churnguard.canonical.entities import tombstone
from churnguard.pipeline.records import Operation
from churnguard.providers.mailchimp import canonical as mailchimp_canonical
from churnguard.providers.salesforce import canonical as salesforce_canonical
from churnguard.providers.sendgrid import canonical as sendgrid_canonical
from churnguard.providers.stripe import canonical as stripe_canonical
from churnguard.webhooks.events import lookup
from churnguard.webhooks.queued import ProviderEvent

GENERIC_ENTITY = "event"
HUBSPOT_ENTITIES = {"contact": "contact", "company": "company", "deal": "deal", "ticket": "ticket"}


@dataclass(frozen=True)
class Change:
    entity: str
    record_id: str
    operation: Operation
    occurred_at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    ordering_key: str | None = None
    # `data` is a canonical entity's, from the provider's canonical.py (as the sync path writes it).
    canonical: bool = False


def epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def parse_time(value: Any) -> datetime | None:
    """ISO-8601 text, epoch seconds or epoch milliseconds (numbers past 10^11 are milliseconds)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return epoch(value / 1000 if value > 1e11 else value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.replace(".", "", 1).isdigit():
            return parse_time(float(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _compact(data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}


def _generic(event: ProviderEvent, occurred_at: datetime) -> Change:
    return Change(
        GENERIC_ENTITY,
        event.event_id,
        Operation.UPSERT,
        occurred_at,
        {"event_type": event.event_type, "payload": event.payload},
    )


# ---------------------------------------------------------------- Stripe


def normalize_stripe(event: ProviderEvent, include_raw: bool = True) -> list[Change]:
    """The event's object as its canonical entity, by the same mapping the sync path uses."""
    payload = event.payload
    occurred_at = parse_time(payload.get("created")) or epoch(event.received_at)
    obj = lookup(payload, "data.object") or {}
    object_id = obj.get("id") if isinstance(obj, dict) else None
    entity = stripe_canonical.entity_of(obj) if isinstance(object_id, str) else None
    if entity is None:
        return [_generic(event, occurred_at)]
    # A subscription's `*.deleted` only means canceled: its object says so and it is kept.
    deleted = event.event_type.endswith(".deleted") and entity != "subscription"
    operation = Operation.DELETE if deleted or obj.get("deleted") is True else Operation.UPSERT
    if operation is Operation.DELETE:
        data = tombstone(stripe_canonical.PROVIDER, str(object_id))
    else:
        data = stripe_canonical.canonical(obj, raw=include_raw)
    return [Change(entity, str(object_id), operation, occurred_at, data, canonical=True)]


# ---------------------------------------------------------------- HubSpot


def normalize_hubspot(event: ProviderEvent, include_raw: bool = True) -> list[Change]:  # noqa: PLR0911 - one answer per HubSpot action
    payload = event.payload
    occurred_at = parse_time(payload.get("occurredAt")) or epoch(event.received_at)
    object_type, _, action = event.event_type.partition(".")
    entity = HUBSPOT_ENTITIES.get(object_type)
    object_id = payload.get("objectId")
    if entity is None or object_id is None:
        return [_generic(event, occurred_at)]
    record_id = str(object_id)
    if action in ("creation", "restore"):
        return [Change(entity, record_id, Operation.UPSERT, occurred_at, {"hubspot_event": action})]
    if action == "propertyChange":
        name = str(payload.get("propertyName") or "")
        if not name:
            return [_generic(event, occurred_at)]
        data = {name: payload.get("propertyValue"), "change_source": payload.get("changeSource")}
        return [Change(entity, record_id, Operation.UPSERT, occurred_at, _compact(data), f"{record_id}#{name}")]
    if action in ("deletion", "privacyDeletion"):
        return [Change(entity, record_id, Operation.DELETE, occurred_at, {"hubspot_event": action})]
    if action == "merge":
        primary = str(payload.get("primaryObjectId") or record_id)
        merged = [str(value) for value in payload.get("mergedObjectIds") or []]
        changes = [
            Change(entity, primary, Operation.UPSERT, occurred_at, {"hubspot_event": "merge", "merged_ids": merged})
        ]
        changes += [
            Change(entity, old, Operation.DELETE, occurred_at, {"hubspot_event": "merge", "merged_into": primary})
            for old in merged
            if old != primary
        ]
        return changes
    return [_generic(event, occurred_at)]


# ---------------------------------------------------------------- SendGrid


def normalize_sendgrid(event: ProviderEvent, include_raw: bool = True) -> list[Change]:
    """An Event Webhook event as an email_event; a bounce, block, spam report or unsubscribe is
    keyed as the suppression a sync reads for it."""
    payload = event.payload
    occurred_at = parse_time(payload.get("timestamp")) or epoch(event.received_at)
    entity = sendgrid_canonical.webhook_event(event.event_type, payload, event.event_id)
    data = entity.model_dump(mode="json", exclude_none=True)
    if include_raw:
        data["raw"] = dict(payload)
    return [Change("email_event", entity.id, Operation.UPSERT, occurred_at, data, canonical=True)]


# ---------------------------------------------------------------- Mailchimp


def _mailchimp_time(payload: Mapping[str, Any], received_at: float) -> datetime:
    fired = payload.get("fired_at")
    if isinstance(fired, str):
        try:
            return datetime.strptime(fired, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        except ValueError:
            pass
    return epoch(received_at)


def _membership(data: Mapping[str, Any], email: str, status: str | None, include_raw: bool) -> dict[str, Any]:
    merges: Mapping[str, Any] = data["merges"] if isinstance(data.get("merges"), dict) else {}
    entity = mailchimp_canonical.membership(
        str(data.get("list_id") or ""), email, status, merges.get("FNAME"), merges.get("LNAME")
    )
    canonical = entity.model_dump(mode="json", exclude_none=True)
    if include_raw:
        canonical["raw"] = dict(data)
    return canonical


def normalize_mailchimp(event: ProviderEvent, include_raw: bool = True) -> list[Change]:
    """Audience events as list memberships keyed as the sync's members; campaign events as campaigns."""
    payload = event.payload
    occurred_at = _mailchimp_time(payload, event.received_at)
    data: dict[str, Any] = payload["data"] if isinstance(payload.get("data"), dict) else {}
    list_id = str(data.get("list_id") or "")
    if event.event_type == "campaign" and data.get("id"):
        campaign_id = str(data["id"])
        campaign = {
            "id": campaign_id,
            "source_ids": {mailchimp_canonical.PROVIDER: campaign_id},
            **_compact({"subject": data.get("subject"), "status": data.get("status"), "list_id": list_id or None}),
        }
        if include_raw:
            campaign["raw"] = dict(data)
        return [Change("campaign", campaign_id, Operation.UPSERT, occurred_at, campaign, canonical=True)]
    if event.event_type == "upemail" and list_id:
        old, new = str(data.get("old_email") or ""), str(data.get("new_email") or "")
        if old and new:
            gone = mailchimp_canonical.membership_id(list_id, mailchimp_canonical.subscriber_hash(old))
            moved = _membership(data, new, None, include_raw)
            return [
                Change(
                    "list_membership", gone, Operation.DELETE, occurred_at, tombstone("mailchimp", gone), canonical=True
                ),
                Change("list_membership", moved["id"], Operation.UPSERT, occurred_at, moved, canonical=True),
            ]
    merges: Mapping[str, Any] = data["merges"] if isinstance(data.get("merges"), dict) else {}
    email = str(data.get("email") or merges.get("EMAIL") or "")
    if not email or not list_id:
        return [_generic(event, occurred_at)]
    membership = _membership(data, email, mailchimp_canonical.STATUS_AFTER.get(event.event_type), include_raw)
    return [Change("list_membership", membership["id"], Operation.UPSERT, occurred_at, membership, canonical=True)]


# ---------------------------------------------------------------- Salesforce


def normalize_salesforce(event: ProviderEvent, include_raw: bool = True) -> list[Change]:
    """An outbound message's record: its canonical entity, by the mapping the sync path uses."""
    payload = event.payload
    fields: dict[str, Any] = dict(payload.get("fields") or {})
    occurred_at = parse_time(fields.get("LastModifiedDate") or fields.get("SystemModstamp")) or epoch(event.received_at)
    record_id = fields.get("Id")
    object_type = str(payload.get("object_type") or "")
    if not record_id:
        return [_generic(event, occurred_at)]
    entity = salesforce_canonical.entity_of(object_type)
    if entity is not None:
        data = salesforce_canonical.canonical(object_type, fields, raw=include_raw)
        return [Change(entity, str(record_id), Operation.UPSERT, occurred_at, data, canonical=True)]
    # An object without a canonical entity keeps its fields, as a sync writes them.
    entity = object_type.lower() or GENERIC_ENTITY
    return [Change(entity, str(record_id), Operation.UPSERT, occurred_at, {"object_type": object_type, **fields})]


# ---------------------------------------------------------------- custom


def normalize_custom(event: ProviderEvent, options: Mapping[str, Any]) -> list[Change]:
    """Any JSON event: the endpoint names the entity and where the record id and time are."""
    payload = event.payload
    time_field = options.get("event_time_field")
    occurred_at = (parse_time(lookup(payload, str(time_field))) if time_field else None) or epoch(event.received_at)
    id_field = options.get("record_id_field")
    record_id = lookup(payload, str(id_field)) if id_field else event.event_id
    entity = str(options.get("entity") or GENERIC_ENTITY)
    data = dict(payload) if isinstance(payload, dict) else {"payload": payload}
    record = None if record_id is None or isinstance(record_id, dict | list) else str(record_id)
    operation = Operation.UPSERT
    delete_types = options.get("delete_event_types") or ()
    if event.event_type in delete_types:
        operation = Operation.DELETE
    return [Change(entity, record or "", operation, occurred_at, data)]


NORMALIZERS: dict[str, Callable[[ProviderEvent, bool], list[Change]]] = {
    "stripe": normalize_stripe,
    "hubspot": normalize_hubspot,
    "sendgrid": normalize_sendgrid,
    "mailchimp": normalize_mailchimp,
    "salesforce": normalize_salesforce,
}


def normalize(event: ProviderEvent, options: Mapping[str, Any]) -> list[Change]:
    if event.provider == "custom":
        return normalize_custom(event, options)
    include_raw = options.get("include_raw", True) is not False
    return NORMALIZERS[event.provider](event, include_raw)
