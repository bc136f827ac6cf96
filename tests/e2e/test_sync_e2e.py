"""A PostgreSQL sync through everything: HTTP → management function → Step Functions (moto's
interpreter really executing the state machine) → sync task function → the S3 data lake.

Needs the PostgreSQL server on 127.0.0.1 (CHURNGUARD_TEST_POSTGRES_URL); .ci/run starts it.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import psycopg2
import pytest

from tests.e2e.conftest import Tenant, register_postgres
from tests.e2e.test_webhooks_e2e import wait_until
from tests.support.sync import POSTGRES_URL, DatabaseUrl

ROWS = 2_500
SHARED_TIMESTAMP = "2026-01-01T00:00:00+00:00"


@pytest.fixture
def customers_table() -> Iterator[tuple[Any, str]]:
    url = DatabaseUrl.parse(POSTGRES_URL, 5432)
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.user, password=url.password, dbname=url.database)
    conn.autocommit = True
    schema = f"e2e_{uuid.uuid4().hex[:8]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
        cur.execute(
            f"CREATE TABLE {schema}.customers (id integer PRIMARY KEY, email text NOT NULL, "
            "mrr numeric(12,2) NOT NULL, updated_at timestamptz NOT NULL)"
        )
        # Most rows share one timestamp, so pages must break ties on the primary key.
        cur.execute(
            f"INSERT INTO {schema}.customers SELECT g, 'c' || g || '@example.com', g * 1.25, "
            "CASE WHEN g %% 10 = 0 THEN %s::timestamptz + g * interval '1 second' ELSE %s::timestamptz END "
            "FROM generate_series(1, %s) g",
            (SHARED_TIMESTAMP, SHARED_TIMESTAMP, ROWS),
        )
    try:
        yield conn, schema
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


def wait_for_sync(tenant: Tenant, integration_id: str, sync_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = tenant.request("GET", f"/api/integrations/{integration_id}/sync/status").json()
        if status["sync_id"] == sync_id and status["status"] in {"succeeded", "failed", "cancelled"}:
            return status  # type: ignore[no-any-return]
        time.sleep(0.3)
    raise AssertionError(f"sync {sync_id} did not finish within {timeout} s")


def lake_ids(cloud: Any, organization_id: str, sync_id: str) -> list[int]:
    s3 = cloud.boto3_client("s3")
    bucket = cloud.resources["DataLakeBucket"]["physical_id"]
    prefix = f"org={organization_id}/provider=postgresql/entity=customer/"
    ids: list[int] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if sync_id not in obj["Key"]:
                continue
            body = gzip.decompress(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            ids.extend(int(json.loads(line)["record_id"]) for line in body.splitlines() if line)
    return ids


def state_entered(cloud: Any, sync_id: str) -> list[str]:
    """The states the sync's execution entered, in order (from its execution history)."""
    sfn = cloud.boto3_client("stepfunctions")
    arn = cloud.resources["SyncStateMachine"]["physical_id"]
    execution_arn = arn.replace(":stateMachine:", ":execution:") + f":{sync_id}"
    events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]


def test_a_transient_failure_is_retried_by_the_state_machine_and_every_row_lands_once(
    cloud: Any, new_tenant: Any, customers_table: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    from churnguard.connectors.base import CheckStatus, TransientSourceError
    from churnguard.sync.engine import SyncEngine

    slept: list[float] = []
    monkeypatch.setattr(retrier_decl, "time", SimpleNamespace(sleep=slept.append))
    real_extract = SyncEngine.extract_step
    calls = {"n": 0}

    def flaky_extract(self: SyncEngine, ref: Any, budget_seconds: float, record_budget: int) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransientSourceError(CheckStatus.UNREACHABLE, "the database went away for a moment")
        return real_extract(self, ref, budget_seconds, record_budget)

    monkeypatch.setattr(SyncEngine, "extract_step", flaky_extract)
    _, schema = customers_table
    tenant: Tenant = new_tenant(f"org_retry_{uuid.uuid4().hex[:6]}")
    integration_id = register_postgres(tenant, {"customer": f"{schema}.customers"}, batch_size=300)
    sync_id = tenant.request("POST", f"/api/integrations/{integration_id}/sync").json()["sync_id"]

    assert wait_for_sync(tenant, integration_id, sync_id)["status"] == "succeeded"
    assert sorted(lake_ids(cloud, tenant.organization_id, sync_id)) == list(range(1, ROWS + 1))
    assert len(slept) == 1, "one back-off before the retry"
    assert 0 <= slept[0] <= 5, "full jitter: somewhere between 0 and the first interval"
    states = state_entered(cloud, sync_id)
    assert states == ["Prepare", "IsDone", "Extract", "IsDone", "Finalize"], states


def test_full_then_incremental_sync_through_the_state_machine(
    cloud: Any, new_tenant: Any, customers_table: tuple[Any, str], capsys: pytest.CaptureFixture[str]
) -> None:
    conn, schema = customers_table
    tenant: Tenant = new_tenant(f"org_sync_{uuid.uuid4().hex[:6]}")
    integration_id = register_postgres(tenant, {"customer": f"{schema}.customers"}, batch_size=300)

    check = tenant.request("POST", f"/api/integrations/{integration_id}/test-connection")
    assert check.status_code == 200
    assert check.json()["check"]["status"] == "ok"

    started = tenant.request("POST", f"/api/integrations/{integration_id}/sync")
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "started"
    sync_id = started.json()["sync_id"]
    second = tenant.request("POST", f"/api/integrations/{integration_id}/sync")
    assert second.status_code == 409

    final = wait_for_sync(tenant, integration_id, sync_id)
    assert final["status"] == "succeeded", final
    assert final["records_processed"] == ROWS
    assert final["progress"] == 1.0
    ids = lake_ids(cloud, tenant.organization_id, sync_id)
    assert len(ids) == ROWS
    assert set(ids) == set(range(1, ROWS + 1))
    # The finished run is counted in the platform's metrics (the CloudWatch dashboard's records).
    emitted: list[dict[str, Any]] = []

    def counted() -> bool:
        emitted.extend(json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line)
        return any(m.get("RecordsWritten") == [float(ROWS)] and m.get("RecordsRejected") == [0.0] for m in emitted)

    wait_until(counted, "the finished sync's records in the metrics", timeout=30)

    with conn.cursor() as cur:
        cur.execute(f"UPDATE {schema}.customers SET mrr = mrr + 1, updated_at = now() WHERE id <= 40")
        cur.execute(
            f"INSERT INTO {schema}.customers SELECT g, 'n' || g || '@example.com', 9.99, now() "
            "FROM generate_series(%s, %s) g",
            (ROWS + 1, ROWS + 25),
        )
    incremental = tenant.request("POST", f"/api/integrations/{integration_id}/sync", json={"mode": "incremental"})
    assert incremental.status_code == 202
    second_id = incremental.json()["sync_id"]
    assert wait_for_sync(tenant, integration_id, second_id)["status"] == "succeeded"
    changed = lake_ids(cloud, tenant.organization_id, second_id)
    assert sorted(changed) == [*range(1, 41), *range(ROWS + 1, ROWS + 26)]

    history = tenant.request("GET", f"/api/integrations/{integration_id}/syncs").json()["items"]
    assert [run["sync_id"] for run in history] == [second_id, sync_id]
    assert [run["progress"]["records_written"] for run in history] == [65, ROWS]
    cancel = tenant.request("POST", f"/api/integrations/{integration_id}/sync/cancel")
    assert cancel.status_code == 409, "nothing is running to cancel"


def test_integrations_get_a_schedule_that_follows_them(cloud: Any, new_tenant: Any) -> None:
    tenant: Tenant = new_tenant(f"org_sched_{uuid.uuid4().hex[:6]}")
    body = {
        "integration_name": "Scheduled",
        "provider_name": "postgresql",
        "base_url": "127.0.0.1:5432",
        "status": "active",
        "credentials": {"credential_type": "basic_auth", "username": "u", "password": "p"},
        "sync_config": {"sync_frequency": 900},
    }
    integration_id = tenant.request("POST", "/api/integrations", json=body).json()["integration_id"]
    scheduler = cloud.boto3_client("scheduler")
    group = cloud.resources["SyncScheduleGroup"]["physical_id"]
    name = f"sync-{integration_id}"

    schedule = scheduler.get_schedule(Name=name, GroupName=group)
    assert schedule["ScheduleExpression"] == "rate(15 minutes)"
    assert schedule["State"] == "ENABLED"
    assert json.loads(schedule["Target"]["Input"])["integration_id"] == integration_id

    tenant.request("PATCH", f"/api/integrations/{integration_id}", json={"status": "paused"})
    assert scheduler.get_schedule(Name=name, GroupName=group)["State"] == "DISABLED"
    tenant.request("PATCH", f"/api/integrations/{integration_id}", json={"sync_config": {"sync_mode": "real_time"}})
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(Name=name, GroupName=group)

    # Every provider has a connector: a SaaS integration is scheduled too, disabled until active,
    # and a sync without credentials is refused.
    stripe = tenant.request(
        "POST", "/api/integrations", json={"integration_name": "Billing", "provider_name": "stripe"}
    ).json()["integration_id"]
    assert scheduler.get_schedule(Name=f"sync-{stripe}", GroupName=group)["State"] == "DISABLED"
    assert tenant.request("POST", f"/api/integrations/{stripe}/sync").status_code == 422
    assert tenant.request("DELETE", f"/api/integrations/{stripe}").status_code == 204
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(Name=f"sync-{stripe}", GroupName=group)


def test_one_organisations_failing_syncs_do_not_hold_back_another_organisations(
    cloud: Any, new_tenant: Any, customers_table: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Syncs to an unreachable host used to retry inside the sync task for minutes, holding it
    while other organisations' syncs waited. Now a failing step returns at once and waits in
    the state machine's Retry (held here until the test lets it go), and the organisation may
    run only MaxConcurrentSyncsPerOrganization (2 in this cloud) syncs at once."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    release = threading.Event()
    monkeypatch.setattr(retrier_decl, "time", SimpleNamespace(sleep=lambda _seconds: release.wait(120)))
    failing: Tenant = new_tenant(f"org_down_{uuid.uuid4().hex[:6]}")
    unreachable = {
        "provider_name": "postgresql",
        "base_url": "127.0.0.1:1",  # a closed local port: refused at once
        "status": "active",
        "entity_mappings": {"customer": "public.customers"},
        "credentials": {
            "credential_type": "basic_auth",
            "username": "u",
            "password": "p",
            "custom_fields": {"database": "test"},
        },
    }
    down = [
        failing.request("POST", "/api/integrations", json={**unreachable, "integration_name": f"Down {n}"}).json()[
            "integration_id"
        ]
        for n in range(3)
    ]
    try:
        starts = [failing.request("POST", f"/api/integrations/{integration_id}/sync") for integration_id in down]
        assert [s.status_code for s in starts] == [202, 202, 429], [s.text for s in starts]
        assert starts[2].json()["error"]["code"] == "too_many_syncs"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = [failing.request("GET", f"/api/integrations/{i}/syncs").json()["items"][0] for i in down[:2]]
            if all(run["errors"] for run in runs):
                break
            time.sleep(0.3)
        assert all(run["errors"] and run["status"] == "started" for run in runs), runs

        _, schema = customers_table
        healthy: Tenant = new_tenant(f"org_up_{uuid.uuid4().hex[:6]}")
        integration_id = register_postgres(healthy, {"customer": f"{schema}.customers"}, batch_size=500)
        sync_id = healthy.request("POST", f"/api/integrations/{integration_id}/sync").json()["sync_id"]
        assert wait_for_sync(healthy, integration_id, sync_id)["status"] == "succeeded"
        assert len(lake_ids(cloud, healthy.organization_id, sync_id)) == ROWS
        still = [failing.request("GET", f"/api/integrations/{i}/sync/status").json()["status"] for i in down[:2]]
        assert still == ["started", "started"], "the failing syncs were still retrying all along"
    finally:
        for integration_id in down[:2]:
            failing.request("POST", f"/api/integrations/{integration_id}/sync/cancel")
        release.set()
    for integration_id, start in zip(down[:2], starts, strict=False):
        assert wait_for_sync(failing, integration_id, start.json()["sync_id"])["status"] == "cancelled"
