"""Provider events → canonical changes (entity, record id, operation, event time, data).

Each normaliser knows one provider's event shapes and produces the canonical fields the
pipeline's schemas name (customer, subscription, invoice, contact, company, deal, case,
email_event, campaign_activity). Events a normaliser does not model become an `event` record
carrying the provider's object, so nothing accepted is silently dropped. Every change carries
its event time, which decides the order in which changes to one record apply; `ordering_key`
narrows that to a field where a provider sends partial updates (HubSpot property changes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from churnguard.pipeline.records import Operation
from churnguard.webhooks.events import lookup

GENERIC_ENTITY = "event"
HUBSPOT_ENTITIES = {"contact": "contact", "company": "company", "deal": "deal", "ticket": "case"}
SALESFORCE_ENTITIES = {
    "Contact": "contact",
    "Lead": "contact",
    "Account": "company",
    "Opportunity": "deal",
    "Case": "case",
}
# Stripe amounts are in the currency's minor unit; these currencies have none.
ZERO_DECIMAL_CURRENCIES = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()  # noqa: SIM905 - a readable list
)
# Billing periods per month, by Stripe's recurring interval.
PERIODS_PER_MONTH: dict[str, Decimal] = {
    "day": Decimal(365) / Decimal(12),
    "week": Decimal(52) / Decimal(12),
    "month": Decimal(1),
    "year": Decimal(1) / Decimal(12),
}
INACTIVE_SUBSCRIPTION = frozenset({"canceled", "incomplete_expired", "unpaid", "paused"})


@dataclass(frozen=True)
class Change:
    entity: str
    record_id: str
    operation: Operation
    occurred_at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    ordering_key: str | None = None


@dataclass(frozen=True)
class ProviderEvent:
    """One queued event, as the receiver enqueued it."""

    provider: str
    event_id: str
    event_type: str
    received_at: float
    payload: Any


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


def stripe_amount(minor: Any, currency: str | None) -> Decimal | None:
    if isinstance(minor, bool) or not isinstance(minor, int | float | str):
        return None
    try:
        amount = Decimal(str(minor))
    except InvalidOperation:
        return None
    return amount if (currency or "").lower() in ZERO_DECIMAL_CURRENCIES else amount / 100


def subscription_mrr(subscription: Mapping[str, Any]) -> Decimal:
    """Monthly recurring revenue of a subscription in major units; 0 once it no longer bills."""
    if subscription.get("status") in INACTIVE_SUBSCRIPTION:
        return Decimal(0)
    total = Decimal(0)
    for item in lookup(subscription, "items.data") or []:
        price = item.get("price") or item.get("plan") or {}
        recurring = price.get("recurring") or price
        interval = recurring.get("interval")
        amount = stripe_amount(price.get("unit_amount", price.get("amount")), price.get("currency"))
        if amount is None or interval not in PERIODS_PER_MONTH:
            continue
        count = Decimal(recurring.get("interval_count") or 1)
        quantity = Decimal(item.get("quantity") or 1)
        total += amount * quantity * PERIODS_PER_MONTH[interval] / count
    return total.quantize(Decimal("0.01"))


def _stripe_time(value: Any) -> str | None:
    parsed = parse_time(value) if value else None
    return parsed.isoformat() if parsed else None


def normalize_stripe(event: ProviderEvent) -> list[Change]:
    payload = event.payload
    occurred_at = parse_time(payload.get("created")) or epoch(event.received_at)
    obj = lookup(payload, "data.object") or {}
    kind = obj.get("object")
    object_id = obj.get("id")
    if not isinstance(object_id, str):
        return [_generic(event, occurred_at)]
    currency = obj.get("currency")
    if kind == "customer":
        operation = Operation.DELETE if event.event_type == "customer.deleted" else Operation.UPSERT
        data = {
            "email": obj.get("email"),
            "name": obj.get("name"),
            "currency": currency,
            "delinquent": obj.get("delinquent"),
            "created_at": _stripe_time(obj.get("created")),
            "metadata": obj.get("metadata") or None,
        }
        return [Change("customer", object_id, operation, occurred_at, _compact(data))]
    if kind == "subscription":
        first_item = (lookup(obj, "items.data") or [{}])[0]
        price = first_item.get("price") or first_item.get("plan") or {}
        status = "canceled" if event.event_type == "customer.subscription.deleted" else obj.get("status")
        data = {
            "customer_id": obj.get("customer"),
            "status": status,
            "plan": price.get("nickname") or price.get("id"),
            "amount": stripe_amount(price.get("unit_amount", price.get("amount")), price.get("currency")),
            "currency": currency or price.get("currency"),
            "mrr": subscription_mrr({**obj, "status": status}),
            "cancel_at_period_end": obj.get("cancel_at_period_end"),
            "canceled_at": _stripe_time(obj.get("canceled_at")),
            "current_period_end": _stripe_time(obj.get("current_period_end") or first_item.get("current_period_end")),
            "ended_at": _stripe_time(obj.get("ended_at")),
        }
        return [Change("subscription", object_id, Operation.UPSERT, occurred_at, _compact(data))]
    if kind == "invoice":
        data = {
            "customer_id": obj.get("customer"),
            "subscription_id": obj.get("subscription"),
            "status": obj.get("status"),
            "amount_due": stripe_amount(obj.get("amount_due"), currency),
            "amount_paid": stripe_amount(obj.get("amount_paid"), currency),
            "currency": currency,
            "due_date": _stripe_time(obj.get("due_date")),
            "paid_at": _stripe_time(lookup(obj, "status_transitions.paid_at")),
        }
        return [Change("invoice", object_id, Operation.UPSERT, occurred_at, _compact(data))]
    if kind == "charge":
        data = {
            "customer_id": obj.get("customer"),
            "invoice_id": obj.get("invoice"),
            "status": obj.get("status"),
            "amount": stripe_amount(obj.get("amount"), currency),
            "amount_refunded": stripe_amount(obj.get("amount_refunded"), currency),
            "currency": currency,
            "paid": obj.get("paid"),
            "refunded": obj.get("refunded"),
            "failure_code": obj.get("failure_code"),
        }
        return [Change("charge", object_id, Operation.UPSERT, occurred_at, _compact(data))]
    return [_generic(event, occurred_at)]


# ---------------------------------------------------------------- HubSpot


def normalize_hubspot(event: ProviderEvent) -> list[Change]:  # noqa: PLR0911 - one answer per HubSpot action
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

SENDGRID_FIELDS = ("email", "sg_message_id", "reason", "status", "type", "url", "category", "asm_group_id")


def normalize_sendgrid(event: ProviderEvent) -> list[Change]:
    payload = event.payload
    occurred_at = parse_time(payload.get("timestamp")) or epoch(event.received_at)
    data = {"event": event.event_type, "occurred_at": occurred_at.isoformat()}
    data.update(_compact({name: payload.get(name) for name in SENDGRID_FIELDS}))
    return [Change("email_event", event.event_id, Operation.UPSERT, occurred_at, data)]


# ---------------------------------------------------------------- Mailchimp

MAILCHIMP_STATUS = {"subscribe": "subscribed", "unsubscribe": "unsubscribed", "cleaned": "cleaned"}


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: the MD5 of the lower-cased address (an identifier, not security)."""
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def _mailchimp_time(payload: Mapping[str, Any], received_at: float) -> datetime:
    fired = payload.get("fired_at")
    if isinstance(fired, str):
        try:
            return datetime.strptime(fired, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        except ValueError:
            pass
    return epoch(received_at)


def normalize_mailchimp(event: ProviderEvent) -> list[Change]:
    payload = event.payload
    occurred_at = _mailchimp_time(payload, event.received_at)
    data: dict[str, Any] = payload["data"] if isinstance(payload.get("data"), dict) else {}
    merges: dict[str, Any] = data["merges"] if isinstance(data.get("merges"), dict) else {}
    if event.event_type == "campaign":
        return [
            Change(
                "campaign_activity",
                str(data.get("id") or event.event_id),
                Operation.UPSERT,
                occurred_at,
                _compact({"campaign_id": data.get("id"), "action": data.get("status"), "subject": data.get("subject")}),
            )
        ]
    if event.event_type == "upemail":
        old, new = str(data.get("old_email") or ""), str(data.get("new_email") or "")
        if not old or not new:
            return [_generic(event, occurred_at)]
        common = {"list_id": data.get("list_id")}
        return [
            Change("contact", subscriber_hash(old), Operation.DELETE, occurred_at, _compact({**common, "email": old})),
            Change("contact", subscriber_hash(new), Operation.UPSERT, occurred_at, _compact({**common, "email": new})),
        ]
    email = str(data.get("email") or merges.get("EMAIL") or "")
    if not email:
        return [_generic(event, occurred_at)]
    first, last = merges.get("FNAME"), merges.get("LNAME")
    name = " ".join(part for part in (first, last) if part) or None
    fields = {
        "email": email,
        "name": name,
        "status": MAILCHIMP_STATUS.get(event.event_type),
        "list_id": data.get("list_id"),
        "reason": data.get("reason"),
        "campaign_id": data.get("campaign_id"),
    }
    return [Change("contact", subscriber_hash(email), Operation.UPSERT, occurred_at, _compact(fields))]


# ---------------------------------------------------------------- Salesforce


def normalize_salesforce(event: ProviderEvent) -> list[Change]:
    payload = event.payload
    fields: dict[str, Any] = dict(payload.get("fields") or {})
    occurred_at = parse_time(fields.get("LastModifiedDate") or fields.get("SystemModstamp")) or epoch(event.received_at)
    record_id = fields.get("Id")
    object_type = str(payload.get("object_type") or "")
    if not record_id:
        return [_generic(event, occurred_at)]
    entity = SALESFORCE_ENTITIES.get(object_type, object_type.lower() or GENERIC_ENTITY)
    data = {"object_type": object_type, **fields}
    if "Email" in fields:
        data["email"] = fields["Email"]
    if "Name" in fields or "FirstName" in fields:
        data["name"] = fields.get("Name") or " ".join(p for p in (fields.get("FirstName"), fields.get("LastName")) if p)
    return [Change(entity, str(record_id), Operation.UPSERT, occurred_at, data)]


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


NORMALIZERS: dict[str, Callable[[ProviderEvent], list[Change]]] = {
    "stripe": normalize_stripe,
    "hubspot": normalize_hubspot,
    "sendgrid": normalize_sendgrid,
    "mailchimp": normalize_mailchimp,
    "salesforce": normalize_salesforce,
}


def normalize(event: ProviderEvent, options: Mapping[str, Any]) -> list[Change]:
    if event.provider == "custom":
        return normalize_custom(event, options)
    return NORMALIZERS[event.provider](event)
