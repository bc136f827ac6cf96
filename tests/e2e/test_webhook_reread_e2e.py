"""A webhook whose object is incomplete, through everything: a Stripe subscription event names its
discounts by id, so the event processor, running in the local cloud, re-reads the subscription
through the tenant's Stripe integration (the localstripe proxy) before it lands in the lake."""

from __future__ import annotations

import json
import uuid
from typing import Any

import requests

from tests.e2e.test_webhooks_e2e import lake_lines, wait_until
from tests.integration.test_connector_stripe import subscriber
from tests.support.fake_stripe import API_KEY
from tests.support.webhooks import STRIPE_SECRET, stripe_event, stripe_header


def test_a_discounted_subscription_event_lands_with_the_mrr_the_sync_would_write(
    cloud: Any, new_tenant: Any, stripe_api: Any, client: Any
) -> None:
    tenant = new_tenant(f"org_reread_{uuid.uuid4().hex[:8]}")
    product = client.v1.products.create(params={"name": "Scale"})
    plan = client.v1.plans.create(
        params={"amount": 12000, "currency": "usd", "interval": "year", "product": product.id}
    )
    _, subscription_id = subscriber(client, plan.id, "ada@example.com", quantity=3)
    client.v1.coupons.create(params={"id": "TENTH", "percent_off": 10, "duration": "forever"})
    client.v1.coupons.create(params={"id": "FIVER", "amount_off": 500, "currency": "usd", "duration": "forever"})
    stripe_api.discount(subscription_id, "TENTH", "FIVER")

    integration = tenant.request(
        "POST",
        "/api/integrations",
        json={
            "integration_name": "Billing",
            "provider_name": "stripe",
            "base_url": stripe_api.url,
            "status": "active",
            "entity_mappings": {"subscription": "subscriptions"},
            "credentials": {"credential_type": "api_key", "api_key": API_KEY},
        },
    )
    assert integration.status_code == 201, integration.text
    endpoint = tenant.request(
        "POST",
        "/api/webhooks/endpoints",
        json={
            "provider": "stripe",
            "secret_key": STRIPE_SECRET,
            "integration_id": integration.json()["integration_id"],
        },
    )
    assert endpoint.status_code == 201, endpoint.text

    as_sent = json.loads(str(client.v1.subscriptions.retrieve(subscription_id)))
    assert all(isinstance(discount, str) for discount in as_sent["discounts"]), "an event carries discount ids"
    body = stripe_event(f"evt_{uuid.uuid4().hex[:12]}", "customer.subscription.updated", as_sent)
    asked_before = len(stripe_api.requests)
    answer = requests.post(
        f"{cloud.api_urls['WebhookApi']}/webhooks/stripe/{tenant.organization_id}",
        data=body,
        headers={"Stripe-Signature": stripe_header(body), "Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text

    prefix = f"org={tenant.organization_id}/provider=stripe/entity=subscription/"
    wait_until(lambda: bool(lake_lines(cloud, prefix)), "the subscription in the lake")
    (record,) = lake_lines(cloud, prefix)
    assert record["record_id"] == subscription_id and record["source"] == "webhook:customer.subscription.updated"
    # (3 × 120.00 a year − 10 % − 5.00 a year) / 12 = 26.58 a month, as the sync computes it.
    assert (record["data"]["mrr_minor"], record["data"]["mrr_complete"]) == (2658, True)
    assert [d["coupon_id"] for d in record["data"]["discounts"]] == ["TENTH", "FIVER"]
    reads = [
        r
        for r in stripe_api.requests[asked_before:]
        if r.method == "GET" and r.path == f"/v1/subscriptions/{subscription_id}"
    ]
    assert len(reads) == 1, "the processor asked Stripe for the subscription once"
