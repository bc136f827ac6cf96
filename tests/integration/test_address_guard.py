"""The address guard for database and SaaS sources: refused at registration, and again at connect
time, always before a connection is attempted.

No test here sends a packet to a link-local, metadata or private address: registration checks
literals without resolving them, and the connect-time tests replace name resolution and every
driver's connect with recorders, so a refusal that came too late fails the test instead of
connecting.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from churnguard.connectors.base import CheckStatus
from churnguard.models import IntegrationCredentials, ProviderName
from tests.integration.conftest import ManagementApi

METADATA_FORMS = [
    "169.254.169.254",
    "[::ffff:169.254.169.254]",
    "[::ffff:a9fe:a9fe]",
    "2852039166",
    "0xA9FEA9FE",
    "0251.0376.0251.0376",
    "169.254.43518",
    "[fd00:ec2::254]",
]
LINK_LOCAL_FORMS = ["[fe80::1]", "169.254.10.10", "[64:ff9b::a9fe:a9fe]"]
DATABASES = ["postgresql", "mysql", "mongodb"]
LOGIN = {"credential_type": "basic_auth", "username": "u", "password": "p", "custom_fields": {"database": "d"}}


def register(api: ManagementApi, provider: str, base_url: str) -> Any:
    credentials = LOGIN if provider in DATABASES else {"credential_type": "api_key", "api_key": "sk_test_1-us21"}
    body = {"integration_name": f"{provider} {base_url}", "provider_name": provider, "base_url": base_url}
    return api.call("POST", "/api/integrations", body={**body, "credentials": credentials})


@pytest.mark.parametrize("host", METADATA_FORMS + LINK_LOCAL_FORMS)
@pytest.mark.parametrize("provider", DATABASES)
def test_a_database_on_a_metadata_or_link_local_address_is_422_at_registration_even_where_private_is_allowed(
    api: ManagementApi, provider: str, host: str
) -> None:
    response = register(api, provider, f"{host}:5432")
    assert response.status == 422, response.body
    (problem,) = response.body["error"]["details"]["fields"]
    assert problem["field"] == "base_url"
    assert "metadata" in problem["message"] or "link-local" in problem["message"]
    assert api.call("GET", "/api/integrations").body["items"] == []


@pytest.mark.parametrize("host", ["169.254.169.254", "[::ffff:169.254.169.254]", "2852039166", "[fe80::1]"])
@pytest.mark.parametrize("provider", ["stripe", "hubspot", "mailchimp", "sendgrid", "salesforce"])
def test_a_saas_base_url_on_the_metadata_address_is_422_at_registration(
    api: ManagementApi, provider: str, host: str
) -> None:
    response = register(api, provider, f"https://{host}/v1")
    assert response.status == 422, response.body
    assert [f["field"] for f in response.body["error"]["details"]["fields"]] == ["base_url"]


def test_a_patch_to_a_metadata_address_is_422_and_changes_nothing(api: ManagementApi) -> None:
    created = register(api, "postgresql", "127.0.0.1:5432")
    assert created.status == 201, created.body
    path = f"/api/integrations/{created.body['integration_id']}"
    patched = api.call("PATCH", path, body={"base_url": "2852039166:80"})
    assert patched.status == 422
    assert api.call("GET", path).body["base_url"] == "127.0.0.1:5432"


@pytest.mark.parametrize("provider", DATABASES)
def test_private_database_addresses_need_the_deployment_to_allow_them(
    api: ManagementApi, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    monkeypatch.setenv("ALLOW_PRIVATE_NETWORK_SOURCES", "false")
    for host in ("10.0.0.5", "127.0.0.1", "[fd12::5]", "192.168.1.10"):
        refused = register(api, provider, f"{host}:5432")
        assert refused.status == 422, refused.body
        assert "AllowPrivateNetworkSources" in refused.body["error"]["details"]["fields"][0]["message"]
    monkeypatch.setenv("ALLOW_PRIVATE_NETWORK_SOURCES", "true")
    assert register(api, provider, "10.0.0.5:5432").status == 201


class Recorder:
    """Stands in for a driver's connect: any call means the guard let a connection through."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        raise AssertionError("a connection was attempted")


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> dict[str, Recorder]:
    """`db.rebound.test` resolves to the metadata address (as a DNS answer changed after
    registration would), and every driver's connect only records that it was called."""
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "db.rebound.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]
        if host == "db.private.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.20.30.40", port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    import psycopg2
    import pymongo
    import pymysql

    recorders = {"postgresql": Recorder(), "mysql": Recorder(), "mongodb": Recorder()}
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(psycopg2, "connect", recorders["postgresql"])
    monkeypatch.setattr(pymysql, "connect", recorders["mysql"])
    monkeypatch.setattr(pymongo, "MongoClient", recorders["mongodb"])
    return recorders


@pytest.mark.parametrize("provider", DATABASES)
def test_a_name_that_resolves_to_the_metadata_address_is_refused_before_connecting(
    harness: Any, rebinding: dict[str, Recorder], provider: str
) -> None:
    from churnguard.wiring.services import sync_engine

    config = harness.register(
        ProviderName(provider),
        "db.rebound.test:5432",
        IntegrationCredentials.model_validate(LOGIN),
        {"customer": "customers"},
    )
    check = sync_engine().test_connection(config.organization_id, config.integration_id)
    assert check.status is CheckStatus.INVALID_CONFIGURATION
    assert "metadata" in check.message
    assert rebinding[provider].calls == [], "the driver was never asked to connect"


@pytest.mark.parametrize("provider", DATABASES)
def test_a_name_that_resolves_to_a_private_address_is_refused_unless_allowed(
    harness: Any, rebinding: dict[str, Recorder], monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    from churnguard.wiring.services import sync_engine

    config = harness.register(
        ProviderName(provider),
        "db.private.test:5432",
        IntegrationCredentials.model_validate(LOGIN),
        {"customer": "customers"},
    )
    monkeypatch.setenv("ALLOW_PRIVATE_NETWORK_SOURCES", "false")
    check = sync_engine().test_connection(config.organization_id, config.integration_id)
    assert check.status is CheckStatus.INVALID_CONFIGURATION and "private" in check.message
    assert rebinding[provider].calls == []


def test_postgresql_connects_to_the_address_it_checked_not_the_name_again(
    harness: Any, postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libpq gets the checked address as hostaddr, so a second DNS answer cannot redirect it."""
    import psycopg2

    from churnguard.wiring.services import sync_engine

    seen: list[dict[str, Any]] = []
    real_connect = psycopg2.connect

    def connect(**arguments: Any) -> Any:
        seen.append(arguments)
        return real_connect(**arguments)

    monkeypatch.setattr(psycopg2, "connect", connect)
    url = postgres.url
    config = harness.register(
        ProviderName.POSTGRESQL,
        f"localhost:{url.port}",
        IntegrationCredentials.model_validate(
            {
                "credential_type": "basic_auth",
                "username": url.user,
                "password": url.password or "unused",
                "custom_fields": {"database": url.database},
            }
        ),
        {},
    )
    check = sync_engine().test_connection(config.organization_id, config.integration_id)
    assert check.status is CheckStatus.OK, check.message
    assert seen and seen[0]["host"] == "localhost" and seen[0]["hostaddr"] in {"127.0.0.1", "::1"}
