"""A scheduled sync end to end: the integration's EventBridge Scheduler schedule, fired by the
local cloud once its clock is moved past the due time, starts a real sync through the state machine."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg2
import pytest

from local.testing import wait_for
from tests.e2e.conftest import ShiftableClock, Tenant, register_postgres
from tests.support.sync import POSTGRES_URL, DatabaseUrl


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


def test_the_schedule_fires_and_the_sync_runs(
    new_tenant: Any, schedule_clock: ShiftableClock, accounts_table: str
) -> None:
    tenant: Tenant = new_tenant(f"org_sched_{uuid.uuid4().hex[:6]}")
    integration_id = register_postgres(tenant, {"account": f"{accounts_table}.accounts"}, sync_frequency=300)
    history = f"/api/integrations/{integration_id}/syncs"
    try:
        time.sleep(1)
        assert tenant.request("GET", history).json()["items"] == [], "nothing runs before the schedule is due"

        schedule_clock.shift(timedelta(minutes=5, seconds=5))
        runs = wait_for(
            lambda: [r for r in tenant.request("GET", history).json()["items"] if r["status"] == "succeeded"],
            timeout=120,
            what="the scheduled sync to succeed",
        )
        assert runs[0]["trigger"] == "schedule"
        assert runs[0]["progress"]["records_written"] == 120
    finally:
        # The session's cloud and clock are shared: a schedule left behind would fire in later tests.
        assert tenant.request("DELETE", f"/api/integrations/{integration_id}").status_code == 204
