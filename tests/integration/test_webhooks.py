"""Webhooks in-process against moto: endpoints API, receiver, queue, processor, lake and DLQ.

The SQS event source is emulated by `Consumer` (receive → processor handler → delete what the
handler did not report as failed), with the queue's redrive policy moving poison messages.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.integration.conftest import LambdaContextStub, ManagementApi
from tests.support.handlers import load_handler_module
from tests.support.webhooks import (
    HUBSPOT_SECRET,
    MAILCHIMP_TOKEN,
    SALESFORCE_ORG,
    STANDARD_SECRET,
    STRIPE_SECRET,
    XML_BOMB,
    SendGridKeys,
    hubspot_v3_headers,
    mailchimp_form,
    salesforce_message,
    standard_headers,
    stripe_event,
    stripe_header,
    webhook_event,
)

MAX_RECEIVES = 2
# Allowances count per clock minute: a test that counts them starts no later than this second.
LATEST_START_SECOND = 45


class Consumer:
    """Delivers queued messages to the event processor as Lambda's SQS event source would."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.module = load_handler_module("event_processor")

    def drain(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                return
            records = [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m["Attributes"],
                    "messageAttributes": {},
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:webhooks",
                    "awsRegion": "us-east-1",
                }
                for m in messages
            ]
            result = self.module.lambda_handler({"Records": records}, LambdaContextStub())
            failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
            for message in messages:
                if message["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


class Hooks:
    def __init__(self, aws: dict[str, Any], lake: Any, sqs: Any, queue_url: str, dlq_url: str) -> None:
        self.aws, self.lake, self.sqs = aws, lake, sqs
        self.queue_url, self.dlq_url = queue_url, dlq_url
        self.api = ManagementApi()
        self.receiver = load_handler_module("webhook_receiver")
        self.consumer = Consumer(sqs, queue_url)

    def deliver(self, provider: str, org: str, body: bytes = b"", **kwargs: Any) -> dict[str, Any]:
        method = kwargs.pop("method", "POST")
        result: dict[str, Any] = self.receiver.lambda_handler(
            webhook_event(method, provider, org, body, **kwargs), LambdaContextStub()
        )
        return result

    def queued(self) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["All"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def dead(self) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["All"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def endpoint(self, org: str = "org_a", **body: Any) -> dict[str, Any]:
        response = self.api.call("POST", "/api/webhooks/endpoints", org=org, body=body)
        assert response.status == 201, response.body
        return response.body  # type: ignore[no-any-return]

    def lake_lines(self, area: str = "") -> list[dict[str, Any]]:
        from tests.support.sync import BUCKET

        lines: list[dict[str, Any]] = []
        for page in self.lake.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=area or "org="):
            for obj in page.get("Contents", []):
                body = gzip.decompress(self.lake.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read())
                lines.extend(json.loads(line) for line in body.splitlines() if line)
        return lines


@pytest.fixture
def hooks(aws: dict[str, Any], lake: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hooks]:
    sqs = boto3.client("sqs")
    dlq_url = sqs.create_queue(QueueName="webhooks-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName="webhooks",
        Attributes={
            "VisibilityTimeout": "0",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES}),
        },
    )["QueueUrl"]
    for name, value in {
        "WEBHOOK_QUEUE_URL": queue_url,
        "WEBHOOK_DLQ_URL": dlq_url,
        "WEBHOOK_MAX_RECEIVE_COUNT": str(MAX_RECEIVES),
        "WEBHOOK_RATE_LIMIT_PER_MINUTE": "1000",
        "WEBHOOK_MAX_PAYLOAD_SIZE": "65536",
    }.items():
        monkeypatch.setenv(name, value)
    from churnguard.api import webhooks
    from churnguard.config import platform_settings

    caches = (webhooks.endpoints, webhooks.deadletters, platform_settings)
    for cached in caches:
        cached.cache_clear()
    yield Hooks(aws, lake, sqs, queue_url, dlq_url)
    for cached in caches:
        cached.cache_clear()


def stripe_customer(event_id: str, customer: str = "cus_1", created: int | None = None, **fields: Any) -> bytes:
    return stripe_event(event_id, "customer.updated", {"id": customer, "object": "customer", **fields}, created)


# ---------------------------------------------------------------- endpoints API


def test_endpoint_lifecycle_links_a_real_time_integration_and_never_returns_the_secret(hooks: Hooks) -> None:
    api = hooks.api
    created = hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET, allowed_events=["customer.updated"])
    endpoint_id = created["endpoint_id"]
    assert created["url_path"] == "/webhooks/stripe/org_a"
    assert created["secret"]["current"] == "****" + STRIPE_SECRET[-4:]
    integration = api.call("GET", f"/api/integrations/{created['integration_id']}")
    assert integration.status == 200
    assert integration.body["provider_name"] == "stripe"
    assert integration.body["sync_config"]["sync_mode"] == "real_time"

    listed = api.call("GET", "/api/webhooks/endpoints")
    assert [e["endpoint_id"] for e in listed.body["items"]] == [endpoint_id]
    patched = api.call("PATCH", f"/api/webhooks/endpoints/{endpoint_id}", body={"allowed_events": []})
    assert patched.status == 200 and patched.body["allowed_events"] == [] and patched.body["version"] == 2
    for response in (
        created,
        listed.body,
        patched.body,
        api.call("GET", f"/api/webhooks/endpoints/{endpoint_id}").body,
    ):
        assert STRIPE_SECRET not in json.dumps(response)
    items = hooks.aws["dynamodb"].scan(TableName=hooks.aws["table"])["Items"]
    assert STRIPE_SECRET not in json.dumps(items)

    again = api.call("POST", "/api/webhooks/endpoints", body={"provider": "stripe", "secret_key": STRIPE_SECRET})
    assert again.status == 409
    assert api.call("GET", f"/api/webhooks/endpoints/{endpoint_id}", org="org_b").status == 404
    assert api.call("DELETE", f"/api/webhooks/endpoints/{endpoint_id}", org="org_b").status == 404
    assert api.call("GET", "/api/webhooks/endpoints/whe_nonsense").status == 404
    assert api.call("DELETE", f"/api/webhooks/endpoints/{endpoint_id}").status == 204
    assert api.call("GET", f"/api/integrations/{created['integration_id']}").status == 404
    assert api.call("GET", "/api/webhooks/endpoints").body["items"] == []


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"provider": "stripe", "organization_id": "org_b", "secret_key": STRIPE_SECRET}, 403, "organization_id"),
        ({"provider": "stripe"}, 422, None),
        ({"provider": "sendgrid", "sendgrid_public_key": "bm90IGEga2V5"}, 422, "sendgrid_public_key"),
        ({"provider": "salesforce"}, 422, None),
        ({"provider": "custom", "secret_key": "not-whsec"}, 422, "secret_key"),
        ({"provider": "custom", "secret_key": STANDARD_SECRET, "custom_scheme": "hmac_sha256"}, 422, None),
        ({"provider": "stripe", "secret_key": STRIPE_SECRET, "url_path": "/elsewhere"}, 422, "url_path"),
        ({"provider": "pigeon", "secret_key": STRIPE_SECRET}, 422, "provider"),
        ({"provider": "stripe", "secret_key": STRIPE_SECRET, "integration_id": "int_00000000000000000000"}, 404, None),
    ],
)
def test_bad_endpoint_requests(hooks: Hooks, body: dict[str, Any], status: int, field: str | None) -> None:
    response = hooks.api.call("POST", "/api/webhooks/endpoints", body=body)
    assert response.status == status, response.body
    assert set(response.body) == {"error"}
    if field is not None:
        assert field in json.dumps(response.body["error"]["details"])
    assert STRIPE_SECRET not in response.raw
    assert hooks.api.call("GET", "/api/integrations").body["items"] == []


def test_an_endpoint_links_an_existing_integration_of_the_same_provider(hooks: Hooks) -> None:
    integration = hooks.api.call(
        "POST", "/api/integrations", body={"integration_name": "Billing", "provider_name": "stripe"}
    ).body["integration_id"]
    created = hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET, integration_id=integration)
    assert created["integration_id"] == integration
    hooks.api.call("DELETE", f"/api/webhooks/endpoints/{created['endpoint_id']}")
    assert hooks.api.call("GET", f"/api/integrations/{integration}").status == 200, "not ours to delete"


# ---------------------------------------------------------------- receiving


def test_signed_stripe_events_are_queued_once_and_land_in_the_lake(
    hooks: Hooks, capsys: pytest.CaptureFixture[str]
) -> None:
    hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    body = stripe_customer("evt_1", email="ann@example.com")
    first = hooks.deliver("stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body)})
    assert first["statusCode"] == 200 and json.loads(first["body"])["accepted"] == 1
    repeat = hooks.deliver("stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body)})
    assert repeat["statusCode"] == 200 and json.loads(repeat["body"])["duplicates"] == 1
    assert hooks.queued() == 1
    forged = hooks.deliver("stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body, "whsec_x")})
    assert forged["statusCode"] == 401
    hooks.consumer.drain()
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(m.get("WebhookEventsProcessed") == [1.0] and m.get("WebhookEventsFailed") == [0.0] for m in emitted)
    received = [m for m in emitted if m.get("Provider") == "stripe"]
    assert [(m.get("WebhookEventsAccepted"), m.get("WebhookEventsDuplicate")) for m in received[:2]] == [
        ([1.0], [0.0]),
        ([0.0], [1.0]),
    ]
    assert received[2]["WebhookSignaturesRejected"] == [1.0]
    (record,) = hooks.lake_lines()
    assert (record["entity"], record["record_id"], record["operation"]) == ("customer", "cus_1", "upsert")
    assert record["data"]["email"] == "ann@example.com" and record["cursor"] == "evt_1"
    assert record["event_time"] is not None and record["schema_version"] == 2
    assert record["data"]["source_ids"] == {"stripe": "cus_1"} and "event_id" not in record["data"], "canonical data"
    assert record["source"] == "webhook:customer.updated"


def test_forged_stale_oversized_and_unknown_deliveries_enqueue_nothing(hooks: Hooks) -> None:
    hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    body = stripe_customer("evt_1")
    cases = [
        (hooks.deliver("stripe", "org_a", body), 401),
        (hooks.deliver("stripe", "org_a", body + b" ", headers={"Stripe-Signature": stripe_header(body)}), 401),
        (hooks.deliver("stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body, "whsec_wrong")}), 401),
        (
            hooks.deliver(
                "stripe",
                "org_a",
                body,
                headers={"Stripe-Signature": stripe_header(body, timestamp=int(time.time()) - 400)},
            ),
            401,
        ),
        (hooks.deliver("stripe", "org_a", b"x" * 70_000, headers={"Stripe-Signature": "t=1,v1=00"}), 413),
        (hooks.deliver("stripe", "org_a", body, headers={"X-Junk": "j" * 20_000}), 431),
        (
            hooks.deliver(
                "stripe", "org_a", b"\xff\xfe" + body, base64_body=True, content_type="application/octet-stream"
            ),
            401,
        ),
    ]
    for response, status in cases:
        assert response["statusCode"] == status, response
    truncated = body[:-10]
    response = hooks.deliver("stripe", "org_a", truncated, headers={"Stripe-Signature": stripe_header(truncated)})
    assert response["statusCode"] == 400
    deep = b'{"id": "evt_deep", "type": "x", "data": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    response = hooks.deliver("stripe", "org_a", deep, headers={"Stripe-Signature": stripe_header(deep)})
    assert response["statusCode"] == 400
    # The SDK signs text only; a signature over these exact bytes is the same HMAC, computed here.
    non_utf8 = b'{"id": "evt_\xff", "type": "x"}'
    t = int(time.time())
    digest = hmac.new(STRIPE_SECRET.encode(), f"{t}.".encode() + non_utf8, hashlib.sha256).hexdigest()
    response = hooks.deliver(
        "stripe", "org_a", non_utf8, headers={"Stripe-Signature": f"t={t},v1={digest}"}, base64_body=True
    )
    assert response["statusCode"] == 400
    not_found = [
        hooks.deliver("stripe", "org_unknown", body, headers={"Stripe-Signature": stripe_header(body)}),
        hooks.deliver("paypal", "org_a", body),
        hooks.deliver("hubspot", "org_a", body),
        hooks.deliver("stripe", "../../etc", body),
    ]
    assert {r["statusCode"] for r in not_found} == {404}
    assert len({r["body"] for r in not_found}) == 1, "unknown provider, organisation and endpoint look alike"
    assert hooks.queued() == 0


def test_a_signed_event_with_an_unpaired_surrogate_is_refused_at_the_receiver(hooks: Hooks) -> None:
    """Accepting it would fail every processing attempt and park it in the DLQ, redrives included."""
    hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    body = b'{"id": "evt_sur", "type": "customer.updated", "data": {"object": {"id": "cus_1", "name": "\\ud800"}}}'
    response = hooks.deliver("stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body)})
    assert response["statusCode"] == 400, response
    assert "surrogate" in json.loads(response["body"])["error"]["message"]
    assert hooks.queued() == 0


def test_a_timestamp_of_superscript_digits_is_401_not_500(hooks: Hooks) -> None:
    hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    response = hooks.deliver("stripe", "org_a", stripe_customer("evt_t"), headers={"Stripe-Signature": "t=²,v1=00"})
    assert response["statusCode"] == 401, response
    assert hooks.queued() == 0


def test_base64_bodies_are_verified_as_received(hooks: Hooks) -> None:
    hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    body = stripe_customer("evt_b64")
    response = hooks.deliver(
        "stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body)}, base64_body=True
    )
    assert response["statusCode"] == 200 and hooks.queued() == 1


def test_hostile_soap_is_refused_before_anything_is_queued(hooks: Hooks) -> None:
    hooks.endpoint(provider="salesforce", salesforce_organization_id=SALESFORCE_ORG)
    response = hooks.deliver("salesforce", "org_a", XML_BOMB, content_type="text/xml")
    assert response["statusCode"] == 400 and hooks.queued() == 0


def test_signature_validation_can_be_switched_off_for_trusted_test_setups(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    from churnguard.config import platform_settings

    monkeypatch.setenv("WEBHOOK_SIGNATURE_VALIDATION", "false")
    platform_settings.cache_clear()
    hooks.receiver = load_handler_module("webhook_receiver")
    hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    body = stripe_customer("evt_unsigned")
    assert json.loads(hooks.deliver("stripe", "org_a", body)["body"])["accepted"] == 1
    assert hooks.deliver("stripe", "org_a", b"{not json")["statusCode"] == 400


def limits(hooks: Hooks, monkeypatch: pytest.MonkeyPatch, **values: int) -> None:
    """Sets the receiver's allowances, and starts the test early in a minute: allowances count
    per clock minute, and a test's deliveries (a few seconds) must not straddle two of them."""
    from churnguard.config import platform_settings

    for name, value in values.items():
        monkeypatch.setenv(f"WEBHOOK_{name.upper()}", str(value))
    platform_settings.cache_clear()
    hooks.receiver = load_handler_module("webhook_receiver")
    into_minute = time.time() % 60
    if into_minute > LATEST_START_SECOND:
        time.sleep(60 - into_minute + 0.1)


def signed(hooks: Hooks, event_id: str, source_ip: str = "203.0.113.9") -> dict[str, Any]:
    body = stripe_customer(event_id)
    return hooks.deliver(
        "stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body)}, source_ip=source_ip
    )


def test_rate_limit_answers_429_with_retry_after(hooks: Hooks, monkeypatch: pytest.MonkeyPatch) -> None:
    limits(hooks, monkeypatch, rate_limit_per_minute=2)
    hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    statuses = []
    for n in range(3):
        body = stripe_customer(f"evt_{n}")
        response = hooks.deliver("stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body)})
        statuses.append(response["statusCode"])
    assert statuses == [200, 200, 429]
    assert 1 <= int(response["headers"]["Retry-After"]) <= 60
    assert hooks.queued() == 2


def test_unverified_deliveries_never_spend_the_organisations_allowance(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 unsigned requests used to spend the whole minute's allowance, so the next signed
    delivery got 429: anyone who knew an organisation id could delay its webhooks."""
    limits(hooks, monkeypatch, rate_limit_per_minute=3, unverified_per_source_per_minute=10_000)
    hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    refused = [hooks.deliver("stripe", "org_a", stripe_customer(f"evt_x{n}"))["statusCode"] for n in range(40)]
    refused += [hooks.deliver("hubspot", "org_a", b"{}")["statusCode"] for _ in range(10)]
    assert set(refused) == {401, 404}
    assert [signed(hooks, f"evt_{n}")["statusCode"] for n in range(4)] == [200, 200, 200, 429]
    assert hooks.queued() == 3


def test_a_source_past_its_unverified_allowance_is_429_before_the_endpoint_is_read(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    from churnguard.store.webhooks import WebhookStore

    limits(hooks, monkeypatch, unverified_per_source_per_minute=5)
    hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    reads: list[str] = []
    real_endpoint = WebhookStore.endpoint

    def endpoint(store: WebhookStore, organization_id: str, provider: str) -> Any:
        reads.append(provider)
        return real_endpoint(store, organization_id, provider)

    monkeypatch.setattr(WebhookStore, "endpoint", endpoint)
    statuses = [hooks.deliver("stripe", "org_a", stripe_customer(f"evt_f{n}"))["statusCode"] for n in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    assert len(reads) == 5, "past the allowance the endpoint is not even read"
    throttled = hooks.deliver("stripe", "org_a", stripe_customer("evt_f9"))
    assert 1 <= int(throttled["headers"]["Retry-After"]) <= 60
    assert signed(hooks, "evt_real")["statusCode"] == 200, "another address's signed delivery is untouched"
    assert hooks.queued() == 1


def test_an_endpoint_past_its_unverified_allowance_answers_429_but_still_accepts_signed_deliveries(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits(hooks, monkeypatch, unverified_per_source_per_minute=100, unverified_per_endpoint_per_minute=6)
    hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    statuses = [
        hooks.deliver("stripe", "org_a", stripe_customer(f"evt_d{n}"), source_ip=f"192.0.2.{n}")["statusCode"]
        for n in range(10)
    ]
    assert statuses == [401] * 6 + [429] * 4
    assert signed(hooks, "evt_real")["statusCode"] == 200
    assert hooks.queued() == 1


def test_events_outside_allowed_events_are_acknowledged_and_counted(hooks: Hooks) -> None:
    created = hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET, allowed_events=["invoice.paid"])
    body = stripe_customer("evt_1")
    response = hooks.deliver("stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body)})
    assert response["statusCode"] == 200 and json.loads(response["body"])["ignored"] == 1
    assert hooks.queued() == 0
    view = hooks.api.call("GET", f"/api/webhooks/endpoints/{created['endpoint_id']}").body
    assert view["events_ignored"] == 1


def test_a_failed_enqueue_answers_5xx_and_releases_the_claim(hooks: Hooks, monkeypatch: pytest.MonkeyPatch) -> None:
    hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    body = stripe_customer("evt_1")
    receiver = hooks.receiver.receiver()

    def broken(**_: Any) -> Any:
        raise RuntimeError("SQS is down")

    monkeypatch.setattr(receiver, "_sqs", type("Down", (), {"send_message_batch": staticmethod(broken)})())
    response = hooks.deliver("stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body)})
    assert response["statusCode"] == 503 and "Retry-After" in response["headers"]
    monkeypatch.undo()
    retry = hooks.deliver("stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body)})
    assert json.loads(retry["body"])["accepted"] == 1 and hooks.queued() == 1


def test_a_claim_left_by_a_crashed_receiver_is_taken_over_after_its_lease(hooks: Hooks) -> None:
    from churnguard.store.webhooks import Claim, WebhookStore

    endpoint = hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    store = WebhookStore(hooks.aws["dynamodb"], hooks.aws["table"])
    now = int(time.time())
    assert (
        store.claim_event("org_a", endpoint["endpoint_id"], "evt_1", now=now - 120, lease_seconds=60, ttl_seconds=600)
        is Claim.CLAIMED
    )
    assert (
        store.claim_event("org_a", endpoint["endpoint_id"], "evt_2", now=now, lease_seconds=60, ttl_seconds=600)
        is Claim.CLAIMED
    )
    for event_id, expected in (("evt_1", 1), ("evt_2", 0)):
        body = stripe_customer(event_id)
        response = hooks.deliver("stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body)})
        assert json.loads(response["body"])["accepted"] == expected


def test_secret_rotation_has_a_grace_period(hooks: Hooks) -> None:
    created = hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    new_secret = "whsec_new_" + "n" * 30
    rotated = hooks.api.call(
        "POST",
        f"/api/webhooks/endpoints/{created['endpoint_id']}/rotate-secret",
        body={"secret_key": new_secret, "grace_period_seconds": 3600},
    )
    assert rotated.status == 200 and rotated.body["secret"]["previous_valid_until"] is not None
    assert new_secret not in rotated.raw and STRIPE_SECRET not in rotated.raw
    for n, secret in enumerate((STRIPE_SECRET, new_secret)):
        body = stripe_customer(f"evt_{n}")
        assert (
            hooks.deliver("stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body, secret)})[
                "statusCode"
            ]
            == 200
        )
    hooks.api.call(
        "POST",
        f"/api/webhooks/endpoints/{created['endpoint_id']}/rotate-secret",
        body={"secret_key": STRIPE_SECRET, "grace_period_seconds": 0},
    )
    body = stripe_customer("evt_9")
    assert (
        hooks.deliver("stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body, new_secret)})[
            "statusCode"
        ]
        == 401
    )
    assert (
        hooks.api.call(
            "POST", "/api/webhooks/endpoints/whe_00000000000000000000/rotate-secret", body={"secret_key": "x"}
        ).status
        == 404
    )


@pytest.mark.parametrize("value", [True, "3600", 3600.5])
def test_numbers_and_booleans_must_be_json_numbers_and_booleans(hooks: Hooks, value: Any) -> None:
    """Lax validation took `true` for 1 second of grace and "3600" for 3600; the document says integer."""
    created = hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    path = f"/api/webhooks/endpoints/{created['endpoint_id']}"
    body = {"secret_key": "whsec_new_" + "n" * 30, "grace_period_seconds": value}
    rotated = hooks.api.call("POST", f"{path}/rotate-secret", body=body)
    assert rotated.status == 422, rotated.body
    assert [f["field"] for f in rotated.body["error"]["details"]["fields"]] == ["grace_period_seconds"]
    patched = hooks.api.call("PATCH", path, body={"hubspot_allow_legacy_signatures": 1})
    assert patched.status == 422, patched.body
    assert hooks.api.call("GET", path).body["version"] == created["version"], "nothing changed"


def test_hubspot_sendgrid_mailchimp_salesforce_and_custom(hooks: Hooks) -> None:
    keys = SendGridKeys.generate()
    hooks.endpoint(provider="hubspot", secret_key=HUBSPOT_SECRET)
    hooks.endpoint(provider="sendgrid", sendgrid_public_key=keys.public_key_b64)
    hooks.endpoint(provider="mailchimp", secret_key=MAILCHIMP_TOKEN)
    hooks.endpoint(provider="salesforce", salesforce_organization_id=SALESFORCE_ORG)
    hooks.endpoint(provider="custom", secret_key=STANDARD_SECRET, entity="customer", record_id_field="customer_id")

    hubspot = json.dumps(
        [
            {"eventId": 11, "subscriptionType": "contact.creation", "objectId": 5, "occurredAt": 1_700_000_000_000},
            {"eventId": 12, "subscriptionType": "contact.deletion", "objectId": 6, "occurredAt": 1_700_000_000_000},
        ]
    ).encode()
    uri = "https://hooks.example.com/webhooks/hubspot/org_a"
    assert hooks.deliver("hubspot", "org_a", hubspot, headers=hubspot_v3_headers(hubspot, uri))["statusCode"] == 200
    assert (
        hooks.deliver("hubspot", "org_a", hubspot, headers=hubspot_v3_headers(hubspot, uri, "wrong"))["statusCode"]
        == 401
    )

    sendgrid = json.dumps(
        [
            {"sg_event_id": "sg1", "event": "open", "email": "a@example.com", "timestamp": 1_700_000_000},
            {"sg_event_id": "sg1", "event": "open", "email": "a@example.com", "timestamp": 1_700_000_000},
            {"sg_event_id": "sg2", "event": "bounce", "email": "b@example.com", "timestamp": 1_700_000_001},
        ]
    ).encode()
    result = hooks.deliver("sendgrid", "org_a", sendgrid, headers=keys.headers(sendgrid))
    assert json.loads(result["body"]) == {"received": 3, "accepted": 2, "duplicates": 1, "ignored": 0}

    validation = hooks.deliver("mailchimp", "org_a", method="GET", query={"token": MAILCHIMP_TOKEN})
    assert validation["statusCode"] == 200
    assert hooks.deliver("mailchimp", "org_a", method="GET", query={"token": "nope"})["statusCode"] == 401
    form = mailchimp_form("subscribe", "c@example.com")
    kwargs = {"content_type": "application/x-www-form-urlencoded"}
    assert hooks.deliver("mailchimp", "org_a", form, query={"token": MAILCHIMP_TOKEN}, **kwargs)["statusCode"] == 200
    assert hooks.deliver("mailchimp", "org_a", form, **kwargs)["statusCode"] == 401

    soap = salesforce_message([("04l1", "Contact", {"Id": "003A", "Email": "d@example.com"})])
    ack = hooks.deliver("salesforce", "org_a", soap, content_type="text/xml")
    assert ack["statusCode"] == 200 and "<Ack>true</Ack>" in ack["body"]
    foreign = salesforce_message([("04l2", "Contact", {"Id": "003B"})], organization_id="00D000000000099AAA")
    assert hooks.deliver("salesforce", "org_a", foreign, content_type="text/xml")["statusCode"] == 401

    custom = json.dumps({"type": "customer.changed", "customer_id": "c-1", "plan": "pro"}).encode()
    assert hooks.deliver("custom", "org_a", custom, headers=standard_headers(custom))["statusCode"] == 200

    assert hooks.queued() == 7
    hooks.consumer.drain()
    by_provider: dict[str, set[tuple[str, str, str]]] = {}
    for line in hooks.lake_lines():
        by_provider.setdefault(line["provider"], set()).add((line["entity"], line["record_id"], line["operation"]))
    assert by_provider["hubspot"] == {("contact", "5", "upsert"), ("contact", "6", "delete")}
    # The bounce is keyed as the suppression a SendGrid sync reads for it.
    bounce = ("email_event", "bounce:b@example.com:1700000001", "upsert")
    assert by_provider["sendgrid"] == {("email_event", "sg1", "upsert"), bounce}
    assert by_provider["salesforce"] == {("contact", "003A", "upsert")}
    assert by_provider["custom"] == {("customer", "c-1", "upsert")}
    assert len(by_provider["mailchimp"]) == 1


# ---------------------------------------------------------------- processing


def test_an_older_event_never_overwrites_a_newer_one(hooks: Hooks) -> None:
    hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    newer = stripe_customer("evt_new", created=1_700_000_200, email="new@example.com")
    older = stripe_customer("evt_old", created=1_700_000_100, email="old@example.com")
    for body in (newer, older):
        hooks.deliver("stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body)})
        hooks.consumer.drain()
    (record,) = hooks.lake_lines()
    assert record["data"]["email"] == "new@example.com"
    (reject,) = hooks.lake_lines("rejects/")
    assert reject["reason"] == "superseded by a newer event for this record"
    assert reject["raw"]["data"]["email"] == "old@example.com"


def test_poison_events_reach_the_dlq_and_are_redriven_after_the_fix(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    from churnguard.webhooks.processor import EventProcessor

    hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    hooks.endpoint(org="org_b", provider="stripe", secret_key=STRIPE_SECRET)
    original = EventProcessor.process

    def poisoned(self: EventProcessor, queued: Any) -> None:
        if queued.event.event_id.startswith("evt_poison"):
            raise ValueError("cannot process this event yet")
        original(self, queued)

    monkeypatch.setattr(EventProcessor, "process", poisoned)
    for org in ("org_a", "org_b"):
        body = stripe_customer("evt_poison", customer=f"cus_{org}")
        assert (
            hooks.deliver("stripe", org, body, headers={"Stripe-Signature": stripe_header(body)})["statusCode"] == 200
        )
    hooks.consumer.drain()
    hooks.consumer.drain()
    assert hooks.dead() == 2 and hooks.queued() == 0
    letters = hooks.api.call("GET", "/api/dlq").body["items"]
    assert [(d["event_id"], d["error"], d["receive_count"]) for d in letters] == [
        ("evt_poison", "ValueError: cannot process this event yet", MAX_RECEIVES)
    ]
    assert hooks.api.call("GET", "/api/dlq", org="org_c").body["items"] == []
    assert hooks.api.call("POST", "/api/dlq/redrive", org="org_c").body == {"redriven": 0}
    (waiting,) = hooks.api.call("GET", "/api/dashboard/integrations").body["items"]
    assert waiting["dead_letters"] == 1
    assert next(c for c in waiting["health"]["components"] if c["name"] == "dead_letters")["score"] == 0.9
    assert hooks.api.call("GET", "/api/dashboard/metrics").body["dead_letters"] == 1

    monkeypatch.setattr(EventProcessor, "process", original)
    assert hooks.api.call("POST", "/api/dlq/redrive").body == {"redriven": 1}
    assert hooks.dead() == 1, "org_b's dead letter stays where it is"
    hooks.consumer.drain()
    assert [line["record_id"] for line in hooks.lake_lines()] == ["cus_org_a"]
    assert hooks.api.call("GET", "/api/dlq").body["items"] == []
    assert len(hooks.api.call("GET", "/api/dlq", org="org_b").body["items"]) == 1
    assert hooks.api.call("GET", "/api/dashboard/metrics").body["dead_letters"] == 0


def test_an_event_whose_final_attempt_crashes_is_listed_and_redriven(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash or timeout ends the invocation before any error handling runs; the message goes
    to the DLQ regardless, and GET /api/dlq must still show it."""
    from churnguard.webhooks.processor import STOPPED_ON_FINAL_ATTEMPT, EventProcessor

    class InvocationKilled(BaseException):
        """What a Lambda timeout looks like from inside: nothing after it runs."""

    hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    original = EventProcessor.process
    attempts: list[int] = []

    def crashing(self: EventProcessor, queued: Any) -> None:
        attempts.append(1)
        if len(attempts) < MAX_RECEIVES:
            raise ValueError("a transient failure")
        raise InvocationKilled

    monkeypatch.setattr(EventProcessor, "process", crashing)
    body = stripe_customer("evt_crash", customer="cus_crash")
    delivered = hooks.deliver("stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body)})
    assert delivered["statusCode"] == 200
    with pytest.raises(InvocationKilled):
        hooks.consumer.drain()  # the first attempt fails, the final one is killed
    hooks.consumer.drain()  # past maxReceiveCount: SQS moves it to the DLQ
    assert hooks.dead() == 1
    (letter,) = hooks.api.call("GET", "/api/dlq").body["items"]
    assert (letter["event_id"], letter["error"]) == ("evt_crash", STOPPED_ON_FINAL_ATTEMPT)

    monkeypatch.setattr(EventProcessor, "process", original)
    assert hooks.api.call("POST", "/api/dlq/redrive").body == {"redriven": 1}
    hooks.consumer.drain()
    assert [line["record_id"] for line in hooks.lake_lines()] == ["cus_crash"]
    assert hooks.api.call("GET", "/api/dlq").body["items"] == []


def test_a_final_attempt_that_succeeds_leaves_no_dead_letter(hooks: Hooks, monkeypatch: pytest.MonkeyPatch) -> None:
    from churnguard.webhooks.processor import EventProcessor

    hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    original = EventProcessor.process
    attempts: list[int] = []

    def fails_once(self: EventProcessor, queued: Any) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("a transient failure")
        original(self, queued)

    monkeypatch.setattr(EventProcessor, "process", fails_once)
    body = stripe_customer("evt_late", customer="cus_late")
    hooks.deliver("stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body)})
    hooks.consumer.drain()
    hooks.consumer.drain()
    assert len(attempts) == MAX_RECEIVES
    assert [line["record_id"] for line in hooks.lake_lines()] == ["cus_late"]
    assert hooks.api.call("GET", "/api/dlq").body["items"] == []
    assert hooks.dead() == 0


def test_no_webhook_secret_is_logged(
    hooks: Hooks, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    hooks.endpoint(provider="mailchimp", secret_key=MAILCHIMP_TOKEN)
    body = stripe_customer("evt_1")
    hooks.deliver("stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body, "whsec_wrong")})
    hooks.deliver("mailchimp", "org_a", method="GET", query={"token": "wrong-token"})
    output = capsys.readouterr()
    for text in (caplog.text, output.out, output.err):
        assert STRIPE_SECRET not in text and MAILCHIMP_TOKEN not in text
    assert base64.b64encode(STRIPE_SECRET.encode()).decode() not in output.out


def test_events_also_reach_the_analytics_api_when_it_is_configured(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from tests.integration.test_pipeline_sinks import TOKEN, AnalyticsServer

    server = AnalyticsServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        boto3.client("secretsmanager").create_secret(Name="analytics-token", SecretString=TOKEN)
        monkeypatch.setenv("ANALYTICS_API_URL", server.url)
        monkeypatch.setenv("ANALYTICS_API_TOKEN_SECRET", "analytics-token")
        hooks.consumer = Consumer(hooks.sqs, hooks.queue_url)
        hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
        body = stripe_customer("evt_analytics", email="an@example.com")
        hooks.deliver("stripe", "org_a", body, headers={"Stripe-Signature": stripe_header(body)})
        hooks.consumer.drain()
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(timeout=5)
    (request,) = server.requests
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    (record,) = [json.loads(line) for line in gzip.decompress(request["body"]).splitlines()]
    assert (record["record_id"], record["data"]["email"]) == ("cus_1", "an@example.com")
    assert [line["record_id"] for line in hooks.lake_lines()] == ["cus_1"]


def test_connection_tests_report_credential_less_integrations_as_not_testable(
    hooks: Hooks, postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A webhook endpoint's real-time integration has no credentials; it used to turn the whole
    organisation's connection test, and its own, into a 404."""
    from churnguard.api import syncs

    monkeypatch.setenv("SYNC_STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:unused")
    syncs.launcher.cache_clear()
    endpoint = hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    url = postgres.url
    database = hooks.api.call(
        "POST",
        "/api/integrations",
        body={
            "integration_name": "Warehouse",
            "provider_name": "postgresql",
            "base_url": f"{url.host}:{url.port}",
            "credentials": {
                "credential_type": "basic_auth",
                "username": url.user,
                "password": url.password or "unused",
                "custom_fields": {"database": url.database},
            },
        },
    ).body
    try:
        everything = hooks.api.call("POST", "/api/system/test-connections")
        assert everything.status == 200, everything.body
        by_id = {item["integration_id"]: item for item in everything.body["items"]}
        webhook_item = by_id[endpoint["integration_id"]]
        assert webhook_item["check"] is None and "no credentials" in webhook_item["message"]
        assert by_id[database["integration_id"]]["check"]["status"] == "ok"
        assert (everything.body["ok"], everything.body["failed"], everything.body["not_testable"]) == (1, 0, 1)
        single = hooks.api.call("POST", f"/api/integrations/{endpoint['integration_id']}/test-connection")
        assert single.status == 200 and single.body["check"] is None
    finally:
        syncs.launcher.cache_clear()


def test_the_dashboard_counts_deliveries_by_outcome_and_the_records_they_landed(hooks: Hooks) -> None:
    created = hooks.endpoint(provider="stripe", secret_key=STRIPE_SECRET)
    body = stripe_customer("evt_dash", email="dee@example.com")
    signed = {"Stripe-Signature": stripe_header(body)}
    assert hooks.deliver("stripe", "org_a", body, headers=signed)["statusCode"] == 200
    assert hooks.deliver("stripe", "org_a", body, headers=signed)["statusCode"] == 200
    forged = {"Stripe-Signature": stripe_header(body, "whsec_x")}
    assert hooks.deliver("stripe", "org_a", body, headers=forged)["statusCode"] == 401
    # Deliveries to no endpoint leave no counters: a stranger cannot create dashboard items.
    assert hooks.deliver("stripe", "org_nobody", body, headers=signed)["statusCode"] == 404
    hooks.consumer.drain()

    metrics = hooks.api.call("GET", "/api/dashboard/metrics").body
    assert metrics["webhooks_24h"]["accepted"] == 1 and metrics["webhooks_24h"]["duplicate"] == 1
    assert metrics["webhooks_24h"]["refused"]["signature"] == 1
    assert metrics["records_written_24h"] == 1
    detail = hooks.api.call("GET", f"/api/dashboard/integration/{created['integration_id']}").body
    endpoint = detail["webhook_endpoint"]
    assert endpoint["endpoint_id"] == created["endpoint_id"]
    assert endpoint["last_24h"]["accepted"] == 1 and endpoint["last_24h"]["refused"]["signature"] == 1
    assert detail["days"][-1]["webhook_records"] == 1
    items = hooks.aws["dynamodb"].scan(TableName=hooks.aws["table"])["Items"]
    assert not [i for i in items if i["pk"]["S"].startswith("STATS#org_nobody")]
