"""Mailchimp objects → canonical entities, for the sync connector and webhooks alike.

- members → list_membership, record id `<list id>/<member id>`; the member id is Mailchimp's
  subscriber hash (the MD5 of the lower-cased address), so a webhook, which names the address,
  finds the same record. It holds what both paths know of a member: address, status and name;
  the member's other fields are in `raw`.
- email_activity (opens, clicks, bounces, unsubscribes of sent campaigns) → email_event.
- campaigns → campaign. Audiences and reports have no canonical entity and keep their fields.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from churnguard.canonical.entities import Campaign, CanonicalEntity, EmailEvent, ListMembership
from churnguard.canonical.mapping import ProviderMapping
from churnguard.canonical.values import iso_time, text

PROVIDER = "mailchimp"
Row = Mapping[str, Any]
# Webhook event types → the member status they leave (a profile update leaves it unknown).
STATUS_AFTER = {"subscribe": "subscribed", "unsubscribe": "unsubscribed", "cleaned": "cleaned"}


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: the MD5 of the lower-cased address (an identifier, not security)."""
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def membership_id(list_id: str, member_id: str) -> str:
    return f"{list_id}/{member_id}"


def entity_of(object_type: str) -> str | None:
    mapped = _MAPPERS.get(object_type)
    return mapped[0] if mapped else None


def canonical(object_type: str, row: Row, *, raw: bool = True) -> dict[str, Any]:
    mapped = _MAPPERS.get(object_type)
    if mapped is None:
        raise ValueError(f"Mailchimp {object_type} have no canonical entity")
    data = mapped[1](row).model_dump(mode="json", exclude_none=True)
    if raw:
        data["raw"] = dict(row)
    return data


def membership(list_id: str, email: str, status: str | None, first: Any, last: Any) -> ListMembership:
    """A membership from what a webhook says of it (the sync's members say the same)."""
    member_id = subscriber_hash(email)
    record_id = membership_id(list_id, member_id)
    return ListMembership(
        id=record_id,
        source_ids={PROVIDER: record_id},
        list_id=list_id,
        member_id=member_id,
        email=email,
        status=status,
        first_name=text(first),
        last_name=text(last),
    )


def _member(row: Row) -> CanonicalEntity:
    merges = _mapping(row.get("merge_fields"))
    email = str(row.get("email_address") or "")
    list_id, member_id = str(row["list_id"]), str(row.get("id") or subscriber_hash(email))
    record_id = membership_id(list_id, member_id)
    return ListMembership(
        id=record_id,
        source_ids={PROVIDER: record_id},
        list_id=list_id,
        member_id=member_id,
        email=email or None,
        status=text(row.get("status")),
        first_name=text(merges.get("FNAME")),
        last_name=text(merges.get("LNAME")),
    )


def _activity(row: Row) -> CanonicalEntity:
    record_id = str(row["id"])
    return EmailEvent(
        id=record_id,
        source_ids={PROVIDER: record_id},
        type=str(row.get("action") or "unknown"),
        email=text(row.get("email")),
        occurred_at=iso_time(row.get("occurred_at")),
        campaign_id=text(row.get("campaign_id")),
        list_id=text(row.get("list_id")),
        url=text(row.get("url")),
        reason=text(row.get("reason")),
    )


def _campaign(row: Row) -> CanonicalEntity:
    settings, recipients = _mapping(row.get("settings")), _mapping(row.get("recipients"))
    record_id = str(row["id"])
    return Campaign(
        id=record_id,
        source_ids={PROVIDER: record_id},
        name=text(settings.get("title")),
        subject=text(settings.get("subject_line")),
        status=text(row.get("status")),
        list_id=text(recipients.get("list_id")),
        sent_at=iso_time(row.get("send_time")),
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


_MAPPERS: dict[str, tuple[str, Callable[[Row], CanonicalEntity]]] = {
    "members": ("list_membership", _member),
    "email_activity": ("email_event", _activity),
    "campaigns": ("campaign", _campaign),
}


MAPPING = ProviderMapping(entity_of, canonical)
