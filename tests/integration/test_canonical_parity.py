"""The same provider object, by a sync and by a webhook, lands as the same canonical record.

Each case syncs objects through the provider's stand-in (localstripe, the Salesforce fake) into
the moto lake, then delivers the same objects as that provider's webhook would (a Stripe event
around the object the API returns; a Salesforce outbound message, every value as text), parsed
by the receiver's own parser and written by the event processor for the same integration. Both
records must agree on entity, record id, dedupe key and canonical data (all but `raw`, the
provider's object in the form each path got it).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest

from churnguard.inbound.parsing import InboundEvent
from churnguard.inbound.queued import ProviderEvent, QueuedEvent
from churnguard.models import DataSyncMode
from churnguard.providers.hubspot import webhook as hubspot_webhook
from churnguard.providers.mailchimp import webhook as mailchimp_webhook
from churnguard.providers.salesforce import webhook as salesforce_webhook
from churnguard.providers.sendgrid import webhook as sendgrid_webhook
from churnguard.providers.stripe import webhook as stripe_webhook
from churnguard.store.webhooks import WebhookStore
from churnguard.webhooks.processor import EventProcessor
from tests.integration.test_connector_hubspot import hubspot as hubspot_fake  # noqa: F401 - a fixture
from tests.integration.test_connector_hubspot import register as register_hubspot
from tests.integration.test_connector_mailchimp import LIST_A
from tests.integration.test_connector_mailchimp import fake as mailchimp_fake  # noqa: F401 - a fixture
from tests.integration.test_connector_mailchimp import register as register_mailchimp
from tests.integration.test_connector_salesforce import fake as salesforce_fake  # noqa: F401 - a fixture
from tests.integration.test_connector_salesforce import register as register_salesforce
from tests.integration.test_connector_sendgrid import fake as sendgrid_fake  # noqa: F401 - a fixture
from tests.integration.test_connector_sendgrid import register as register_sendgrid
from tests.integration.test_connector_stripe import register as register_stripe
from tests.integration.test_connector_stripe import subscriber
from tests.support.fake_hubspot import FakeHubSpot
from tests.support.fake_mailchimp import FakeMailchimp
from tests.support.fake_salesforce import FakeSalesforce
from tests.support.fake_sendgrid import FakeSendGrid
from tests.support.fake_stripe import API_KEY
from tests.support.sync import ORG, sync
from tests.support.webhooks import mailchimp_form, salesforce_message, stripe_event


@pytest.fixture
def processor(harness: Any, aws: dict[str, Any]) -> EventProcessor:
    return EventProcessor(WebhookStore(harness.dynamodb, aws["table"]), [harness.lake], max_receive_count=3)


@pytest.fixture
def rereading(harness: Any, aws: dict[str, Any]) -> EventProcessor:
    """The processor as deployed: it re-reads incomplete objects through the integration's source."""
    return EventProcessor(
        WebhookStore(harness.dynamodb, aws["table"]),
        [harness.lake],
        max_receive_count=3,
        current_entity=harness.engine().current_entity,
    )


def deliver(processor: EventProcessor, integration_id: str, provider: str, event: InboundEvent) -> None:
    queued = QueuedEvent(
        organization_id=ORG,
        integration_id=integration_id,
        endpoint_id="whe_parity",
        event=ProviderEvent(provider, event.event_id, event.event_type, 1_800_000_000.0, event.payload),
    )
    processor.process(queued)


def by_path(harness: Any) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    synced, hooked = {}, {}
    for record in harness.lake_records():
        (hooked if record["batch_id"].startswith("whk_") else synced)[record["record_id"]] = record
    return synced, hooked


def assert_same_records(synced: dict[str, Any], hooked: dict[str, Any], ids: list[str]) -> None:
    for record_id in ids:
        a, b = synced[record_id], hooked[record_id]
        assert (a["entity"], a["record_id"], a["schema_version"]) == (b["entity"], b["record_id"], b["schema_version"])
        canonical_a = {k: v for k, v in a["data"].items() if k != "raw"}
        canonical_b = {k: v for k, v in b["data"].items() if k != "raw"}
        assert canonical_a == canonical_b, f"{a['entity']} {record_id}"
        assert a["dedupe_key"] == b["dedupe_key"], f"{a['entity']} {record_id}"
        assert a["data"]["raw"] and b["data"]["raw"], "both keep the provider's object"


# ---------------------------------------------------------------- Stripe


def test_stripe_objects_are_the_same_records_by_sync_and_by_webhook(
    harness: Any,
    stripe_api: Any,
    client: Any,
    processor: EventProcessor,
) -> None:
    product = client.v1.products.create(params={"name": "Team"})
    plan = client.v1.plans.create(
        params={"amount": 12000, "currency": "usd", "interval": "year", "product": product.id}
    )
    customer_id, subscription_id = subscriber(client, plan.id, "lin@example.com", quantity=3)
    client.v1.coupons.create(params={"id": "QUARTER", "percent_off": 25, "duration": "forever"})
    mappings = {
        "customer": "customers",
        "subscription": "subscriptions",
        "invoice": "invoices",
        "payment": "charges",
        "product": "products",
        "coupon": "coupons",
    }
    config = register_stripe(harness, stripe_api, mappings)
    assert sync(harness.engine(), config.integration_id, mode=DataSyncMode.FULL_SYNC).records_rejected == 0

    objects = {
        "customer.updated": client.v1.customers.retrieve(customer_id),
        "customer.subscription.updated": client.v1.subscriptions.retrieve(subscription_id),
        "invoice.paid": client.v1.invoices.list().data[0],
        "charge.succeeded": client.v1.charges.list().data[0],
        "product.updated": client.v1.products.retrieve(product.id),
        "coupon.updated": client.v1.coupons.retrieve("QUARTER"),
    }
    for n, (event_type, obj) in enumerate(objects.items()):
        body = stripe_event(f"evt_parity_{n}", event_type, json.loads(str(obj)))
        (event,) = stripe_webhook.parse_body(body)
        deliver(processor, config.integration_id, "stripe", event)

    synced, hooked = by_path(harness)
    assert_same_records(synced, hooked, [obj.id for obj in objects.values()])
    subscription = hooked[subscription_id]["data"]
    assert subscription["mrr_minor"] == 3000 and subscription["quantity"] == 3, "3 × 12000 a year, in cents a month"
    assert {synced[obj.id]["entity"] for obj in objects.values()} == {
        "customer",
        "subscription",
        "invoice",
        "payment",
        "product",
        "coupon",
    }


def test_a_discounted_quantity_3_annual_subscription_has_the_same_mrr_by_sync_and_by_webhook(
    harness: Any,
    stripe_api: Any,
    client: Any,
    aws: dict[str, Any],
    rereading: EventProcessor,
) -> None:
    """A webhook's subscription names its discounts by id; the processor re-reads it through the
    integration's source, so its MRR is the sync's, to the minor unit."""
    product = client.v1.products.create(params={"name": "Scale"})
    annual = client.v1.plans.create(
        params={"amount": 12000, "currency": "usd", "interval": "year", "product": product.id}
    )
    tiered = client.v1.plans.create(
        params={
            "currency": "usd",
            "interval": "month",
            "product": product.id,
            "billing_scheme": "tiered",
            "tiers_mode": "graduated",
            "tiers": [
                {"up_to": 5, "unit_amount": 1000, "flat_amount": 0},
                {"up_to": "inf", "unit_amount": 800, "flat_amount": 0},
            ],
        }
    )
    _, discounted_id = subscriber(client, annual.id, "ada@example.com", quantity=3)
    _, tiered_id = subscriber(client, tiered.id, "bo@example.com", quantity=7)
    client.v1.coupons.create(params={"id": "TENTH", "percent_off": 10, "duration": "forever"})
    client.v1.coupons.create(params={"id": "FIVER", "amount_off": 500, "currency": "usd", "duration": "forever"})
    stripe_api.discount(discounted_id, "TENTH", "FIVER")
    config = register_stripe(harness, stripe_api, {"subscription": "subscriptions"})
    assert sync(harness.engine(), config.integration_id, mode=DataSyncMode.FULL_SYNC).records_rejected == 0

    store = WebhookStore(harness.dynamodb, aws["table"])
    as_delivered = {
        sub_id: json.loads(str(client.v1.subscriptions.retrieve(sub_id))) for sub_id in (discounted_id, tiered_id)
    }
    assert as_delivered[discounted_id]["discounts"] == [f"di_{discounted_id}_0", f"di_{discounted_id}_1"]
    for n, obj in enumerate(as_delivered.values()):
        (event,) = stripe_webhook.parse_body(stripe_event(f"evt_discounted_{n}", "customer.subscription.updated", obj))
        deliver(rereading, config.integration_id, "stripe", event)

    synced, hooked = by_path(harness)
    assert_same_records(synced, hooked, [discounted_id, tiered_id])
    discounted = hooked[discounted_id]["data"]
    # (3 × 120.00 a year − 10 % − 5.00 a year) / 12 = 26.5833… → 2658 cents a month.
    assert (discounted["mrr_minor"], discounted["mrr_complete"], discounted["currency"]) == (2658, True, "USD")
    assert [d["coupon_id"] for d in discounted["discounts"]] == ["TENTH", "FIVER"]
    assert (discounted["interval"], discounted["quantity"]) == ("year", 3)
    # A tiered price is priced by Stripe per invoice, not here: not exact on either path, and equal.
    assert hooked[tiered_id]["data"]["mrr_complete"] is False

    # Without a source to ask, the event's subscription lands as it came: its MRR not exact.
    alone = EventProcessor(store, [harness.lake], max_receive_count=3)
    body = stripe_event("evt_discounted_zz_alone", "customer.subscription.updated", as_delivered[discounted_id])
    (event,) = stripe_webhook.parse_body(body)
    deliver(alone, config.integration_id, "stripe", event)
    landed = [r for r in harness.lake_records() if r["batch_id"].startswith("whk_") and r["record_id"] == discounted_id]
    assert sorted(r["data"]["mrr_complete"] for r in landed) == [False, True]


def test_a_source_that_refuses_the_re_read_does_not_hold_the_event_back(
    harness: Any,
    stripe_api: Any,
    client: Any,
    rereading: EventProcessor,
) -> None:
    product = client.v1.products.create(params={"name": "Solo"})
    plan = client.v1.plans.create(params={"amount": 900, "currency": "usd", "interval": "month", "product": product.id})
    _, subscription_id = subscriber(client, plan.id, "cy@example.com", quantity=1)
    client.v1.coupons.create(params={"id": "HALF", "percent_off": 50, "duration": "forever"})
    stripe_api.discount(subscription_id, "HALF")
    config = register_stripe(harness, stripe_api, {"subscription": "subscriptions"})
    delivered = json.loads(str(client.v1.subscriptions.retrieve(subscription_id)))
    stripe_api.revoke(API_KEY)
    (event,) = stripe_webhook.parse_body(stripe_event("evt_revoked", "customer.subscription.updated", delivered))
    deliver(rereading, config.integration_id, "stripe", event)
    (landed,) = [r for r in harness.lake_records() if r["record_id"] == subscription_id]
    assert landed["data"]["mrr_complete"] is False, "landed as it came, to be corrected by the next sync"
    assert landed["data"]["discounts"] == [{}]


# ---------------------------------------------------------------- HubSpot


def test_hubspot_objects_are_the_same_records_by_sync_and_by_webhook(
    harness: Any,
    hubspot_fake: FakeHubSpot,  # noqa: F811
    rereading: EventProcessor,
) -> None:
    """HubSpot's events name one changed property: the processor re-reads the object through the
    integration, so a property change lands as the whole entity the sync writes; the burst of
    events for one object costs one read."""
    ids = {
        object_type: hubspot_fake.seed(2, object_type) for object_type in ("contacts", "companies", "deals", "tickets")
    }
    hubspot_fake.associate("deals", ids["deals"][0], "companies", ids["companies"][0])
    hubspot_fake.associate("tickets", ids["tickets"][0], "contacts", ids["contacts"][0])
    hubspot_fake.associate("tickets", ids["tickets"][0], "companies", ids["companies"][1])
    mappings = {"contact": "contacts", "company": "companies", "deal": "deals", "ticket": "tickets"}
    config = register_hubspot(harness, hubspot_fake, mappings)
    assert sync(harness.engine(), config.integration_id, mode=DataSyncMode.FULL_SYNC).records_rejected == 0

    entity = {"contacts": "contact", "companies": "company", "deals": "deal", "tickets": "ticket"}
    occurred = int(time.time() * 1000) - 60_000
    events = [
        {
            "eventId": 7000 + n * 10 + k,
            "subscriptionType": f"{entity[object_type]}.propertyChange",
            "objectId": object_id,
            "propertyName": name,
            "propertyValue": "changed elsewhere",
            "changeSource": "CRM_UI",
            "occurredAt": occurred,
            "portalId": 62515,
            "attemptNumber": 0,
        }
        for n, (object_type, object_id) in enumerate((t, i) for t, group in ids.items() for i in group)
        for k, name in enumerate(("hs_lead_status", "notes_last_updated"))
    ]
    before = len(hubspot_fake.requests)
    for event in hubspot_webhook.parse_body(json.dumps(events).encode()):
        deliver(rereading, config.integration_id, "hubspot", event)

    synced, hooked = by_path(harness)
    every_id = [str(i) for group in ids.values() for i in group]
    assert_same_records(synced, hooked, every_id)
    assert {hooked[i]["entity"] for i in every_id} == {"contact", "company", "deal", "ticket"}
    assert hooked[str(ids["deals"][0])]["data"]["company_id"] == str(ids["companies"][0])
    reads = [r for r in hubspot_fake.requests[before:] if r.method == "GET" and "/crm/v3/objects/" in r.path]
    assert len(reads) == len(every_id), "two events for each object, one read each"


def test_an_integration_that_cannot_re_read_is_asked_once_not_for_every_event(
    harness: Any, aws: dict[str, Any]
) -> None:
    """An endpoint whose integration has no credentials (one the endpoint created for itself):
    its HubSpot events land as partial changes, and the processor stops asking for a while."""
    engine = harness.engine()
    asked: list[str] = []

    def counted(organization_id: str, integration_id: str, entity: str, object_id: str, *, raw: bool) -> Any:
        asked.append(object_id)
        return engine.current_entity(organization_id, integration_id, entity, object_id, raw=raw)

    processor = EventProcessor(
        WebhookStore(harness.dynamodb, aws["table"]), [harness.lake], max_receive_count=3, current_entity=counted
    )
    changes = [
        {"eventId": 900 + n, "subscriptionType": "contact.propertyChange", "objectId": 40 + n}
        | {"propertyName": "email", "propertyValue": f"p{n}@example.com", "occurredAt": 1_700_000_000_000}
        for n in range(3)
    ]
    for event in hubspot_webhook.parse_body(json.dumps(changes).encode()):
        deliver(processor, "int_without_credentials", "hubspot", event)

    assert asked == ["40"]
    landed = {r["record_id"]: r["data"] for r in harness.lake_records()}
    assert {record_id: data["email"] for record_id, data in landed.items()} == {
        str(40 + n): f"p{n}@example.com" for n in range(3)
    }
    assert all("source_ids" not in data for data in landed.values()), "partial changes, not entities"


# ---------------------------------------------------------------- Salesforce


def outbound_value(value: Any) -> str | None:
    """A field as an outbound message carries it: text, datetimes with milliseconds and Z."""
    if value is None or isinstance(value, dict):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return str(value)


def test_salesforce_records_are_the_same_by_sync_and_by_outbound_message(
    harness: Any,
    salesforce_fake: FakeSalesforce,  # noqa: F811
    processor: EventProcessor,
) -> None:
    ids = {
        sobject: salesforce_fake.seed(2, sobject) for sobject in ("Account", "Contact", "Lead", "Opportunity", "Case")
    }
    mappings = {"company": "Account", "contact": "Contact", "lead": "Lead", "deal": "Opportunity", "ticket": "Case"}
    config = register_salesforce(harness, salesforce_fake, mappings)
    assert sync(harness.engine(), config.integration_id, mode=DataSyncMode.FULL_SYNC).records_rejected == 0

    notifications = []
    for sobject, record_ids in ids.items():
        for record_id in record_ids:
            record = salesforce_fake.org.records[sobject][record_id]
            fields = {name: text for name, value in record.items() if (text := outbound_value(value)) is not None}
            notifications.append((f"04l{len(notifications):015d}", sobject, fields))
    _, delivered = salesforce_webhook.parse_body(salesforce_message(notifications))
    for event in delivered:
        deliver(processor, config.integration_id, "salesforce", event)

    synced, hooked = by_path(harness)
    everything = [record_id for record_ids in ids.values() for record_id in record_ids]
    assert_same_records(synced, hooked, everything)
    assert {sobject: synced[record_ids[0]]["entity"] for sobject, record_ids in ids.items()} == {
        "Account": "company",
        "Contact": "contact",
        "Lead": "lead",
        "Opportunity": "deal",
        "Case": "ticket",
    }
    deal = synced[ids["Opportunity"][0]]["data"]
    assert isinstance(deal["amount_minor"], int) and deal["close_at"].endswith("T00:00:00Z")


# ---------------------------------------------------------------- Mailchimp


def test_mailchimp_members_are_the_same_memberships_by_sync_and_by_webhook(
    harness: Any,
    mailchimp_fake: FakeMailchimp,  # noqa: F811
    processor: EventProcessor,
) -> None:
    member_ids = mailchimp_fake.seed(4, LIST_A)
    mailchimp_fake.change(LIST_A, member_ids[1], status="unsubscribed", LNAME="Lovelace")
    config = register_mailchimp(harness, mailchimp_fake)
    assert sync(harness.engine(), config.integration_id, mode=DataSyncMode.FULL_SYNC).records_rejected == 0

    for member in (mailchimp_fake.members[LIST_A][ident] for ident in member_ids):
        kind = {"subscribed": "subscribe", "unsubscribed": "unsubscribe"}[member.status]
        merges = {f"data[merges][{name}]": str(value) for name, value in member.merge_fields.items()}
        body = mailchimp_form(kind, member.email, **{"data[list_id]": LIST_A, **merges})
        (event,) = mailchimp_webhook.parse_body(body)
        deliver(processor, config.integration_id, "mailchimp", event)

    synced, hooked = by_path(harness)
    record_ids = [f"{LIST_A}/{ident}" for ident in member_ids]
    assert_same_records(synced, hooked, record_ids)
    unsubscribed = hooked[record_ids[1]]["data"]
    assert unsubscribed["status"] == "unsubscribed" and unsubscribed["last_name"] == "Lovelace"


# ---------------------------------------------------------------- SendGrid


def test_sendgrid_suppressions_are_the_same_events_by_sync_and_by_webhook(
    harness: Any,
    sendgrid_fake: FakeSendGrid,  # noqa: F811
    processor: EventProcessor,
) -> None:
    sendgrid_fake.seed(3, "bounces")
    sendgrid_fake.seed(2, "blocks")
    sendgrid_fake.seed(2, "unsubscribes")
    config = register_sendgrid(
        harness, sendgrid_fake, {"bounce": "bounces", "block": "blocks", "unsub": "unsubscribes"}
    )
    assert sync(harness.engine(), config.integration_id, mode=DataSyncMode.FULL_SYNC).records_rejected == 0

    webhook = []
    for kind, rows in sendgrid_fake.suppressions.items():
        for n, row in enumerate(rows):
            event = {"email": row["email"], "timestamp": row["created"], "sg_event_id": f"{kind}-{n}"}
            if kind == "unsubscribes":
                event["event"] = "unsubscribe"
            else:
                event |= {"event": "bounce", "type": "blocked" if kind == "blocks" else "bounce"}
                event |= {"reason": row["reason"], "status": row["status"], "sg_message_id": f"msg-{n}"}
            webhook.append(event)
    for event in sendgrid_webhook.parse_body(json.dumps(webhook).encode()):
        deliver(processor, config.integration_id, "sendgrid", event)

    synced, hooked = by_path(harness)
    assert len(synced) == 7
    assert_same_records(synced, hooked, list(synced))
    assert {record["data"]["type"] for record in synced.values()} == {"bounce", "block", "unsubscribe"}
