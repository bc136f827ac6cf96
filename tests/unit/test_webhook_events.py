"""Parsing deliveries (including hostile ones) and normalising provider events into changes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from churnguard.inbound.parsing import ParseError, body_digest
from churnguard.inbound.queued import ProviderEvent
from churnguard.pipeline.records import Operation
from churnguard.providers import registry
from churnguard.providers.hubspot import webhook as hubspot_webhook
from churnguard.providers.mailchimp import webhook as mailchimp_webhook
from churnguard.providers.mailchimp.canonical import subscriber_hash
from churnguard.providers.salesforce import webhook as salesforce_webhook
from churnguard.providers.sendgrid import webhook as sendgrid_webhook
from churnguard.providers.stripe import webhook as stripe_webhook
from tests.support.webhooks import XML_BOMB, mailchimp_form, salesforce_message, stripe_event

EXTERNAL_ENTITY = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><x>&xxe;</x>"""


def normalize(event: ProviderEvent, endpoint: dict[str, Any]) -> list[Any]:
    """The event's changes, through the registry as the processor finds them."""
    return registry.event_changes(event.provider)(event, endpoint)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 5000 + b"]" * 5000, "nests deeper"),
        (b'{"id": "evt_1", "a": ' + b"[" * 70 + b"1" + b"]" * 70 + b"}", "nests deeper"),
        (b'{"id": "evt_1", "type": "x"', "not valid JSON"),
        (b'{"id": "evt_\xff"}', "not UTF-8"),
        (b'{"type": "customer.created"}', "event id is missing"),
        (b"[]", "one event object"),
        (b'{"id": "evt_1", "type": "x", "data": "\\ud800"}', "unpaired surrogate"),
        (b'{"id": "evt_1", "type": "x", "data": {"k\\udfff": 1}}', "unpaired surrogate"),
        (b'{"id": "evt_1", "type": "x", "amount": NaN}', "NaN, which is not a JSON value"),
        (b'{"id": "evt_1", "type": "x", "amount": -Infinity}', "Infinity, which is not a JSON value"),
    ],
)
def test_hostile_or_malformed_json_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        stripe_webhook.parse_body(body)


def test_stripe_hubspot_sendgrid_ids_and_types() -> None:
    (stripe,) = stripe_webhook.parse_body(stripe_event("evt_9", "invoice.paid", {"id": "in_1", "object": "invoice"}))
    assert (stripe.event_id, stripe.event_type) == ("evt_9", "invoice.paid")
    hubspot = hubspot_webhook.parse_body(
        json.dumps([{"eventId": 1, "subscriptionType": "contact.creation"}, {"eventId": 2}]).encode()
    )
    assert [(e.event_id, e.event_type) for e in hubspot] == [("1", "contact.creation"), ("2", "unknown")]
    sendgrid = sendgrid_webhook.parse_body(json.dumps([{"sg_event_id": "a", "event": "open"}]).encode())
    assert [(e.event_id, e.event_type) for e in sendgrid] == [("a", "open")]
    with pytest.raises(ParseError, match="sg_event_id"):
        sendgrid_webhook.parse_body(json.dumps([{"event": "open"}]).encode())


def test_mailchimp_form_bodies_nest_and_are_identified_by_digest() -> None:
    body = mailchimp_form("subscribe", "ann@example.com", **{"data[merges][FNAME]": "Ann"})
    (event,) = mailchimp_webhook.parse_body(body)
    assert event.event_type == "subscribe"
    assert event.payload["data"]["merges"]["FNAME"] == "Ann"
    assert event.event_id == body_digest(body)
    with pytest.raises(ParseError):
        mailchimp_webhook.parse_body(b"data[a]=1&data[a][b]=2&type=x")
    with pytest.raises(ParseError):
        mailchimp_webhook.parse_body(b"\xff\xfe")


def test_salesforce_outbound_messages() -> None:
    body = salesforce_message([("04l1", "Contact", {"Id": "003A", "Email": "a@example.com"})])
    organization, parsed = salesforce_webhook.parse_body(body)
    assert organization == "00D000000000062EAA"
    assert parsed[0].event_id == "04l1"
    assert parsed[0].payload["fields"] == {"Id": "003A", "Email": "a@example.com"}


@pytest.mark.parametrize("body", [XML_BOMB, EXTERNAL_ENTITY, b"<unclosed", b"<a/>"])
def test_salesforce_entity_expansion_and_junk_are_refused(body: bytes) -> None:
    with pytest.raises(ParseError):
        salesforce_webhook.parse_body(body)


# ---------------------------------------------------------------- normalisers


def provider_event(provider: str, event_type: str, payload: object, event_id: str = "e1") -> ProviderEvent:
    return ProviderEvent(provider, event_id, event_type, 1_700_000_000.0, payload)


def subscription(status: str, items: list[tuple[int, str, int, int]]) -> dict[str, object]:
    return {
        "id": "sub_1",
        "object": "subscription",
        "customer": "cus_1",
        "status": status,
        "currency": "usd",
        "items": {
            "data": [
                {
                    "quantity": quantity,
                    "price": {
                        "id": "price_1",
                        "unit_amount": amount,
                        "currency": "usd",
                        "recurring": {"interval": interval, "interval_count": count},
                    },
                }
                for amount, interval, count, quantity in items
            ]
        },
    }


def test_stripe_events_become_the_canonical_entities_the_sync_writes() -> None:
    canceled = subscription("canceled", [(1000, "month", 1, 1)])
    created = json.loads(stripe_event("evt_1", "customer.subscription.deleted", canceled, 1_700_000_100))
    (change,) = normalize(provider_event("stripe", created["type"], created), {})
    assert (change.entity, change.record_id, change.operation) == ("subscription", "sub_1", Operation.UPSERT)
    assert change.canonical and change.data["status"] == "canceled"
    assert (change.data["mrr_minor"], change.data["run_rate_minor"]) == (0, 1000), "a canceled one keeps its rate"
    assert change.data["raw"] == canceled and change.occurred_at.timestamp() == 1_700_000_100
    deleted = json.loads(
        stripe_event("evt_2", "customer.deleted", {"id": "cus_1", "object": "customer", "email": "a@b.c"})
    )
    (change,) = normalize(provider_event("stripe", "customer.deleted", deleted), {})
    assert (change.entity, change.operation) == ("customer", Operation.DELETE)
    assert change.data == {"id": "cus_1", "source_ids": {"stripe": "cus_1"}}, "a delete says only who it was"
    invoice = json.loads(
        stripe_event(
            "evt_3", "invoice.paid", {"id": "in_1", "object": "invoice", "amount_paid": 1999, "currency": "jpy"}
        )
    )
    (change,) = normalize(provider_event("stripe", "invoice.paid", invoice), {"include_raw": False})
    assert change.data == {
        "id": "in_1",
        "source_ids": {"stripe": "in_1"},
        "amount_paid_minor": 1999,
        "currency": "JPY",
    }
    charge = json.loads(stripe_event("evt_5", "charge.succeeded", {"id": "ch_1", "object": "charge", "amount": 5}))
    assert normalize(provider_event("stripe", "charge.succeeded", charge), {})[0].entity == "payment"
    other = json.loads(stripe_event("evt_4", "payout.paid", {"id": "po_1", "object": "payout"}))
    assert normalize(provider_event("stripe", "payout.paid", other, "evt_4"), {})[0].entity == "event"


def test_hubspot_property_changes_are_ordered_per_property_and_merges_delete_the_merged() -> None:
    change = {
        "eventId": 1,
        "subscriptionType": "contact.propertyChange",
        "objectId": 7,
        "propertyName": "email",
        "propertyValue": "x@y.z",
        "occurredAt": 1_700_000_000_123,
    }
    (result,) = normalize(provider_event("hubspot", "contact.propertyChange", change), {})
    assert result.ordering_key == "7#email" and result.data["email"] == "x@y.z"
    merge = {
        "eventId": 2,
        "subscriptionType": "contact.merge",
        "objectId": 7,
        "primaryObjectId": 7,
        "mergedObjectIds": [7, 8],
    }
    results = normalize(provider_event("hubspot", "contact.merge", merge), {})
    assert [(r.record_id, r.operation) for r in results] == [("7", Operation.UPSERT), ("8", Operation.DELETE)]
    deletion = {"eventId": 3, "subscriptionType": "company.deletion", "objectId": 9}
    assert normalize(provider_event("hubspot", "company.deletion", deletion), {})[0].operation is Operation.DELETE


def test_sendgrid_mailchimp_salesforce_and_custom() -> None:
    (bounce,) = normalize(
        provider_event(
            "sendgrid",
            "bounce",
            {"sg_event_id": "s1", "email": "A@b.c", "timestamp": 1_700_000_000, "reason": "550", "status": "5.1.1"},
            "s1",
        ),
        {},
    )
    # Keyed as the suppression a sync reads for it: type, address, time.
    assert (bounce.entity, bounce.record_id, bounce.data["type"]) == (
        "email_event",
        "bounce:a@b.c:1700000000",
        "bounce",
    )
    assert (bounce.data["reason"], bounce.data["status"], bounce.data["raw"]["sg_event_id"]) == ("550", "5.1.1", "s1")
    (opened,) = normalize(provider_event("sendgrid", "open", {"email": "a@b.c", "timestamp": 1_700_000_001}, "s2"), {})
    assert (opened.record_id, opened.data["type"]) == ("s2", "open")
    (event,) = mailchimp_webhook.parse_body(mailchimp_form("unsubscribe", "Ann@Example.com"))
    (membership,) = normalize(provider_event("mailchimp", "unsubscribe", event.payload), {})
    assert membership.entity == "list_membership" and membership.data["status"] == "unsubscribed"
    assert membership.record_id == f"a6b5da1054/{subscriber_hash('ann@example.com')}"
    (event,) = mailchimp_webhook.parse_body(
        mailchimp_form("upemail", "", **{"data[old_email]": "old@example.com", "data[new_email]": "new@example.com"})
    )
    moved = normalize(provider_event("mailchimp", "upemail", event.payload), {})
    assert [(c.operation, c.record_id) for c in moved] == [
        (Operation.DELETE, f"a6b5da1054/{subscriber_hash('old@example.com')}"),
        (Operation.UPSERT, f"a6b5da1054/{subscriber_hash('new@example.com')}"),
    ]
    _, (sf,) = salesforce_webhook.parse_body(
        salesforce_message(
            [("04l1", "Account", {"Id": "001A", "Name": "Acme", "LastModifiedDate": "2026-01-01T00:00:00.000Z"})]
        )
    )
    (company,) = normalize(provider_event("salesforce", "Account", sf.payload), {})
    assert (company.entity, company.record_id, company.data["name"]) == ("company", "001A", "Acme")
    options = {
        "entity": "customer",
        "record_id_field": "customer.id",
        "event_time_field": "at",
        "delete_event_types": ["customer.gone"],
    }
    (custom,) = normalize(
        provider_event("custom", "customer.gone", {"customer": {"id": 5}, "at": "2026-01-01T00:00:00Z"}), options
    )
    assert (custom.entity, custom.record_id, custom.operation) == ("customer", "5", Operation.DELETE)
    assert custom.occurred_at.isoformat() == "2026-01-01T00:00:00+00:00"


def test_paired_surrogate_escapes_and_big_integers_are_kept_exactly() -> None:
    body = b'{"id": "evt_1", "type": "x", "name": "\\ud83d\\ude00", "big": 123456789012345678901234567890}'
    (event,) = stripe_webhook.parse_body(body)
    assert event.payload["name"] == "\U0001f600"
    assert event.payload["big"] == 123456789012345678901234567890
