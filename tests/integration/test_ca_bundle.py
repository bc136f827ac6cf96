"""A SaaS base_url behind a corporate TLS proxy, or a provider sandbox with its own CA: the
integration's credentials carry the CA bundle (encrypted like every secret), and the connector
checks the source's certificate against it. Without it the same source is refused; there is no
way to switch verification off. The fakes serve HTTPS on 127.0.0.1 with a throwaway CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from churnguard.connectors.base import CheckStatus
from churnguard.models import IntegrationCredentials, ProviderName
from churnguard.runs import SyncStatus
from tests.support.fake_hubspot import FakeHubSpot
from tests.support.fake_sendgrid import API_KEY as SENDGRID_KEY
from tests.support.fake_sendgrid import FakeSendGrid
from tests.support.sync import ORG, sync
from tests.support.tls import ThrowawayCa, make_ca

HUBSPOT_TOKEN = "pat-na1-tls-test-token"


@pytest.fixture
def ca(tmp_path: Path) -> ThrowawayCa:
    return make_ca(tmp_path)


@pytest.fixture
def sendgrid(ca: ThrowawayCa) -> Iterator[FakeSendGrid]:
    fake = FakeSendGrid()
    fake.serve_tls(ca.cert_file, ca.key_file).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def hubspot(ca: ThrowawayCa) -> Iterator[FakeHubSpot]:
    fake = FakeHubSpot(token=HUBSPOT_TOKEN)
    fake.serve_tls(ca.cert_file, ca.key_file).start()
    try:
        yield fake
    finally:
        fake.stop()


def credentials(key: str, ca_pem: str | None) -> IntegrationCredentials:
    document: dict[str, Any] = {"credential_type": "api_key", "api_key": key}
    if ca_pem is not None:
        document["ca_bundle"] = ca_pem
    return IntegrationCredentials.model_validate(document)


def test_sendgrid_behind_a_private_ca_syncs_with_its_bundle_and_is_refused_without(
    harness: Any, sendgrid: FakeSendGrid, ca: ThrowawayCa
) -> None:
    sendgrid.seed(5, "bounces")
    engine = harness.engine()
    without = harness.register(ProviderName.SENDGRID, sendgrid.url, credentials(SENDGRID_KEY, None), {}, name="a")
    check = engine.test_connection(ORG, without.integration_id)
    assert check.status is CheckStatus.UNREACHABLE, check.message
    with_ca = harness.register(
        ProviderName.SENDGRID, sendgrid.url, credentials(SENDGRID_KEY, ca.ca_pem), {"bounce": "bounces"}, name="b"
    )
    assert engine.test_connection(ORG, with_ca.integration_id).status is CheckStatus.OK
    run = sync(engine, with_ca.integration_id)
    assert run.status is SyncStatus.SUCCEEDED and run.records_written == 5


def test_hubspot_through_its_sdk_verifies_against_the_bundle(
    harness: Any, hubspot: FakeHubSpot, ca: ThrowawayCa
) -> None:
    hubspot.seed(30)
    engine = harness.engine()
    without = harness.register(ProviderName.HUBSPOT, hubspot.url, credentials(HUBSPOT_TOKEN, None), {}, name="a")
    assert engine.test_connection(ORG, without.integration_id).status is CheckStatus.UNREACHABLE
    with_ca = harness.register(
        ProviderName.HUBSPOT, hubspot.url, credentials(HUBSPOT_TOKEN, ca.ca_pem), {"contact": "contacts"}, name="b"
    )
    run = sync(engine, with_ca.integration_id)
    assert run.status is SyncStatus.SUCCEEDED and run.records_written == 30


def test_the_bundle_is_stored_encrypted_shown_masked_and_must_be_certificates(api: Any, ca: ThrowawayCa) -> None:
    body = {
        "integration_name": "Behind the proxy",
        "provider_name": "sendgrid",
        "credentials": {"credential_type": "api_key", "api_key": SENDGRID_KEY, "ca_bundle": ca.ca_pem},
    }
    created = api.call("POST", "/api/integrations", body=body)
    assert created.status == 201, created.body
    assert "ca_bundle" in created.body["integration"]["credentials"]["fields_set"]
    assert "BEGIN CERTIFICATE" not in created.raw
    junk = {**body, "integration_name": "junk", "credentials": {**body["credentials"], "ca_bundle": "not a cert"}}
    refused = api.call("POST", "/api/integrations", body=junk)
    assert refused.status == 422
    assert [f["field"] for f in refused.body["error"]["details"]["fields"]] == ["credentials.ca_bundle"]
