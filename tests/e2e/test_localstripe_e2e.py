"""Stripe's own deliveries: the localstripe emulator (PyPI localstack-localstripe) signs and sends
its webhooks to the local receiver, and the events land in the data lake.

The customer is created with the real `stripe` SDK against the emulator; the emulator, not this
project, produces the `Stripe-Signature` header.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Tenant
from tests.e2e.test_webhooks_e2e import lake_lines, wait_until

SECRET = "whsec_localstripe_e2e_secret_0123456789"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def localstripe() -> Iterator[str]:
    executable = shutil.which("localstripe", path=str(Path(sys.executable).parent))
    assert executable, "localstripe is installed from requirements-dev.txt"
    port = _free_port()
    process = subprocess.Popen(
        [executable, "--port", str(port), "--from-scratch"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/v1/customers", auth=("sk_test_e2e", ""), timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_localstripe_webhooks_are_verified_and_land_in_the_lake(cloud: Any, new_tenant: Any, localstripe: str) -> None:
    import stripe

    tenant: Tenant = new_tenant(f"org_ls_{uuid.uuid4().hex[:8]}")
    endpoint = tenant.request("POST", "/api/webhooks/endpoints", json={"provider": "stripe", "secret_key": SECRET})
    assert endpoint.status_code == 201, endpoint.text
    receiver = f"{cloud.api_urls['WebhookApi']}/webhooks/stripe/{tenant.organization_id}"
    configured = requests.post(
        f"{localstripe}/_config/webhooks/churnguard",
        data={"url": receiver, "secret": SECRET, "events[]": ["customer.created", "customer.updated"]},
        timeout=10,
    )
    assert configured.status_code == 200, configured.text

    client = stripe.StripeClient("sk_test_e2e", base_addresses={"api": localstripe})
    customer = client.v1.customers.create(params={"email": "ada@example.com", "name": "Ada"})
    # Stripe stamps events to the second; a second apart, "newest" is well defined whatever order
    # the two deliveries are processed in (an older one arriving last is kept aside as superseded).
    time.sleep(1.1)
    client.v1.customers.update(customer.id, params={"name": "Ada Lovelace"})

    prefix = f"org={tenant.organization_id}/provider=stripe/"

    def landed() -> list[dict[str, Any]]:
        return [r for r in lake_lines(cloud, prefix) + lake_lines(cloud, "rejects/" + prefix) if _about(r, customer.id)]

    wait_until(lambda: len(landed()) >= 2, "both emulator events in the lake", timeout=120)
    assert len(landed()) == 2
    records = [r for r in lake_lines(cloud, prefix) if r["record_id"] == customer.id]
    assert {r["entity"] for r in records} == {"customer"}
    newest = max(records, key=lambda r: r["event_time"])
    assert newest["data"]["name"] == "Ada Lovelace", "the newest state is the record's final state"


def _about(line: dict[str, Any], customer_id: str) -> bool:
    return customer_id in (line.get("record_id"), (line.get("record") or {}).get("record_id")) or customer_id in str(
        line
    )
