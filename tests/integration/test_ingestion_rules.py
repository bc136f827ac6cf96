"""The ingestion-rule routes through the real management handler, against moto: CRUD with
write-only secrets, validation, the SSRF guard at registration, tenancy, the poll schedule, and
a rule created through the API polled by the sync engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from churnguard.sync.schedules import schedule_name
from tests.integration.conftest import ManagementApi
from tests.support.fake_rest import TOKEN, FakeRest
from tests.support.sync import ORG, sync

BASE = "/api/ingestion-rules"
PUBLIC_URL = "https://93.184.215.14/v1/events"  # a literal public address: no DNS needed


@pytest.fixture(autouse=True)
def public_networks_only(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """After `aws`, which allows private networks for the provider fakes."""
    monkeypatch.setenv("ALLOW_PRIVATE_NETWORK_SOURCES", "false")


def rule_body(name: str = "Signups", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "url": PUBLIC_URL,
        "headers": {"Accept": "application/json"},
        "query": {"kind": "signup"},
        "auth": {"type": "bearer", "token": TOKEN},
        "data_path": "data",
        "pagination": {"type": "cursor", "cursor_path": "meta.next_cursor", "page_size": 50},
        "incremental": {"param": "updated_since", "cursor_field": "updated_at", "format": "iso8601"},
        "sync_frequency": 300,
        "field_mappings": {"id": "id", "email": "email"},
        **extra,
    }


def create(api: ManagementApi, org: str = "org_a", **extra: Any) -> dict[str, Any]:
    response = api.call("POST", BASE, org=org, body=rule_body(**extra))
    assert response.status == 201, response.body
    return response.body  # type: ignore[no-any-return]


def fields_of(response: Any) -> dict[str, str]:
    return {f["field"]: f["message"] for f in response.body["error"]["details"]["fields"]}


def test_create_returns_the_rule_with_masked_secrets(api: ManagementApi) -> None:
    created = create(api)
    rule = created["rule"]
    assert created["rule_id"] == rule["rule_id"] and rule["rule_id"].startswith("int_")
    assert rule["auth"]["type"] == "bearer" and rule["auth"]["secrets_set"] == {"token": "****6789"}
    assert rule["status"] == "active" and rule["enabled"] is True and rule["entity"] == "event"
    assert rule["pagination"]["cursor_path"] == "meta.next_cursor" and rule["sync_frequency"] == 300
    assert TOKEN not in json.dumps(created)

    integration = api.call("GET", f"/api/integrations/{rule['rule_id']}").body
    assert integration["provider_name"] == "custom" and integration["integration_type"] == "api"
    assert integration["rest_source"]["url"] == PUBLIC_URL
    assert integration["sync_config"]["sync_mode"] == "incremental"
    assert TOKEN not in json.dumps(integration)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"auth": {"type": "bearer"}}, "auth.token"),
        ({"auth": {"type": "basic", "username": "u"}}, "auth.password"),
        ({"auth": {"type": "oauth2_client_credentials", "client_id": "a", "client_secret": "b"}}, "auth"),
        ({"pagination": {"type": "cursor"}}, "pagination"),
        ({"headers": {"Authorization": "Bearer x"}}, "body"),
        ({"sync_frequency": 30}, "sync_frequency"),
        ({"body": {"q": 1}}, "body"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"entity": "Not An Entity"}, "entity"),
        ({"primary_key": ["a.b"]}, "primary_key.0"),
    ],
)
def test_invalid_rules_are_422_naming_the_field(api: ManagementApi, change: dict[str, Any], field: str) -> None:
    response = api.call("POST", BASE, body=rule_body(**change))
    assert response.status == 422, response.body
    assert field in fields_of(response), fields_of(response)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/x", "loopback"),
        ("http://localhost/x", "loopback"),
        ("http://10.0.0.7/x", "private"),
        ("http://[::ffff:192.168.0.1]/x", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fe80::1]/x", "link-local"),
    ],
)
def test_internal_addresses_are_refused_at_registration(api: ManagementApi, url: str, reason: str) -> None:
    response = api.call("POST", BASE, body=rule_body(url=url))
    assert response.status == 422
    assert reason in fields_of(response)["url"]


def test_private_networks_allowed_by_the_deployment_still_exclude_metadata(
    api: ManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLOW_PRIVATE_NETWORK_SOURCES", "true")
    assert api.call("POST", BASE, body=rule_body(url="http://10.0.0.7/x")).status == 201
    token_url = {"type": "oauth2_client_credentials", "token_url": "http://169.254.169.254/token"}
    response = api.call(
        "POST", BASE, body=rule_body(name="Other", auth={**token_url, "client_id": "a", "client_secret": "b"})
    )
    assert response.status == 422 and "metadata" in fields_of(response)["auth.token_url"]


def test_list_shows_only_the_organisations_rules_paginated(api: ManagementApi) -> None:
    ids = {create(api, name=f"Rule {i}")["rule_id"] for i in range(3)}
    create(api, org="org_b", name="Theirs")
    stripe = {"integration_name": "Stripe", "provider_name": "stripe"}
    assert api.call("POST", "/api/integrations", body=stripe).status == 201
    assert api.call("POST", "/api/integrations", body={"integration_name": "Hook", "provider_name": "custom"}).status

    first = api.call("GET", BASE, query={"limit": "2"}).body
    rest = api.call("GET", BASE, query={"limit": "2", "next_token": first["next_token"]}).body
    listed = [r["rule_id"] for r in first["items"] + rest["items"]]
    assert set(listed) == ids and len(listed) == 3
    assert all(TOKEN not in json.dumps(r) for r in first["items"])


def test_patch_merges_and_replaces_secrets_only_when_given(api: ManagementApi) -> None:
    rule_id = create(api)["rule_id"]
    path = f"{BASE}/{rule_id}"

    patched = api.call("PATCH", path, body={"name": "Renamed", "pagination": {"page_size": 10}, "enabled": False})
    assert patched.status == 200, patched.body
    body = patched.body
    assert body["name"] == "Renamed" and body["pagination"]["page_size"] == 10
    assert body["pagination"]["cursor_path"] == "meta.next_cursor", "unpatched pagination fields stay"
    assert body["enabled"] is False and body["status"] == "paused"
    assert body["auth"]["secrets_set"] == {"token": "****6789"} and body["version"] == 2

    rotated = api.call("PATCH", path, body={"auth": {"token": "a-new-bearer-token-9999"}}).body
    assert rotated["auth"]["secrets_set"] == {"token": "****9999"}

    switched = api.call("PATCH", path, body={"auth": {"type": "basic", "username": "user-0001"}})
    assert switched.status == 422 and "auth.password" in fields_of(switched)
    switched = api.call(
        "PATCH", path, body={"auth": {"type": "basic", "username": "user-0001", "password": "pass-0123456789"}}
    )
    assert switched.status == 200 and set(switched.body["auth"]["secrets_set"]) == {"username", "password"}

    unbounded = api.call("PATCH", path, body={"incremental": None}).body
    assert unbounded["incremental"] is None
    assert api.call("PATCH", path, body={"url": "http://127.0.0.1/x"}).status == 422
    assert api.call("GET", path).body["version"] == 5, "refused changes write nothing"

    from churnguard.wiring.services import integration_service

    stored = integration_service().load_credentials("org_a", rule_id).custom_fields
    assert stored["password"].get_secret_value() == "pass-0123456789" and "token" not in stored


def test_query_parameters_that_carry_credentials_are_encrypted_and_masked(api: ManagementApi) -> None:
    """A rule's `api_key=...` query parameter was stored and returned in clear."""
    from churnguard.models import secret_query_field
    from churnguard.wiring.services import integration_service

    secret = "rule-api-key-secret-4242"
    created = create(api, query={"kind": "signup", "api_key": secret}, secret_query={"sig": "signature-value-7777"})
    rule = created["rule"]
    assert rule["query"] == {"kind": "signup"}
    assert rule["secret_query_set"] == {"api_key": "****4242", "sig": "****7777"}
    path = f"{BASE}/{created['rule_id']}"
    for shown in (created, api.call("GET", path).body, api.call("GET", f"/api/integrations/{created['rule_id']}").body):
        assert secret not in json.dumps(shown) and "signature-value-7777" not in json.dumps(shown)
    stored = integration_service().load_credentials("org_a", created["rule_id"]).custom_fields
    assert stored[secret_query_field("api_key")].get_secret_value() == secret

    renamed = api.call("PATCH", path, body={"name": "Renamed", "query": {"kind": "x"}}).body
    assert renamed["secret_query_set"] == {"api_key": "****4242", "sig": "****7777"}, "kept when not given"
    added = api.call("PATCH", path, body={"query": {"kind": "x", "access_token": "access-token-value-1111"}}).body
    assert added["query"] == {"kind": "x"} and set(added["secret_query_set"]) == {"api_key", "sig", "access_token"}
    replaced = api.call("PATCH", path, body={"secret_query": {"api_key": "rotated-api-key-5555"}}).body
    assert replaced["secret_query_set"] == {"api_key": "****5555"}
    cleared = api.call("PATCH", path, body={"secret_query": {}}).body
    assert cleared["secret_query_set"] == {} and cleared["auth"]["secrets_set"] == {"token": "****6789"}
    stored = integration_service().load_credentials("org_a", created["rule_id"]).custom_fields
    assert not any(name.startswith("query.") for name in stored)


def test_new_secrets_reactivate_a_rule_whose_credentials_failed(api: ManagementApi) -> None:
    rule_id = create(api)["rule_id"]
    from churnguard.models import IntegrationStatus
    from churnguard.wiring.services import integration_service

    integration_service().set_status("org_a", rule_id, IntegrationStatus.AUTHENTICATION_FAILED)
    assert api.call("PATCH", f"{BASE}/{rule_id}", body={"name": "Same secrets"}).body["status"] == "auth_failed"
    replaced = api.call("PATCH", f"{BASE}/{rule_id}", body={"auth": {"token": "a-new-bearer-token-9999"}}).body
    assert replaced["status"] == "active" and replaced["enabled"] is True


def test_delete_removes_the_rule(api: ManagementApi) -> None:
    rule_id = create(api)["rule_id"]
    assert api.call("DELETE", f"{BASE}/{rule_id}").status == 204
    assert api.call("GET", f"{BASE}/{rule_id}").status == 404
    assert api.call("GET", f"/api/integrations/{rule_id}").status == 404
    assert api.call("DELETE", f"{BASE}/{rule_id}").status == 404


def test_other_integrations_and_organisations_are_not_rules(api: ManagementApi) -> None:
    stripe = api.call("POST", "/api/integrations", body={"integration_name": "Stripe", "provider_name": "stripe"})
    rule_id = create(api)["rule_id"]
    for path in (f"{BASE}/{stripe.body['integration_id']}", f"{BASE}/int_nope", f"{BASE}/{'0' * 24}"):
        assert api.call("GET", path).status == 404
        assert api.call("PATCH", path, body={"name": "x"}).status == 404
        assert api.call("DELETE", path).status == 404
    assert api.call("GET", f"{BASE}/{rule_id}", org="org_b").status == 404
    assert api.call("POST", BASE, body={**rule_body(), "organization_id": "org_b"}).status == 403
    bypass = {"integration_name": "Sneaky", "provider_name": "custom", "rest_source": {"url": "http://10.0.0.1/x"}}
    refused = api.call("POST", "/api/integrations", body=bypass)
    assert refused.status == 422 and "ingestion-rules" in json.dumps(refused.body)


def test_the_poll_schedule_follows_the_rule(api: ManagementApi, monkeypatch: pytest.MonkeyPatch) -> None:
    client = boto3.client("scheduler")
    client.create_schedule_group(Name="syncs")
    monkeypatch.setenv("SYNC_SCHEDULE_GROUP", "syncs")
    monkeypatch.setenv("SYNC_TASK_FUNCTION_ARN", "arn:aws:lambda:us-east-1:123456789012:function:sync-task")
    monkeypatch.setenv("SYNC_SCHEDULER_ROLE_ARN", "arn:aws:iam::123456789012:role/scheduler")
    rule_id = create(api)["rule_id"]

    def schedule() -> dict[str, Any]:
        return client.get_schedule(Name=schedule_name(rule_id), GroupName="syncs")  # type: ignore[no-any-return]

    assert schedule()["ScheduleExpression"] == "rate(5 minutes)" and schedule()["State"] == "ENABLED"
    api.call("PATCH", f"{BASE}/{rule_id}", body={"sync_frequency": 120, "enabled": False})
    assert schedule()["ScheduleExpression"] == "rate(2 minutes)" and schedule()["State"] == "DISABLED"
    api.call("DELETE", f"{BASE}/{rule_id}")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        schedule()


@pytest.fixture
def rest_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRest]:
    monkeypatch.setenv("ALLOW_PRIVATE_NETWORK_SOURCES", "true")
    with FakeRest(auth="bearer") as fake:
        yield fake  # type: ignore[misc]


def test_a_rule_created_through_the_api_is_polled(api: ManagementApi, harness: Any, rest_api: FakeRest) -> None:
    rest_api.seed(120)
    body = rule_body(url=f"{rest_api.url}/v1/events", entity="customer")
    rule_id = create(api, org=ORG, **body)["rule_id"]

    first = sync(harness.engine(), rule_id)
    assert first.records_written == 120 and len(rest_api.seen(path="/v1/events")) == 3
    rest_api.seed(2, start=120)
    second = sync(harness.engine(), rule_id)
    assert second.records_written == 2
    assert rest_api.seen(path="/v1/events")[-1].param("updated_since") == "2026-01-01T00:02:00Z"

    records = harness.lake_records()
    assert {r["entity"] for r in records} == {"customer"} and len({r["record_id"] for r in records}) == 122
    assert all(set(r["data"]) == {"id", "email"} for r in records), "field_mappings applied"
    assert rest_api.seen(path="/v1/events")[0].param("kind") == "signup"
    view = api.call("GET", f"{BASE}/{rule_id}", org=ORG).body
    assert view["total_records_synced"] == 122 and view["last_poll_at"] is not None
