"""Stripe syncs with the real `stripe` SDK against the localstripe emulator, through the engine,
the pipeline and the moto data lake.

Every test talks to localstripe through `StripeProxy` (tests/support/fake_stripe.py), which logs
and paces requests, injects faults (5xx bursts, 429 with Retry-After, a revoked key) and serves
what localstripe lacks in Stripe's documented shapes: `/v1/events` in Stripe's order with
`types[]` and `ending_before`, and `/v1/prices`. Objects are created with the SDK (or, for
volume, `seed` in the emulator's store).

Token refresh does not apply to Stripe: an account's secret or restricted key does not expire
and has no refresh token; a revoked key is `authentication_failed` (tested below).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from churnguard.connectors.base import CheckStatus, TransientSourceError
from churnguard.errors import ChurnGuardError
from churnguard.models import DataSyncMode, IntegrationCredentials, ProviderName
from churnguard.runs import SyncStatus
from tests.support.fake_api import request_gaps
from tests.support.fake_stripe import (
    API_KEY,
    StripeProxy,
    rate_limited,
    server_error,
)
from tests.support.sync import ORG, drive, ref, sync

ALL_OBJECTS = {
    "customer": "customers",
    "subscription": "subscriptions",
    "invoice": "invoices",
    "payment": "charges",
    "refund": "refunds",
    "product": "products",
    "price": "prices",
    "coupon": "coupons",
}


def register(harness: Any, proxy: StripeProxy, mappings: dict[str, str] | None = None, **sync_config: Any) -> Any:
    creds = IntegrationCredentials.model_validate({"credential_type": "api_key", "api_key": API_KEY})
    return harness.register(
        ProviderName.STRIPE,
        proxy.url,
        creds,
        mappings or {"customer": "customers"},
        # The engine's rate limiter paces for real even with the harness's no-op sleep (it spins).
        sync_config={"batch_size": 10, "requests_per_minute": 60_000, **sync_config},
    )


def subscriber(client: Any, plan_id: str, email: str, quantity: int = 2) -> tuple[str, str]:
    """A customer with a card and a subscription (localstripe invoices and charges it)."""
    customer = client.v1.customers.create(params={"email": email, "name": email.split("@", maxsplit=1)[0]})
    card = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
    )
    client.v1.payment_methods.attach(card.id, params={"customer": customer.id})
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": card.id}})
    subscription = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"plan": plan_id, "quantity": quantity}]}
    )
    return customer.id, subscription.id


def lake_by_entity(harness: Any, sync_id: str | None = None) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for record in harness.lake_records():
        if sync_id is None or record["batch_id"] == sync_id:
            found.setdefault(record["entity"], []).append(record)
    return found


def test_full_sync_reads_every_object_at_100_per_page(harness: Any, stripe_api: StripeProxy, client: Any) -> None:
    product = client.v1.products.create(params={"name": "Pro"})
    plan = client.v1.plans.create(
        params={"amount": 1500, "currency": "usd", "interval": "month", "product": product.id, "nickname": "Pro"}
    )
    customer_id, subscription_id = subscriber(client, plan.id, "ada@example.com", quantity=2)
    charge = client.v1.charges.list().data[0]
    client.v1.refunds.create(params={"charge": charge.id, "amount": 500})
    client.v1.coupons.create(params={"id": "HALF", "percent_off": 50, "duration": "forever"})
    seeded = stripe_api.seed(249)
    config = register(harness, stripe_api, ALL_OBJECTS)
    stripe_api.requests.clear()

    run = sync(harness.engine(), config.integration_id, mode=DataSyncMode.FULL_SYNC)

    assert run.status is SyncStatus.SUCCEEDED and run.records_rejected == 0
    lake = lake_by_entity(harness)
    assert Counter(r["record_id"] for r in lake["customer"]) == Counter([customer_id, *seeded])
    assert {entity: len(records) for entity, records in lake.items()} == {
        "customer": 250,
        "subscription": 1,
        "invoice": 1,
        "payment": 1,
        "refund": 1,
        "product": 1,
        "price": 1,
        "coupon": 1,
    }
    sub = lake["subscription"][0]
    assert sub["record_id"] == subscription_id and sub["operation"] == "upsert" and sub["provider"] == "stripe"
    data = sub["data"]
    assert data["customer_id"] == customer_id and data["status"] == "active" and sub["schema_version"] == 2
    assert data["mrr_minor"] == 3000 and data["run_rate_minor"] == 3000 and data["mrr_complete"] is True
    assert data["currency"] == "USD" and data["quantity"] == 2 and data["interval"] == "month"
    assert data["items"][0]["price_id"] == plan.id and data["items"][0]["unit_amount_minor"] == 1500
    assert data["raw"]["items"]["data"][0]["quantity"] == 2, "Stripe's own object is kept under raw"
    assert data["source_ids"] == {"stripe": subscription_id}
    assert isinstance(data["current_period_end"], str) and data["current_period_end"].endswith("Z")
    invoice = lake["invoice"][0]["data"]
    assert invoice["customer_id"] == customer_id and invoice["amount_paid_minor"] == 3000
    assert invoice["currency"] == "USD" and invoice["paid_at"] is not None
    assert lake["refund"][0]["data"]["amount_minor"] == 500
    assert lake["payment"][0]["data"]["customer_id"] == customer_id
    assert lake["price"][0]["data"]["unit_amount_minor"] == 1500 and lake["price"][0]["data"]["type"] == "recurring"
    assert lake["coupon"][0]["data"]["percent_off"] == "50"

    customer_pages = stripe_api.seen("GET", "/v1/customers")
    assert [r.param("limit") for r in customer_pages] == ["100", "100", "100"], "250 in 3 pages, no ping first"
    subscription_list = stripe_api.seen("GET", "/v1/subscriptions")[0]
    assert subscription_list.param("status") == "all", "canceled subscriptions are read too"
    bookmarks = stripe_api.seen("GET", "/v1/events")
    assert len(bookmarks) == len(ALL_OBJECTS) and {r.param("limit") for r in bookmarks} == {"1"}
    total = len(stripe_api.seen())
    minimum = 3 + 7  # 250 customers in 3 pages, one page for each other object
    assert total == minimum + len(ALL_OBJECTS), "beyond the pages: one bookmark per stream"


def test_incremental_sync_picks_up_updates_creations_and_deletions(
    harness: Any, stripe_api: StripeProxy, client: Any
) -> None:
    product = client.v1.products.create(params={"name": "Team"})
    plan = client.v1.plans.create(
        params={"amount": 12000, "currency": "usd", "interval": "year", "product": product.id}
    )
    payer, subscription_id = subscriber(client, plan.id, "grace@example.com", quantity=1)
    seeded = stripe_api.seed(150)
    config = register(harness, stripe_api, {"customer": "customers", "subscription": "subscriptions"})
    engine = harness.engine(flush_records=50)

    first = sync(engine, config.integration_id, mode=DataSyncMode.FULL_SYNC, record_budget=100)
    assert first.status is SyncStatus.SUCCEEDED
    assert len(lake_by_entity(harness)["customer"]) == 151

    # The full read is done; these all happen before the next sync.
    client.v1.customers.update(seeded[10], params={"name": "Renamed"})
    client.v1.customers.update(seeded[10], params={"email": "renamed@example.com"})
    client.v1.customers.delete(seeded[20])
    created = client.v1.customers.create(params={"email": "new@example.com", "name": "New"})
    client.v1.customers.update(created.id, params={"name": "Newer"})
    client.v1.subscriptions.cancel(subscription_id)
    stripe_api.requests.clear()

    second = sync(engine, config.integration_id, mode=DataSyncMode.INCREMENTAL)

    assert second.status is SyncStatus.SUCCEEDED and second.mode is DataSyncMode.INCREMENTAL
    lake = lake_by_entity(harness, second.sync_id)
    customers = {(r["record_id"], r["operation"]): r["data"] for r in lake["customer"]}
    assert set(customers) == {(seeded[10], "upsert"), (seeded[20], "delete"), (created.id, "upsert")}
    assert customers[(seeded[10], "upsert")]["email"] == "renamed@example.com"
    assert customers[(seeded[10], "upsert")]["name"] == "Renamed"
    assert customers[(created.id, "upsert")]["name"] == "Newer"
    (canceled,) = lake["subscription"]
    assert canceled["record_id"] == subscription_id and canceled["operation"] == "upsert"
    assert canceled["data"]["status"] == "canceled" and canceled["data"]["mrr_minor"] == 0
    assert canceled["data"]["run_rate_minor"] == 1000 and canceled["data"]["customer_id"] == payer

    events = stripe_api.seen("GET", "/v1/events")
    assert events and all(r.param("ending_before") for r in events), "events are read forward from the cursor"
    assert "customer.deleted" in [v for k, vs in events[0].query.items() if k.startswith("types[") for v in vs]
    refetched = Counter(r.path for r in stripe_api.seen("GET", r"/v1/customers/.+"))
    assert refetched[f"/v1/customers/{seeded[10]}"] == 1, "two events, one re-fetch"
    assert f"/v1/customers/{seeded[20]}" not in refetched, "a customer.deleted event needs no re-fetch"

    stripe_api.requests.clear()
    third = sync(engine, config.integration_id, mode=DataSyncMode.INCREMENTAL)

    assert third.status is SyncStatus.SUCCEEDED and third.records_read == 0
    assert [r.path for r in stripe_api.seen()] == ["/v1/events", "/v1/events"]


def test_a_change_made_during_the_full_read_is_in_the_next_incremental(
    harness: Any, stripe_api: StripeProxy, client: Any
) -> None:
    seeded = stripe_api.seed(250)  # three pages; the last one ends the read within the third step
    config = register(harness, stripe_api)
    engine = harness.engine(flush_records=100)
    run = engine.start_sync(ORG, config.integration_id, mode=DataSyncMode.FULL_SYNC)
    engine.prepare(ref(run))
    step = engine.extract_step(ref(run), 600.0, 100)  # one page of 100 read, and checkpointed
    assert not step.done
    client.v1.customers.update(seeded[5], params={"name": "Changed mid-read"})  # already read
    while not engine.extract_step(ref(run), 600.0, 100).done:
        pass
    engine.finalize(ref(run))

    second = sync(engine, config.integration_id, mode=DataSyncMode.INCREMENTAL)

    (record,) = lake_by_entity(harness, second.sync_id)["customer"]
    assert record["record_id"] == seeded[5] and record["data"]["name"] == "Changed mid-read"


@pytest.mark.parametrize("events_since", [40, 150])
def test_a_first_incremental_run_reads_the_events_since_last_sync_timestamp(
    harness: Any, stripe_api: StripeProxy, client: Any, events_since: int
) -> None:
    """One page of events, or more: then the oldest is found first and the rest read forward."""
    seeded = stripe_api.seed(events_since)
    since = datetime.now(UTC) - timedelta(hours=1)
    config = register(harness, stripe_api, last_sync_timestamp=since.isoformat())

    run = sync(harness.engine(), config.integration_id, mode=DataSyncMode.INCREMENTAL)

    assert run.status is SyncStatus.SUCCEEDED
    assert Counter(r["record_id"] for r in harness.lake_records()) == Counter(seeded)
    events = stripe_api.seen("GET", "/v1/events")
    assert {r.param("created[gte]") for r in events if r.param("created[gte]")} == {str(int(since.timestamp()))}
    assert not stripe_api.seen(
        "GET",
        "/v1/customers",
    ) or all(r.param("limit") == "1" for r in stripe_api.seen("GET", "/v1/customers")), "no full read"

    client.v1.customers.update(seeded[0], params={"name": "Later"})
    second = sync(harness.engine(), config.integration_id, mode=DataSyncMode.INCREMENTAL)

    assert [r["record_id"] for r in harness.lake_records() if r["batch_id"] == second.sync_id] == [seeded[0]]


def test_a_last_sync_timestamp_beyond_event_retention_reads_in_full(harness: Any, stripe_api: StripeProxy) -> None:
    seeded = stripe_api.seed(30)
    since = datetime.now(UTC) - timedelta(days=40)
    config = register(harness, stripe_api, last_sync_timestamp=since.isoformat())

    run = sync(harness.engine(), config.integration_id, mode=DataSyncMode.INCREMENTAL)

    assert run.status is SyncStatus.SUCCEEDED and run.records_written == len(seeded)
    assert [r.param("limit") for r in stripe_api.seen("GET", "/v1/customers")] == ["100"]


def test_an_expired_event_cursor_falls_back_to_a_full_read(
    harness: Any, stripe_api: StripeProxy, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seeded = stripe_api.seed(120)
    config = register(harness, stripe_api)
    engine = harness.engine()
    assert sync(engine, config.integration_id, mode=DataSyncMode.FULL_SYNC).status is SyncStatus.SUCCEEDED
    assert stripe_api.expire_events() > 0  # Stripe's 30-day retention has passed
    client.v1.customers.update(seeded[3], params={"name": "After the gap"})
    stripe_api.expire_events()

    with caplog.at_level(logging.WARNING, logger="churnguard.providers.stripe.source"):
        second = sync(engine, config.integration_id, mode=DataSyncMode.INCREMENTAL)

    assert second.status is SyncStatus.SUCCEEDED and second.records_written == 120
    renamed = [r for r in lake_by_entity(harness, second.sync_id)["customer"] if r["record_id"] == seeded[3]]
    assert renamed[0]["data"]["name"] == "After the gap"
    assert "read in full instead of from events" in caplog.text and "30-day" in caplog.text
    (note,) = second.notes
    assert note.stream == "customer" and "read in full instead of from events" in note.message

    client.v1.customers.update(seeded[4], params={"name": "Back on events"})
    third = sync(engine, config.integration_id, mode=DataSyncMode.INCREMENTAL)

    assert [r["record_id"] for r in lake_by_entity(harness, third.sync_id)["customer"]] == [seeded[4]]


def test_a_429_is_retried_after_the_time_stripe_names(harness: Any, stripe_api: StripeProxy) -> None:
    stripe_api.seed(400)
    config = register(harness, stripe_api, retry_attempts=5, requests_per_minute=6000)
    stripe_api.limit_rate(2, 1.0, reply=rate_limited)

    run = sync(harness.engine(sleep=time.sleep), config.integration_id, mode=DataSyncMode.FULL_SYNC)

    assert run.status is SyncStatus.SUCCEEDED and run.records_written == 400
    requests = stripe_api.seen()
    throttled = [i for i, seen in enumerate(requests) if seen in stripe_api.throttled_requests]
    assert throttled and len(throttled) == stripe_api.throttled()
    for index in throttled:
        assert requests[index + 1].at - requests[index].at >= 0.9, "the next request waited for Retry-After: 1"
    counts = Counter(r["record_id"] for r in harness.lake_records())
    assert len(counts) == 400 and max(counts.values()) == 1


def test_requests_per_minute_paces_the_requests(harness: Any, stripe_api: StripeProxy) -> None:
    stripe_api.seed(300)
    config = register(harness, stripe_api, requests_per_minute=300, concurrent_requests=1)

    run = sync(harness.engine(sleep=time.sleep), config.integration_id, mode=DataSyncMode.FULL_SYNC)

    assert run.status is SyncStatus.SUCCEEDED
    gaps = list(request_gaps(stripe_api.seen()))
    assert len(gaps) >= 3 and min(gaps[1:]) >= 0.18, "300 a minute: one request every 0.2 s"


def test_an_outage_mid_sync_resumes_from_the_checkpoint(harness: Any, stripe_api: StripeProxy) -> None:
    seeded = stripe_api.seed(500)
    config = register(harness, stripe_api, retry_attempts=1)
    engine = harness.engine(flush_records=100)

    listed = Counter[str]()

    def fourth_page(seen: Any) -> bool:
        """From the fourth page on (the first request is the ping). Runs under the fake's lock."""
        if seen.path == "/v1/customers":
            listed["requests"] += 1
        return listed["requests"] >= 5

    stripe_api.fail_next(3, 500, body=server_error(), match=fourth_page)
    run = engine.start_sync(ORG, config.integration_id, mode=DataSyncMode.FULL_SYNC)
    engine.prepare(ref(run))
    failures: list[str] = []
    resumed_at = 0
    while True:
        try:
            if engine.extract_step(ref(run), 600.0, 1_000_000).done:
                break
        except TransientSourceError as exc:  # the state machine retries the task
            failures.append(exc.message)
            resumed_at = len(stripe_api.seen())
    final = engine.finalize(ref(run))

    assert len(failures) == 1 and "Stripe failed listing customers (HTTP 500)" in failures[0]
    assert final.status is SyncStatus.SUCCEEDED
    counts = Counter(r["record_id"] for r in harness.lake_records())
    assert set(counts) == set(seeded) and max(counts.values()) == 1, "nothing lost, nothing repeated"
    pages = [r for r in stripe_api.seen("GET", "/v1/customers") if r.param("limit") == "100"]
    assert [r.param("starting_after") for r in pages].count(None) == 1, "the retried task did not start over"
    resumed = stripe_api.seen()[resumed_at]
    assert resumed.path == "/v1/customers" and resumed.param("starting_after") in seeded, "from the checkpoint"


def test_an_invalid_key_is_authentication_failed(harness: Any, stripe_api: StripeProxy) -> None:
    stripe_api.seed(5)
    config = register(harness, stripe_api)
    engine = harness.engine()
    stripe_api.revoke(API_KEY)

    check = engine.test_connection(ORG, config.integration_id)

    assert check.status is CheckStatus.AUTHENTICATION_FAILED
    assert "Stripe refused the configured credentials" in check.message and API_KEY[8:] not in check.message

    run = engine.start_sync(ORG, config.integration_id, mode=DataSyncMode.FULL_SYNC)
    with pytest.raises(ChurnGuardError) as failed:
        drive(engine, run)
    assert getattr(failed.value, "kind", None) is CheckStatus.AUTHENTICATION_FAILED
    assert API_KEY not in str(failed.value.message)


def test_a_publishable_key_is_refused_without_a_request(harness: Any, stripe_api: StripeProxy) -> None:
    creds = IntegrationCredentials.model_validate({"credential_type": "api_key", "api_key": "pk_test_publishable"})
    config = harness.register(ProviderName.STRIPE, stripe_api.url, creds, {"customer": "customers"})

    check = harness.engine().test_connection(ORG, config.integration_id)

    assert check.status is CheckStatus.AUTHENTICATION_FAILED and "publishable" in check.message
    assert stripe_api.seen() == []
