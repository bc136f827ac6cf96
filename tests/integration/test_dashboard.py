"""The dashboard API against real syncs of PostgreSQL, and its cost in DynamoDB calls."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from churnguard.connectors.base import SourceError
from churnguard.runs import SyncRun, SyncStatus
from tests.integration.test_sync_postgres import create_customers, register
from tests.support.dashboard_data import seed_organization
from tests.support.sync import ORG, ref, sync


def failed_sync(engine: Any, integration_id: str) -> SyncRun:
    """A run that fails as the state machine fails it: the step raises, Catch calls finalize."""
    run = engine.start_sync(ORG, integration_id)
    try:
        engine.prepare(ref(run))
        engine.extract_step(ref(run), 600, 1_000_000)
    except SourceError as exc:
        return engine.finalize(ref(run), error=f"SourceError: {exc.message}")
    raise AssertionError("the sync was expected to fail")


def test_a_synced_integration_shows_healthy_with_its_run_records_and_days(
    api: Any, harness: Any, postgres: Any
) -> None:
    create_customers(postgres, rows=500)
    config = register(harness, postgres, name="crm db", status="active")
    run = sync(harness.engine(), config.integration_id)
    assert run.status is SyncStatus.SUCCEEDED

    listed = api.call("GET", "/api/dashboard/integrations", org=ORG)
    assert listed.status == 200
    (item,) = listed.body["items"]
    assert item["integration_id"] == config.integration_id
    assert item["health"]["state"] == "healthy" and item["health"]["score"] == 100
    assert item["last_sync_status"] == "succeeded" and item["records_last_run"] == 500
    assert item["error_rate"] == 0.0 and item["circuit_breaker"] == "closed"
    assert item["next_sync_at"] is not None
    assert {c["name"] for c in item["health"]["components"]} >= {"freshness", "success", "authentication"}

    detail = api.call("GET", f"/api/dashboard/integration/{config.integration_id}", org=ORG)
    assert detail.status == 200
    assert [r["sync_id"] for r in detail.body["recent_runs"]] == [run.sync_id]
    assert detail.body["recent_runs"][0]["records_written"] == 500
    assert detail.body["entities"]["customer"]["records_last_run"] == 500
    today = datetime.now(UTC).date().isoformat()
    assert detail.body["days"][-1]["day"] == today
    assert detail.body["days"][-1]["records_written"] == 500
    assert detail.body["days"][-1]["syncs_succeeded"] == 1
    assert len(detail.body["days"]) == 30
    assert detail.body["running"] is None

    metrics = api.call("GET", "/api/dashboard/metrics", org=ORG)
    assert metrics.status == 200
    assert metrics.body["syncs_24h"] == {"succeeded": 1, "failed": 0, "cancelled": 0, "running": 0}
    assert metrics.body["records_written_24h"] == 500 and metrics.body["records_written_7d"] == 500
    assert metrics.body["integrations_by_health"] == {"healthy": 1}
    assert metrics.body["health_score"] == 100


def test_a_failing_integration_turns_red_with_its_error(api: Any, harness: Any, postgres: Any) -> None:
    create_customers(postgres, rows=10)
    healthy = register(harness, postgres, name="good")
    broken = register(harness, postgres, mappings={"customer": f"{postgres.name}.missing"}, name="bad")
    engine = harness.engine()
    sync(engine, healthy.integration_id)
    for _ in range(3):
        failed_sync(engine, broken.integration_id)

    items = {i["integration_name"]: i for i in api.call("GET", "/api/dashboard/integrations", org=ORG).body["items"]}
    bad = items["bad"]
    assert bad["last_sync_status"] == "failed" and "does not exist" in bad["last_error"]
    assert bad["consecutive_failures"] == 3 and bad["error_rate"] == 1.0
    assert bad["health"]["state"] in {"degraded", "failing"} and bad["health"]["score"] < 80
    success = next(c for c in bad["health"]["components"] if c["name"] == "success")
    assert success["score"] == 0.0 and "the last 3 failed" in success["detail"]
    assert items["good"]["health"]["state"] == "healthy"

    metrics = api.call("GET", "/api/dashboard/metrics", org=ORG).body
    assert metrics["syncs_24h"]["failed"] == 3 and metrics["syncs_24h"]["succeeded"] == 1
    assert metrics["health_score"] < 100


def test_another_organisations_integration_is_not_found_on_the_dashboard(api: Any, harness: Any, postgres: Any) -> None:
    create_customers(postgres, rows=10)
    config = register(harness, postgres)
    sync(harness.engine(), config.integration_id)

    assert api.call("GET", f"/api/dashboard/integration/{config.integration_id}", org="org_other").status == 404
    assert api.call("GET", "/api/dashboard/integration/not-an-id!", org=ORG).status == 404
    assert api.call("GET", "/api/dashboard/integrations", org="org_other").body["items"] == []
    other = api.call("GET", "/api/dashboard/metrics", org="org_other").body
    assert other["syncs_24h"]["succeeded"] == 0 and other["records_written_24h"] == 0
    assert api.call("GET", "/api/dashboard/integrations", org=None).status == 401


def test_a_running_sync_shows_its_progress(api: Any, harness: Any, postgres: Any) -> None:
    create_customers(postgres, rows=1_000)
    config = register(harness, postgres, sync_config={"batch_size": 100})
    engine = harness.engine(flush_records=100)
    run = engine.start_sync(ORG, config.integration_id)
    engine.prepare(ref(run))
    engine.extract_step(ref(run), 600, 300)

    detail = api.call("GET", f"/api/dashboard/integration/{config.integration_id}", org=ORG).body
    running = detail["running"]
    assert running["sync_id"] == run.sync_id
    assert running["estimated_total"] == 1_000
    assert 0 < running["percent"] < 100
    listed = api.call("GET", "/api/dashboard/integrations", org=ORG).body["items"][0]
    assert listed["running_sync_id"] == run.sync_id
    assert api.call("GET", "/api/dashboard/metrics", org=ORG).body["syncs_24h"]["running"] == 1


# ---------------------------------------------------------------- cost


@pytest.mark.timeout(600)
def test_the_integrations_list_of_200_integrations_and_10000_runs_costs_a_bounded_number_of_calls(
    aws: dict[str, Any], api: Any
) -> None:
    from churnguard import aws as aws_clients

    seed_organization(aws["dynamodb"], aws["table"], "org_big", integrations=200, runs_each=50)
    calls: list[str] = []
    client = aws_clients.client("dynamodb")
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))

    listed = api.call("GET", "/api/dashboard/integrations", org="org_big")
    assert listed.status == 200
    assert len(listed.body["items"]) == 200
    assert all(len(item["health"]["components"]) == 7 for item in listed.body["items"])
    assert len(calls) <= 10, calls

    calls.clear()
    metrics = api.call("GET", "/api/dashboard/metrics", org="org_big")
    assert metrics.status == 200 and sum(metrics.body["integrations_by_status"].values()) == 200
    assert len(calls) <= 10, calls

    calls.clear()
    some = listed.body["items"][17]["integration_id"]
    detail = api.call("GET", f"/api/dashboard/integration/{some}", org="org_big")
    assert detail.status == 200 and len(detail.body["recent_runs"]) == 20
    assert len(calls) <= 12, calls
    assert "Scan" not in calls


def test_the_dashboard_routes_are_documented_and_need_a_key(api: Any) -> None:
    document = json.loads(api.call("GET", "/api/openapi.json", org=None).raw)
    for path in (
        "/api/dashboard/metrics",
        "/api/dashboard/integrations",
        "/api/dashboard/integration/{integration_id}",
        "/api/dashboard/alerts",
        "/api/dashboard/alerts/{alert_id}/acknowledge",
        "/api/dashboard/alert-settings",
    ):
        assert path in document["paths"], path
        for operation in document["paths"][path].values():
            assert operation.get("security") != []
    assert api.call("GET", "/api/dashboard/metrics", org=None).status == 401


def test_the_page_and_its_assets_are_served_with_a_strict_policy_and_no_key(api: Any) -> None:
    page = api.call("GET", "/dashboard", org=None)
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert "<script>" not in page.raw and "style=" not in page.raw and "on" + "click" not in page.raw
    assert 'src="/dashboard/assets/app.js"' in page.raw and "http" not in page.raw.replace("http-equiv", "")
    script = api.call("GET", "/dashboard/assets/app.js", org=None)
    assert script.status == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert "innerHTML" not in script.raw and "eval(" not in script.raw
    assert api.call("GET", "/dashboard/assets/app.css", org=None).status == 200
    assert api.call("GET", "/dashboard/assets/secrets.txt", org=None).status == 404
    assert api.call("GET", "/dashboard/assets/..%2Fservice.py", org=None).status == 404


def test_a_failed_run_shows_the_error_message_not_the_lambda_stack_trace(api: Any, harness: Any, postgres: Any) -> None:
    """The state machine's Catch passes the task's error as Lambda's JSON, stack trace included."""
    from types import SimpleNamespace

    from churnguard.sync.tasks import run_task

    config = register(harness, postgres, mappings={"customer": f"{postgres.name}.missing"})
    engine = harness.engine()
    run = engine.start_sync(ORG, config.integration_id)
    cause = json.dumps(
        {
            "errorMessage": "table x.missing does not exist",
            "errorType": "SourceError",
            "requestId": "1db58886",
            "stackTrace": ['  File "/var/task/app.py", line 44, in lambda_handler\n'],
        }
    )
    event = {
        "action": "fail",
        "ref": {"organization_id": ORG, "integration_id": config.integration_id, "sync_id": run.sync_id},
        "error": {"Error": "SourceError", "Cause": cause},
    }
    run_task(event, lambda: 900_000, lambda: SimpleNamespace(engine=engine), lambda _: None)  # type: ignore[arg-type,return-value]

    (item,) = api.call("GET", "/api/dashboard/integrations", org=ORG).body["items"]
    assert item["last_error"] == "SourceError: table x.missing does not exist"
    detail = api.call("GET", f"/api/dashboard/integration/{config.integration_id}", org=ORG).body
    assert detail["recent_runs"][0]["error"] == "SourceError: table x.missing does not exist"
    stored = harness.syncs.get(ORG, config.integration_id, run.sync_id)
    assert "stackTrace" not in stored.model_dump_json() and "/var/task" not in stored.model_dump_json()


def test_a_connection_is_tested_before_the_integration_is_saved(
    api: Any, aws: dict[str, Any], harness: Any, postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from churnguard.api import syncs

    monkeypatch.setenv("SYNC_STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:unused")
    syncs.launcher.cache_clear()
    create_customers(postgres, rows=5)
    url = postgres.url
    body = {
        "integration_name": "Draft",
        "provider_name": "postgresql",
        "base_url": url.address,
        "entity_mappings": {"customer": f"{postgres.name}.customers"},
        "credentials": {
            "credential_type": "basic_auth",
            "username": url.user,
            "password": url.password or "trust-auth-ignores-this",
            "custom_fields": {"database": url.database},
        },
    }
    ok = api.call("POST", "/api/integrations/test-connection", org=ORG, body=body)
    assert ok.status == 200, ok.body
    assert ok.body["status"] == "ok" and ok.body["ok"] is True
    missing = api.call(
        "POST",
        "/api/integrations/test-connection",
        org=ORG,
        body={**body, "entity_mappings": {"customer": f"{postgres.name}.missing"}},
    )
    assert missing.status == 200 and missing.body["status"] == "missing_object"
    assert "does not exist" in json.dumps(missing.body)
    assert api.call("GET", "/api/integrations", org=ORG).body["items"] == [], "nothing saved"
    items = aws["dynamodb"].scan(TableName=aws["table"])["Items"]
    assert not [i for i in items if i["sk"]["S"].startswith(("CIRCUIT#", "CREDENTIALS#", "INTEGRATION"))]

    no_credentials = {k: v for k, v in body.items() if k != "credentials"}
    refused = api.call("POST", "/api/integrations/test-connection", org=ORG, body=no_credentials)
    assert refused.status == 422 and refused.body["error"]["details"]["fields"][0]["field"] == "credentials"
    other = api.call("POST", "/api/integrations/test-connection", org=ORG, body={**body, "organization_id": "org_x"})
    assert other.status == 403
    password = body["credentials"]["password"]  # type: ignore[index]
    assert password not in ok.raw and password not in missing.raw
