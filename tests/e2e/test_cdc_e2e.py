"""Change data capture through the local cloud over HTTP: a PostgreSQL integration switched to
real-time mode is snapshotted by the consumer workflow, then streams inserts, updates and deletes
into the lake; sync/status shows the capture and the guardian's figures; switching back to batch
mode drops the slot and publication."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg2

from churnguard.providers.postgresql.changes import slot_name
from tests.e2e.conftest import register_postgres
from tests.e2e.test_webhooks_e2e import lake_lines, wait_until
from tests.support.sync import POSTGRES_URL, DatabaseUrl


def _database() -> Any:
    url = DatabaseUrl.parse(POSTGRES_URL, 5432)
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.user, dbname=url.database)
    conn.autocommit = True
    return conn


def test_a_real_time_postgres_integration_streams_changes_into_the_lake(cloud: Any, new_tenant: Any) -> None:
    tenant = new_tenant(f"org_cdc_{uuid.uuid4().hex[:8]}")
    schema = f"cdc_{uuid.uuid4().hex[:8]}"
    conn = _database()
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
        cur.execute(f'CREATE TABLE "{schema}".accounts (id bigint PRIMARY KEY, plan text, mrr integer)')
        cur.execute(f'ALTER TABLE "{schema}".accounts REPLICA IDENTITY FULL')
        cur.execute(f"INSERT INTO \"{schema}\".accounts SELECT i, 'free', 0 FROM generate_series(1, 100) i")
    integration_id = register_postgres(tenant, {"account": f"{schema}.accounts"})
    try:
        switched = tenant.request(
            "PATCH", f"/api/integrations/{integration_id}", json={"sync_config": {"sync_mode": "real_time"}}
        )
        assert switched.status_code == 200, switched.text

        def records() -> list[dict[str, Any]]:
            return lake_lines(cloud, f"org={tenant.organization_id}/provider=postgresql/entity=account/")

        wait_until(lambda: len(records()) >= 100, "the snapshot in the lake")
        with conn.cursor() as cur:
            cur.execute(f"UPDATE \"{schema}\".accounts SET plan = 'pro', mrr = 49 WHERE id <= 10")
            cur.execute(f'DELETE FROM "{schema}".accounts WHERE id > 95')
            cur.execute(f"INSERT INTO \"{schema}\".accounts VALUES (101, 'team', 99)")
        wait_until(lambda: len(records()) >= 116, "the changes in the lake")

        landed = records()
        assert len({(r["record_id"], r["cursor"]) for r in landed}) == len(landed) == 116
        streamed = [r for r in landed if not r["batch_id"].endswith("_s1")]
        assert sorted(int(r["record_id"]) for r in streamed if r["operation"] == "delete") == [96, 97, 98, 99, 100]
        assert {r["data"]["plan"] for r in streamed if r["operation"] == "upsert"} == {"pro", "team"}
        assert all(r["event_time"] for r in streamed)

        def capture() -> dict[str, Any]:
            status = tenant.request("GET", f"/api/integrations/{integration_id}/sync/status")
            assert status.status_code == 200, status.text
            return dict(status.json()["change_capture"])

        # The guardian measures the slot at the end of each turn.
        wait_until(lambda: capture()["guardian"]["retained_bytes"] is not None, "the guardian's figures")
        shown = capture()
        assert shown["phase"] == "streaming" and shown["running"] and shown["changes_landed"] == 16
        assert shown["guardian"]["risk"] == "ok" and shown["position"]

        back = tenant.request(
            "PATCH", f"/api/integrations/{integration_id}", json={"sync_config": {"sync_mode": "incremental"}}
        )
        assert back.status_code == 200, back.text
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", [slot_name(integration_id)])
            assert cur.fetchone() == (0,)
            cur.execute("SELECT count(*) FROM pg_publication WHERE pubname = %s", [slot_name(integration_id)])
            assert cur.fetchone() == (0,)
        assert tenant.request("GET", f"/api/integrations/{integration_id}/sync/status").status_code == 404
    finally:
        tenant.request("DELETE", f"/api/integrations/{integration_id}")
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE slot_name = %s AND NOT active",
                [slot_name(integration_id)],
            )
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()
