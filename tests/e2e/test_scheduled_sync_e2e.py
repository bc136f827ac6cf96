"""A scheduled sync end to end: the integration's EventBridge Scheduler schedule, fired by the
local cloud on a manual clock, starts a real sync through the state machine."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest

from churnguard.admin import create_api_key
from local.testing import ManualClock, wait_for
from tests.e2e.conftest import REPO, Tenant, register_postgres
from tests.support.sync import POSTGRES_URL, DatabaseUrl


@pytest.fixture(scope="module")
def clocked_cloud() -> Iterator[tuple[Any, ManualClock]]:
    from local.cloud import LocalCloud

    clock = ManualClock()
    with LocalCloud(
        REPO / "template.yaml",
        ports={"ManagementApi": 0, "WebhookApi": 0},
        moto_port=0,
        stack_name="churnguard-scheduled",
        clock=clock,
    ) as cloud:
        yield cloud, clock


@pytest.fixture
def accounts_table() -> Iterator[str]:
    url = DatabaseUrl.parse(POSTGRES_URL, 5432)
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.user, password=url.password, dbname=url.database)
    conn.autocommit = True
    schema = f"sched_{uuid.uuid4().hex[:8]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
        cur.execute(f"CREATE TABLE {schema}.accounts (id integer PRIMARY KEY, updated_at timestamptz NOT NULL)")
        cur.execute(f"INSERT INTO {schema}.accounts SELECT g, now() FROM generate_series(1, 120) g")
    try:
        yield schema
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


def test_the_schedule_fires_and_the_sync_runs(clocked_cloud: tuple[Any, ManualClock], accounts_table: str) -> None:
    cloud, clock = clocked_cloud
    created = create_api_key(
        table_name=cloud.resources["DataTable"]["physical_id"],
        organization_id="org_scheduled",
        name="e2e",
        dynamodb=cloud.boto3_client("dynamodb"),
    )
    tenant = Tenant("org_scheduled", created.api_key, created.key_id, cloud.api_urls["ManagementApi"])
    integration_id = register_postgres(tenant, {"account": f"{accounts_table}.accounts"}, sync_frequency=300)
    history = f"/api/integrations/{integration_id}/syncs"
    time.sleep(1)
    assert tenant.request("GET", history).json()["items"] == [], "nothing runs before the schedule is due"

    # rate() counts from the schedule's creation, which happened at the real time just now.
    clock.advance_to(datetime.now(UTC) + timedelta(minutes=5, seconds=5))
    runs = wait_for(
        lambda: [r for r in tenant.request("GET", history).json()["items"] if r["status"] == "succeeded"],
        timeout=120,
        what="the scheduled sync to succeed",
    )
    assert runs[0]["trigger"] == "schedule"
    assert runs[0]["progress"]["records_written"] == 120
