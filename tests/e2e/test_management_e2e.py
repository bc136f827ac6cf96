"""The management API over real HTTP through the local cloud: gateway, authorizer, handler, moto."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import requests

from tests.e2e.conftest import REPO, Tenant

SECRET = "e2e-secret-stripe-key-do-not-leak-4321"


def stripe(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "integration_name": name,
        "provider_name": "stripe",
        "credentials": {"credential_type": "api_key", "api_key": SECRET},
        **extra,
    }


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_integration_lifecycle_over_http(new_tenant: Any) -> None:
    tenant: Tenant = new_tenant(unique("org_life"))
    created = tenant.request("POST", "/api/integrations", json=stripe("Billing"))
    assert created.status_code == 201, created.text
    assert created.headers["content-type"].startswith("application/json")
    integration_id = created.json()["integration_id"]
    path = f"/api/integrations/{integration_id}"

    assert tenant.request("GET", path).json()["integration_name"] == "Billing"
    patched = tenant.request("PATCH", path, json={"status": "active", "sync_config": {"sync_frequency": 900}})
    assert patched.status_code == 200
    assert patched.json()["sync_config"]["sync_frequency"] == 900
    replaced = tenant.request(
        "PUT", f"{path}/credentials", json={"credential_type": "api_key", "api_key": "rotated-key-0000000000009999"}
    )
    assert replaced.json()["credentials"]["fields_set"] == {"api_key": "****9999"}
    listed = tenant.request("GET", "/api/integrations", params={"status": "active"}).json()
    assert [i["integration_id"] for i in listed["items"]] == [integration_id]
    assert tenant.request("POST", "/api/integrations", json=stripe("billing")).status_code == 409
    deleted = tenant.request("DELETE", path)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert tenant.request("GET", path).status_code == 404
    for response in (created, patched, replaced):
        assert SECRET not in response.text


def test_authentication_through_the_authorizer(new_tenant: Any, management_url: str) -> None:
    tenant: Tenant = new_tenant(unique("org_auth"))
    anonymous = requests.get(f"{management_url}/api/integrations", timeout=30)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
    forged = requests.get(
        f"{management_url}/api/integrations", headers={"Authorization": "Bearer cg_" + "x" * 43}, timeout=30
    )
    assert forged.status_code == 401
    assert "revoked" in forged.json()["error"]["message"]

    second = tenant.request("POST", "/api/keys", json={"name": "second"}).json()
    assert tenant.request("DELETE", f"/api/keys/{second['key_id']}").json()["status"] == "revoked"
    revoked = requests.get(
        f"{management_url}/api/integrations", headers={"Authorization": f"Bearer {second['api_key']}"}, timeout=30
    )
    assert revoked.status_code == 401
    assert tenant.request("GET", "/api/integrations").status_code == 200, "the other key still works"


def test_tenants_cannot_see_or_touch_each_other(new_tenant: Any) -> None:
    alice: Tenant = new_tenant(unique("org_alice"))
    bob: Tenant = new_tenant(unique("org_bob"))
    bobs = bob.request("POST", "/api/integrations", json=stripe("Bob billing")).json()["integration_id"]
    missing = alice.request("GET", "/api/integrations/int_00000000000000000000")
    for method, body in (("GET", None), ("PATCH", {"tags": ["mine"]}), ("DELETE", None)):
        response = alice.request(method, f"/api/integrations/{bobs}", json=body)
        assert response.status_code == 404
        assert response.json() == {
            **missing.json(),
            "error": {**missing.json()["error"], "details": {"integration_id": bobs}},
        }
    assert alice.request("GET", "/api/integrations").json()["items"] == []
    claimed = alice.request("POST", "/api/integrations", json=stripe("sneaky", organization_id=bob.organization_id))
    assert claimed.status_code == 403
    assert bob.request("GET", f"/api/integrations/{bobs}").json()["tags"] == []


def test_limits_and_errors_keep_one_shape(new_tenant: Any) -> None:
    tenant: Tenant = new_tenant(unique("org_err"))
    too_big = tenant.request(
        "POST",
        "/api/integrations",
        data=json.dumps(stripe("x" * 300_000)),
        headers={"content-type": "application/json"},
    )
    assert too_big.status_code == 413
    malformed = tenant.request("POST", "/api/integrations", data="{oops", headers={"content-type": "application/json"})
    assert malformed.status_code == 400
    invalid = tenant.request("POST", "/api/integrations", json={"provider_name": "oracle"})
    assert invalid.status_code == 422
    assert {f["field"] for f in invalid.json()["error"]["details"]["fields"]} == {"integration_name", "provider_name"}
    for response in (too_big, malformed, invalid):
        assert set(response.json()["error"]) == {"code", "message", "details"}


def test_docs_are_public(management_url: str) -> None:
    spec = requests.get(f"{management_url}/api/openapi.json", timeout=30)
    assert spec.status_code == 200
    assert "/api/integrations/{integration_id}/credentials" in spec.json()["paths"]
    docs = requests.get(f"{management_url}/api/docs", timeout=30)
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


def test_admin_command_bootstraps_a_key_against_the_local_cloud(
    cloud: Any, management_url: str, tmp_path: Path
) -> None:
    state = tmp_path / "dev.json"
    state.write_text(
        json.dumps({"aws_endpoint_url": cloud.aws_endpoint_url, "region": cloud.region, "resources": cloud.resources})
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "shared")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "churnguard.admin",
            "create-api-key",
            "--org",
            "org_123",
            "--local",
            "--state-file",
            str(state),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("cg_")
    response = requests.get(f"{management_url}/api/keys", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code == 200
    assert len(response.json()["items"]) == 1

    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "churnguard.admin",
            "create-api-key",
            "--org",
            "org_1",
            "--local",
            "--state-file",
            str(tmp_path / "none.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2
    assert "make dev" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_readiness_is_public_through_the_gateway(management_url: str) -> None:
    """No key, and the authorizer is not asked: a load balancer can poll it."""
    answer = requests.get(f"{management_url}/api/dashboard/health", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "ready", "checks": {"dynamodb": "ok", "s3": "ok", "queue": "ok"}}
    assert answer.headers["Cache-Control"] == "no-store"


def test_the_stack_has_an_operations_dashboard_of_every_function_queue_workflow_and_alarm(cloud: Any) -> None:
    cloudwatch = cloud.boto3_client("cloudwatch")
    name = cloud.resources["OperationsDashboard"]["physical_id"]
    body = json.loads(cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"])
    metrics = [line for widget in body["widgets"] for line in widget["properties"].get("metrics", [])]
    functions = {line[3] for line in metrics if line[:2] == ["AWS/Lambda", "Errors"]}
    assert functions == {
        cloud.resources[f]["physical_id"]
        for f in (
            "ManagementFunction",
            "AuthorizerFunction",
            "AlertsFunction",
            "SyncTaskFunction",
            "WebhookReceiverFunction",
            "EventProcessorFunction",
            "StreamIngestFunction",
            "StreamProcessorFunction",
            "StreamConsumerFunction",
        )
    }
    assert ["AWS/States", "ExecutionsTimedOut"] in [line[:2] for line in metrics]
    (alarm_widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    every_alarm = {a["AlarmArn"] for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    assert set(alarm_widget["properties"]["alarms"]) == every_alarm, "the widget shows every alarm"
