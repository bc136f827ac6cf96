"""SendGrid suppressions and webhook events → canonical email events.

A suppression (bounce, block, spam report, invalid email, global unsubscribe) is the lasting
trace of an event the Event Webhook also reports. Both become one email_event with the record
id `<type>:<address>:<unix time>`, so the sync's suppression and the webhook's event for the same
bounce are one record; they carry what both know (address, time, reason, status), the rest is in
`raw`. Other webhook events (delivered, open, click, ...) are keyed by SendGrid's `sg_event_id`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from churnguard.canonical.entities import EmailEvent
from churnguard.canonical.mapping import ProviderMapping
from churnguard.canonical.values import integer, text

PROVIDER = "sendgrid"
Row = Mapping[str, Any]
# Suppression list → event type.
SUPPRESSIONS = {
    "bounces": "bounce",
    "blocks": "block",
    "spam_reports": "spam_report",
    "invalid_emails": "invalid_email",
    "unsubscribes": "unsubscribe",
}


def entity_of(object_type: str) -> str | None:
    return "email_event" if object_type in SUPPRESSIONS else None


def suppression_event(kind: str, email: str, at: int, *, reason: Any = None, status: Any = None) -> EmailEvent:
    record_id = f"{kind}:{email.strip().lower()}:{at}"
    return EmailEvent(
        id=record_id,
        source_ids={PROVIDER: record_id},
        type=kind,
        email=email,
        occurred_at=datetime.fromtimestamp(at, UTC),
        reason=text(reason),
        status=text(status),
    )


def canonical(object_type: str, row: Row, *, raw: bool = True) -> dict[str, Any]:
    """A suppression of list `object_type` as its email_event."""
    kind = SUPPRESSIONS.get(object_type)
    created = integer(row.get("created"))
    if kind is None or created is None or not isinstance(row.get("email"), str):
        raise ValueError(f"a SendGrid {object_type} entry needs an email and a created time")
    event = suppression_event(kind, row["email"], created, reason=row.get("reason"), status=row.get("status"))
    data = event.model_dump(mode="json", exclude_none=True)
    if raw:
        data["raw"] = dict(row)
    return data


def webhook_event(event_type: str, payload: Row, event_id: str) -> EmailEvent:
    """An Event Webhook event: a suppression's event keyed as the suppression, others by id."""
    at = integer(payload.get("timestamp"))
    email = payload.get("email") if isinstance(payload.get("email"), str) else None
    kind = {"spamreport": "spam_report", "unsubscribe": "unsubscribe"}.get(event_type)
    if event_type == "bounce":
        kind = "block" if payload.get("type") == "blocked" else "bounce"
    if kind is not None and at is not None and email:
        return suppression_event(kind, email, at, reason=payload.get("reason"), status=payload.get("status"))
    return EmailEvent(
        id=event_id,
        source_ids={PROVIDER: event_id},
        type=event_type,
        email=email,
        occurred_at=datetime.fromtimestamp(at, UTC) if at is not None else None,
        message_id=text(payload.get("sg_message_id")),
        url=text(payload.get("url")),
        reason=text(payload.get("reason")),
        status=text(payload.get("status")),
    )


MAPPING = ProviderMapping(entity_of, canonical)
