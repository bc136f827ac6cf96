"""Webhook benchmarks: receiver cold start, in-process verification throughput, end to end.

1. Cold import of the receiver and the processor: median of N fresh interpreters (bar: receiver
   at most 300 ms, and neither pydantic nor a provider SDK nor the Tracer on its path).
2. Verify + parse + dedupe key, in process, per provider (bar: Stripe at least 20,000 events/s).
3. End to end through the local cloud: signed Stripe events from concurrent clients over HTTP →
   accepted/s, latency p50/p99, and the time until every event is in the data lake, with the
   per-organisation limit raised past the load (what the local cloud itself accepts); run again
   with `--rate-limit 1000` (the template's default) to see the limit refuse the excess with 429.
   One cloud per run: the functions' services are cached in this process, as in a warm sandbox.

    .venv/bin/python -m benchmarks.webhooks [--runs 5] [--events 5000] [--clients 16] [--rate-limit N] [--skip-e2e]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.cold_start import measure
from churnguard.inbound import parsing, signatures
from churnguard.providers.custom import webhook as custom_webhook
from churnguard.providers.hubspot import webhook as hubspot_webhook
from churnguard.providers.mailchimp import webhook as mailchimp_webhook
from churnguard.providers.salesforce import webhook as salesforce_webhook
from churnguard.providers.sendgrid import webhook as sendgrid_webhook
from churnguard.providers.stripe import webhook as stripe_webhook
from churnguard.store.keys import webhook_event_key
from tests.support.webhooks import (
    HUBSPOT_SECRET,
    MAILCHIMP_TOKEN,
    STANDARD_SECRET,
    STRIPE_SECRET,
    SendGridKeys,
    hubspot_v3_headers,
    mailchimp_form,
    salesforce_message,
    standard_headers,
    stripe_event,
    stripe_header,
)

REPO = Path(__file__).resolve().parents[1]
RECEIVER_BAR_MS = 300.0
STRIPE_BAR_PER_S = 20_000.0
# The Tracer's cost is the X-Ray SDK (Powertools always loads its own small tracing module).
RECEIVER_FORBIDDEN = ("pydantic", "stripe", "cryptography", "aws_xray_sdk")


def cold_imports(runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, path in (
        ("WebhookReceiverFunction", "functions/webhook_receiver/app.py"),
        ("EventProcessorFunction", "functions/event_processor/app.py"),
    ):
        samples, _ = measure(str(REPO / path), runs)
        results[name] = {"median_ms": round(statistics.median(samples), 1), "max_ms": round(max(samples), 1)}
    probe = (
        "import importlib.util, sys; spec = importlib.util.spec_from_file_location('h', sys.argv[1]); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        f"print([n for n in sys.modules if n.split('.')[0] in {RECEIVER_FORBIDDEN!r}])"
    )
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(REPO / "shared"), "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run(
        [sys.executable, "-c", probe, str(REPO / "functions/webhook_receiver/app.py")],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    receiver = results["WebhookReceiverFunction"]
    receiver["forbidden_modules"] = out.stdout.strip()
    receiver["within_bar"] = receiver["median_ms"] <= RECEIVER_BAR_MS and out.stdout.strip() == "[]"
    return results


def rate(name: str, events_per_call: int, calls: int, work: Callable[[], int]) -> dict[str, Any]:
    work()  # warm caches (key loading, regexes)
    started = time.perf_counter()
    total = 0
    for _ in range(calls):
        total += work()
    elapsed = time.perf_counter() - started
    assert total == events_per_call * calls, name
    return {"events_per_s": round(total / elapsed), "events_per_delivery": events_per_call}


def throughput(deliveries: int) -> dict[str, Any]:
    """Per provider: verify the signature, parse the delivery and build each event's dedupe key."""
    now = time.time()
    results: dict[str, Any] = {}

    def keys(items: list[parsing.InboundEvent]) -> int:
        return len([webhook_event_key("org_bench", "whe_bench", item.event_id) for item in items])

    stripe_body = stripe_event(
        "evt_bench", "customer.updated", {"id": "cus_1", "object": "customer", "email": "a@example.com"}
    )
    stripe_sig = stripe_header(stripe_body)

    def stripe() -> int:
        stripe_webhook.verify_signature(stripe_body, stripe_sig, [STRIPE_SECRET], now)
        return keys(stripe_webhook.parse_body(stripe_body))

    results["stripe"] = rate("stripe", 1, deliveries, stripe)
    hubspot_body = json.dumps(
        [{"eventId": n, "subscriptionType": "contact.propertyChange", "objectId": n} for n in range(10)]
    ).encode()
    uri = "https://hooks.example.com/webhooks/hubspot/org_bench"
    hubspot_headers = {k.lower(): v for k, v in hubspot_v3_headers(hubspot_body, uri).items()}

    def hubspot() -> int:
        hubspot_webhook.verify_signature(
            hubspot_body,
            hubspot_headers,
            method="POST",
            uri=uri,
            secrets=[HUBSPOT_SECRET],
            now=now,
            allow_legacy=False,
        )
        return keys(hubspot_webhook.parse_body(hubspot_body))

    results["hubspot"] = rate("hubspot", 10, max(1, deliveries // 10), hubspot)
    sendgrid_keys = SendGridKeys.generate()
    sendgrid_body = json.dumps([{"sg_event_id": f"sg{n}", "event": "open"} for n in range(10)]).encode()
    sendgrid_headers = {k.lower(): v for k, v in sendgrid_keys.headers(sendgrid_body).items()}

    def sendgrid() -> int:
        sendgrid_webhook.verify_signature(sendgrid_body, sendgrid_headers, sendgrid_keys.public_key_b64, now)
        return keys(sendgrid_webhook.parse_body(sendgrid_body))

    results["sendgrid"] = rate("sendgrid", 10, max(1, deliveries // 10), sendgrid)
    form = mailchimp_form("subscribe", "a@example.com")

    def mailchimp() -> int:
        signatures.verify_token(MAILCHIMP_TOKEN, [MAILCHIMP_TOKEN])
        return keys(mailchimp_webhook.parse_body(form))

    results["mailchimp"] = rate("mailchimp", 1, deliveries, mailchimp)
    soap = salesforce_message([(f"04l{n}", "Contact", {"Id": f"003{n}", "Email": "a@example.com"}) for n in range(10)])

    def salesforce() -> int:
        _, parsed = salesforce_webhook.parse_body(soap)
        return keys(parsed)

    results["salesforce"] = rate("salesforce", 10, max(1, deliveries // 10), salesforce)
    custom_body = json.dumps({"type": "customer.changed", "customer_id": "c1"}).encode()
    custom_headers = standard_headers(custom_body)

    def custom() -> int:
        signatures.verify_standard_webhooks(custom_body, custom_headers, [STANDARD_SECRET], now)
        return keys(custom_webhook.parse_body(custom_body, custom_headers, {"custom_scheme": "standard_webhooks"}))

    results["custom"] = rate("custom", 1, deliveries, custom)
    results["stripe"]["within_bar"] = results["stripe"]["events_per_s"] >= STRIPE_BAR_PER_S
    return results


def end_to_end(count: int, clients: int, rate_limit: int) -> dict[str, Any]:
    import requests

    from churnguard import aws
    from churnguard.admin import create_api_key
    from local.cloud import LocalCloud

    # Functions share this process's AWS clients (one per service): a second cloud has another
    # moto endpoint, so the clients the first one's functions made are dropped.
    aws.client.cache_clear()
    # Quiet: per-delivery logs stay out of the results.
    overrides = {"LogLevel": "WARNING", "WebhookRateLimitPerMinute": str(rate_limit)}
    with LocalCloud(
        REPO / "template.yaml", ports={"ManagementApi": 0, "WebhookApi": 0}, moto_port=0, parameter_overrides=overrides
    ) as cloud:
        organization_id = f"org_bench_{uuid.uuid4().hex[:6]}"
        key = create_api_key(
            table_name=cloud.resources["DataTable"]["physical_id"],
            organization_id=organization_id,
            name="bench",
            dynamodb=cloud.boto3_client("dynamodb"),
        )
        created = requests.post(
            cloud.api_urls["ManagementApi"] + "/api/webhooks/endpoints",
            json={"provider": "stripe", "secret_key": STRIPE_SECRET},
            headers={"Authorization": f"Bearer {key.api_key}"},
            timeout=30,
        )
        created.raise_for_status()
        url = f"{cloud.api_urls['WebhookApi']}/webhooks/stripe/{organization_id}"
        bodies = [
            stripe_event(f"evt_{n}", "customer.updated", {"id": f"cus_{n}", "object": "customer"}) for n in range(count)
        ]
        session = requests.Session()

        def send(body: bytes) -> tuple[int, float]:
            started = time.perf_counter()
            response = session.post(url, data=body, headers={"Stripe-Signature": stripe_header(body)}, timeout=60)
            return response.status_code, time.perf_counter() - started

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            outcomes = list(pool.map(send, bodies))
        sent = time.perf_counter() - started
        accepted = sum(1 for status, _ in outcomes if status == 200)
        latencies = sorted(latency for _, latency in outcomes)
        s3 = cloud.boto3_client("s3")
        bucket = cloud.resources["DataLakeBucket"]["physical_id"]
        deadline = time.monotonic() + 1800
        landed = 0
        while time.monotonic() < deadline:
            landed = sum(
                page.get("KeyCount", 0)
                for page in s3.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=f"org={organization_id}/"
                )
            )
            if landed >= accepted:
                break
            time.sleep(1)
        in_lake = time.perf_counter() - started
    return {
        "events": count,
        "clients": clients,
        "rate_limit_per_minute": rate_limit,
        "refused_429": sum(1 for status, _ in outcomes if status == 429),
        "accepted": accepted,
        "accepted_per_s": round(accepted / sent, 1),
        "latency_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "latency_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "seconds_until_all_in_lake": round(in_lake, 1),
        "in_lake": landed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--rate-limit", type=int, default=100_000, help="WebhookRateLimitPerMinute for the run")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "cold_import": cold_imports(args.runs),
        "in_process": throughput(args.deliveries),
    }
    if not args.skip_e2e:
        results["end_to_end"] = end_to_end(args.events, args.clients, rate_limit=args.rate_limit)
    print(json.dumps(results, indent=2))
    ok = (
        results["cold_import"]["WebhookReceiverFunction"]["within_bar"]
        and results["in_process"]["stripe"]["within_bar"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
