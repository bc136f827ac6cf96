"""The management API through its real handler, against moto: CRUD, pagination, tenancy, errors."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from tests.integration.conftest import ManagementApi

STRIPE_KEY = "sk_test_51Hx-very-secret-stripe-key-0042"


def stripe_body(name: str = "Stripe billing", **extra: Any) -> dict[str, Any]:
    return {
        "integration_name": name,
        "provider_name": "stripe",
        "credentials": {"credential_type": "api_key", "api_key": STRIPE_KEY},
        **extra,
    }


def create(api: ManagementApi, org: str = "org_a", **body: Any) -> dict[str, Any]:
    response = api.call("POST", "/api/integrations", org=org, body=stripe_body(**body))
    assert response.status == 201, response.body
    return response.body  # type: ignore[no-any-return]


def test_create_returns_201_with_id_and_masked_credentials(api: ManagementApi) -> None:
    created = create(api)
    integration = created["integration"]
    assert created["integration_id"] == integration["integration_id"]
    assert integration["organization_id"] == "org_a"
    assert integration["integration_type"] == "payment"
    assert integration["credentials"]["credential_type"] == "api_key"
    assert integration["credentials"]["fields_set"] == {"api_key": "****0042"}
    assert STRIPE_KEY not in str(created)


def test_get_update_delete_round_trip(api: ManagementApi) -> None:
    integration_id = create(api)["integration_id"]
    path = f"/api/integrations/{integration_id}"

    fetched = api.call("GET", path)
    assert fetched.status == 200 and fetched.body["version"] == 1

    patched = api.call(
        "PATCH",
        path,
        body={"integration_name": "Stripe EU", "status": "active", "sync_config": {"batch_size": 250}, "tags": ["eu"]},
    )
    assert patched.status == 200, patched.body
    assert patched.body["integration_name"] == "Stripe EU"
    assert patched.body["status"] == "active"
    assert patched.body["sync_config"]["batch_size"] == 250
    assert patched.body["sync_config"]["sync_frequency"] == 3600, "unpatched sync fields keep their value"
    assert patched.body["version"] == 2
    assert patched.body["credentials"]["fields_set"] == {"api_key": "****0042"}, "credentials survive a PATCH"

    assert api.call("DELETE", path).status == 204
    assert api.call("GET", path).status == 404
    assert api.call("DELETE", path).status == 404


def test_put_credentials_replaces_them(api: ManagementApi, aws: dict[str, Any]) -> None:
    integration_id = create(api)["integration_id"]
    response = api.call(
        "PUT",
        f"/api/integrations/{integration_id}/credentials",
        body={"credential_type": "oauth2", "access_token": "new-access-token-abcdef-7777", "refresh_token": "r" * 30},
    )
    assert response.status == 200, response.body
    assert response.body["credentials"]["credential_type"] == "oauth2"
    assert response.body["credentials"]["fields_set"] == {"access_token": "****7777", "refresh_token": "****rrrr"}

    from churnguard.wiring.services import integration_service

    loaded = integration_service().load_credentials("org_a", integration_id)
    assert loaded.access_token is not None and loaded.access_token.get_secret_value() == "new-access-token-abcdef-7777"
    assert loaded.api_key is None


def test_duplicate_name_is_409_case_insensitively_and_freed_by_rename_and_delete(api: ManagementApi) -> None:
    first = create(api, name="Billing")["integration_id"]
    duplicate = api.call("POST", "/api/integrations", body=stripe_body("  billing "))
    assert duplicate.status == 409
    assert duplicate.body["error"]["code"] == "conflict"
    assert duplicate.body["error"]["details"] == {"field": "integration_name"}

    second = create(api, name="Payments")["integration_id"]
    clash = api.call("PATCH", f"/api/integrations/{second}", body={"integration_name": "BILLING"})
    assert clash.status == 409
    assert api.call("GET", f"/api/integrations/{second}").body["integration_name"] == "Payments", "nothing half-written"

    assert api.call("PATCH", f"/api/integrations/{first}", body={"integration_name": "Old billing"}).status == 200
    assert api.call("POST", "/api/integrations", body=stripe_body("Billing")).status == 201
    api.call("DELETE", f"/api/integrations/{second}")
    assert api.call("POST", "/api/integrations", body=stripe_body("payments")).status == 201


def test_same_name_in_two_organisations_is_fine(api: ManagementApi) -> None:
    create(api, org="org_a", name="Billing")
    create(api, org="org_b", name="Billing")


def test_list_paginates_and_filters(api: ManagementApi) -> None:
    ids = [create(api, name=f"stripe {i}")["integration_id"] for i in range(5)]
    for i in range(3):
        response = api.call(
            "POST",
            "/api/integrations",
            body={
                "integration_name": f"pg {i}",
                "provider_name": "postgresql",
                "base_url": "db.internal:5432",
                "status": "active",
            },
        )
        assert response.status == 201
    create(api, org="org_b", name="other org")

    seen: list[str] = []
    token: str | None = None
    while True:
        query = {"limit": "3"} | ({"next_token": token} if token else {})
        page = api.call("GET", "/api/integrations", query=query)
        assert page.status == 200
        assert len(page.body["items"]) <= 3
        seen.extend(item["integration_id"] for item in page.body["items"])
        token = page.body["next_token"]
        if token is None:
            break
    assert len(seen) == 8 and len(set(seen)) == 8
    assert set(ids) <= set(seen)

    databases = api.call("GET", "/api/integrations", query={"integration_type": "database", "limit": "2"})
    assert [i["provider_name"] for i in databases.body["items"]] == ["postgresql", "postgresql"]
    rest = api.call(
        "GET",
        "/api/integrations",
        query={"integration_type": "database", "limit": "2", "next_token": databases.body["next_token"]},
    )
    assert len(rest.body["items"]) == 1 and rest.body["next_token"] is None
    active = api.call("GET", "/api/integrations", query={"status": "active"})
    assert len(active.body["items"]) == 3
    stripe = api.call("GET", "/api/integrations", query={"provider_name": "stripe"})
    assert len(stripe.body["items"]) == 5


def test_tenant_isolation(api: ManagementApi) -> None:
    theirs = create(api, org="org_b")["integration_id"]
    path = f"/api/integrations/{theirs}"
    missing = api.call("GET", "/api/integrations/int_00000000000000000000")
    for method, body in (("GET", None), ("PATCH", {"tags": ["x"]}), ("DELETE", None)):
        response = api.call(method, path, org="org_a", body=body)
        assert response.status == 404
        assert response.body["error"]["code"] == missing.body["error"]["code"]
        assert response.body["error"]["message"] == missing.body["error"]["message"]
    creds = api.call(
        "PUT", f"{path}/credentials", org="org_a", body={"credential_type": "api_key", "api_key": "x" * 20}
    )
    assert creds.status == 404
    assert api.call("GET", "/api/integrations", org="org_a").body["items"] == []
    assert api.call("GET", path, org="org_b").status == 200, "the owner still sees it, untouched"
    assert api.call("GET", path, org="org_b").body["tags"] == []

    forged = api.call("POST", "/api/integrations", org="org_a", body=stripe_body(organization_id="org_b"))
    assert forged.status == 403
    assert forged.body["error"]["details"] == {"field": "organization_id"}
    own = api.call("POST", "/api/integrations", org="org_a", body=stripe_body("own", organization_id="org_a"))
    assert own.status == 201
    assert api.call("PATCH", path, org="org_b", body={"organization_id": "org_a"}).status == 403


def test_a_foreign_next_token_is_400_and_reaches_nothing(api: ManagementApi) -> None:
    for i in range(3):
        create(api, org="org_b", name=f"b{i}")
    token = api.call("GET", "/api/integrations", org="org_b", query={"limit": "1"}).body["next_token"]
    page = api.call("GET", "/api/integrations", org="org_a", query={"next_token": token})
    assert page.status == 400, page.body
    assert page.body["error"]["details"] == {"field": "next_token"}


def test_next_tokens_are_signed_and_bound_to_their_filters(api: ManagementApi) -> None:
    """A token used to be base64 of the sort key: anyone could write one."""
    import base64

    for i in range(3):
        create(api, name=f"a{i}")
    issued = api.call("GET", "/api/integrations", query={"limit": "1"}).body["next_token"]
    assert api.call("GET", "/api/integrations", query={"next_token": issued}).status == 200
    forged = base64.urlsafe_b64encode(b"INTEGRATION#int_00000000000000000000").decode().rstrip("=")
    body, _, tag = issued.partition(".")
    tampered_tag = tag[:-2] + ("AA" if tag[-2:] != "AA" else "BB")
    for token in (forged, f"{forged}.{tag}", f"{body}.{tampered_tag}", f"{body}."):
        answer = api.call("GET", "/api/integrations", query={"next_token": token})
        assert answer.status == 400, (token, answer.body)
    other_filter = api.call("GET", "/api/integrations", query={"next_token": issued, "integration_type": "payment"})
    assert other_filter.status == 400, "a token is valid only for the filters it was issued for"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("POST", "/api/integrations", {"raw_body": "{not json"}, 400, "bad_request"),
        ("POST", "/api/integrations", {"raw_body": '{"a": 1,}'}, 400, "bad_request"),
        ("GET", "/api/integrations", {"query": {"next_token": "!!!notatoken"}}, 400, "bad_request"),
        ("GET", "/api/integrations", {"query": {"next_token": "QVBJS0VZI2tleV8x"}}, 400, "bad_request"),
        ("GET", "/api/integrations", {"org": None}, 401, "unauthorized"),
        ("GET", "/api/integrations", {"org": None, "auth_error": "invalid_api_key"}, 401, "unauthorized"),
        ("POST", "/api/integrations", {"org": None, "raw_body": "{bad"}, 401, "unauthorized"),
        ("POST", "/api/integrations", {"org": None, "body": {"nonsense": 1}}, 401, "unauthorized"),
        ("GET", "/api/integrations/int_00000000000000000000", {}, 404, "not_found"),
        ("GET", "/api/integrations/..%2F..%2Fetc", {}, 404, "not_found"),
        ("GET", "/api/integrations/" + "x" * 5000, {}, 404, "not_found"),
        ("DELETE", "/api/keys/key_nope", {}, 404, "not_found"),
        (
            "POST",
            "/api/integrations",
            {"raw_body": '{"integration_name": "' + "x" * 300_000 + '"}'},
            413,
            "payload_too_large",
        ),
        ("POST", "/api/integrations", {"body": {}}, 422, "validation_error"),
        ("POST", "/api/integrations", {"raw_body": ""}, 422, "validation_error"),
        ("POST", "/api/integrations", {"body": []}, 422, "validation_error"),
        ("POST", "/api/integrations", {"body": "a string"}, 422, "validation_error"),
        (
            "POST",
            "/api/integrations",
            {"body": {"integration_name": 5, "provider_name": ["stripe"]}},
            422,
            "validation_error",
        ),
        ("GET", "/api/integrations", {"query": {"limit": "0"}}, 422, "validation_error"),
        ("GET", "/api/integrations", {"query": {"limit": "many"}}, 422, "validation_error"),
        ("GET", "/api/integrations", {"query": {"status": "sleeping"}}, 422, "validation_error"),
        ("POST", "/api/keys", {"body": {"name": ""}}, 422, "validation_error"),
    ],
)
def test_every_bad_input_gets_its_status_and_one_error_shape(
    api: ManagementApi, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    response = api.call(method, path, **kwargs)
    assert response.status == status, response.body
    assert set(response.body) == {"error"}
    assert set(response.body["error"]) == {"code", "message", "details"}
    assert response.body["error"]["code"] == code
    assert response.body["error"]["message"]


@pytest.mark.parametrize(
    ("kwargs", "status_with_key", "code"),
    [
        ({"base64_body": b"\xff"}, 400, "bad_request"),
        ({"base64_body": b'{"integration_name": "\xc3\x28"}'}, 400, "bad_request"),
        ({"raw_body": '{"integration_name": "\\ud800"}'}, 400, "bad_request"),
        ({"raw_body": '{"integration_name": NaN}'}, 400, "bad_request"),
        ({"raw_body": "{}", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"raw_body": "", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"raw_body": "a=1", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 415, None),
        ({"raw_body": "{}", "headers": {"content-type": "multipart/form-data; boundary=x"}}, 415, None),
        ({"raw_body": "{}", "headers": {"content-type": "application/json; charset=latin-1"}}, 415, None),
    ],
)
@pytest.mark.parametrize("path", ["/api/integrations", "/api/keys"])
def test_undecodable_bodies_and_foreign_content_types_are_401_without_a_key_and_400_or_415_with_one(
    api: ManagementApi,
    capsys: pytest.CaptureFixture[str],
    path: str,
    kwargs: dict[str, Any],
    status_with_key: int,
    code: str | None,
) -> None:
    """Request validation used to meet these before the key check, and answered 500."""
    stranger = api.call("POST", path, org=None, **kwargs)
    assert stranger.status == 401 and stranger.body["error"]["code"] == "unauthorized"
    member = api.call("POST", path, **kwargs)
    assert member.status == status_with_key, member.body
    assert set(member.body["error"]) == {"code", "message", "details"}
    assert member.body["error"]["code"] == (code or "unsupported_media_type")
    assert "Traceback" not in capsys.readouterr().out
    assert api.call("GET", "/api/integrations").body["items"] == [], "nothing was written"


def test_a_json_body_with_charset_utf8_is_accepted(api: ManagementApi) -> None:
    response = api.call(
        "POST", "/api/keys", raw_body='{"name": "ci"}', headers={"content-type": "application/json; charset=UTF-8"}
    )
    assert response.status == 201, response.body


def test_422_names_each_invalid_field(api: ManagementApi) -> None:
    response = api.call(
        "POST",
        "/api/integrations",
        body={
            "integration_name": "",
            "provider_name": "stripe",
            "base_url": "not a url",
            "sync_config": {"batch_size": 0, "sync_frequency": 1, "wat": 1},
            "credentials": {"credential_type": "api_key", "api_key": STRIPE_KEY, "bogus": STRIPE_KEY},
        },
    )
    assert response.status == 422
    fields = {f["field"] for f in response.body["error"]["details"]["fields"]}
    assert fields == {
        "integration_name",
        "sync_config.batch_size",
        "sync_config.sync_frequency",
        "sync_config.wat",
        "credentials.bogus",
    }
    assert STRIPE_KEY not in response.raw


def test_patch_that_breaks_cross_field_rules_is_422_and_changes_nothing(api: ManagementApi) -> None:
    integration_id = create(api)["integration_id"]
    path = f"/api/integrations/{integration_id}"
    response = api.call("PATCH", path, body={"integration_type": "crm"})
    assert response.status == 422
    assert response.body["error"]["code"] == "validation_error"
    bad_sync = api.call("PATCH", path, body={"sync_config": {"batch_size": 0}})
    assert bad_sync.status == 422
    assert [f["field"] for f in bad_sync.body["error"]["details"]["fields"]] == ["sync_config.batch_size"]
    assert api.call("PATCH", path, body={"credentials": {"credential_type": "api_key", "api_key": "x"}}).status == 422
    after = api.call("GET", path).body
    assert after["integration_type"] == "payment" and after["version"] == 1


def test_openapi_and_docs_are_public(api: ManagementApi) -> None:
    spec = api.call("GET", "/api/openapi.json", org=None)
    assert spec.status == 200
    paths = spec.body["paths"]
    assert {
        "/api/integrations",
        "/api/integrations/{integration_id}",
        "/api/integrations/{integration_id}/credentials",
        "/api/keys",
        "/api/keys/{key_id}",
    } <= set(paths)
    assert "IntegrationCreateRequest" in spec.body["components"]["schemas"]
    docs = api.call("GET", "/api/docs", org=None)
    assert docs.status == 200 and "<html" in docs.raw.lower()


def test_changes_publish_business_metrics(api: ManagementApi, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    integration_id = create(api)["integration_id"]
    api.call("DELETE", f"/api/integrations/{integration_id}")
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {m["Name"] for blob in emitted for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"IntegrationsCreated", "IntegrationsDeleted"} <= names
    assert all(blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ChurnGuardTest" for blob in emitted)


@pytest.mark.parametrize(
    "source",
    ["public.customers; DROP TABLE customers", 'public."customers"--', "customers WHERE 1=1", "a.b.c.d"],
)
def test_a_table_name_with_an_injection_attempt_is_422_at_registration(api: ManagementApi, source: str) -> None:
    response = api.call(
        "POST",
        "/api/integrations",
        body={
            "integration_name": "Warehouse",
            "provider_name": "postgresql",
            "base_url": "db.internal:5432",
            "entity_mappings": {"customer": source},
            "credentials": {"credential_type": "basic_auth", "username": "u", "password": "p"},
        },
    )
    assert response.status == 422, response.body
    assert response.body["error"]["code"] == "validation_error"
    assert any("entity_mappings" in f["field"] for f in response.body["error"]["details"]["fields"])
    assert source not in response.raw, "the offending value is not echoed"
    assert api.call("GET", "/api/integrations").body["items"] == []


def test_a_method_a_path_does_not_serve_is_405_with_allow_and_an_unknown_path_is_404(api: ManagementApi) -> None:
    """Both reach the function through the API's $default route."""
    wrong = api.call("PUT", "/api/integrations", body={})
    assert wrong.status == 405, wrong.body
    assert wrong.headers["Allow"] == "GET, POST"
    assert wrong.body["error"]["code"] == "method_not_allowed"
    assert wrong.body["error"]["details"] == {"allowed": ["GET", "POST"]}
    item = api.call("POST", "/api/integrations/int_00000000000000000000")
    assert item.status == 405 and item.headers["Allow"] == "DELETE, GET, PATCH"
    assert api.call("GET", "/api/nothing-here").status == 404
    assert api.call("PUT", "/api/integrations", org=None).status == 401, "the key is checked first"


def test_sync_pace_defaults_to_the_provider_and_a_null_patch_returns_to_it(api: ManagementApi) -> None:
    created = create(api, sync_config={"requests_per_minute": 60})
    path = f"/api/integrations/{created['integration_id']}"
    assert created["integration"]["sync_config"]["requests_per_minute"] == 60
    patched = api.call("PATCH", path, body={"sync_config": {"requests_per_minute": None}})
    assert patched.status == 200, patched.body
    assert patched.body["sync_config"]["requests_per_minute"] is None
    assert create(api, name="Fresh")["integration"]["sync_config"]["requests_per_minute"] is None


def test_a_delete_is_not_refused_because_the_platform_updated_the_integration_meanwhile(
    api: ManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync's finalize bumps the integration's version (last_sync_at, totals) right after the
    run shows succeeded; a DELETE reading the integration just before answered 409."""
    from churnguard.store.integrations import IntegrationStore

    integration_id = create(api)["integration_id"]
    real_delete = IntegrationStore.delete
    raced = {"done": False}

    def delete_after_a_concurrent_update(store: IntegrationStore, config: Any) -> None:
        if not raced["done"]:
            raced["done"] = True
            current = store.get(config.organization_id, config.integration_id)
            store.update(current, current.model_copy(update={"version": current.version + 1}))
        real_delete(store, config)

    monkeypatch.setattr(IntegrationStore, "delete", delete_after_a_concurrent_update)
    assert api.call("DELETE", f"/api/integrations/{integration_id}").status == 204
    assert api.call("GET", f"/api/integrations/{integration_id}").status == 404


def test_the_canonical_schemas_are_served_by_version(api: ManagementApi) -> None:
    index = api.call("GET", "/api/schemas")
    assert index.status == 200 and index.body["schema_version"] == 2
    entities = {e["entity"]: e for e in index.body["entities"]}
    assert {"customer", "subscription", "contact", "lead", "company", "deal", "ticket", "event"} <= set(entities)
    assert entities["lead"]["description"].startswith("A prospect")
    subscription = api.call("GET", entities["subscription"]["schema_url"])
    assert subscription.status == 200 and subscription.body["x-schema-version"] == 2
    assert subscription.body["properties"]["mrr_minor"]["type"] == "integer"
    missing = api.call("GET", "/api/schemas/opportunity")
    assert missing.status == 404 and missing.body["error"]["code"] == "not_found"
    assert api.call("GET", "/api/schemas", org=None).status == 401


def test_readiness_is_public_and_says_which_dependency_does_not_answer(
    api: ManagementApi, lake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from churnguard.api import dashboard
    from tests.support.sync import BUCKET

    queue_url = boto3.client("sqs").create_queue(QueueName="webhook-events")["QueueUrl"]
    monkeypatch.setenv("WEBHOOK_QUEUE_URL", queue_url)
    dashboard.probe.cache_clear()
    ready = api.call("GET", "/api/dashboard/health", org=None)
    assert ready.status == 200
    assert ready.body == {"status": "ready", "checks": {"dynamodb": "ok", "s3": "ok", "queue": "ok"}}

    lake.delete_bucket(Bucket=BUCKET)
    dashboard.probe.cache_clear()
    degraded = api.call("GET", "/api/dashboard/health", org=None)
    assert degraded.status == 503
    assert degraded.body == {"status": "degraded", "checks": {"dynamodb": "ok", "s3": "unreachable", "queue": "ok"}}
    assert BUCKET not in degraded.raw and "org_" not in degraded.raw, "it names no resource and no organisation"

    spec = api.call("GET", "/api/openapi.json", org=None).body
    operation = spec["paths"]["/api/dashboard/health"]["get"]
    assert operation["security"] == [] and "401" not in operation["responses"]
