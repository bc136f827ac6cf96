"""Change data capture from the real PostgreSQL (wal_level=logical, which .ci/run sets) into the
moto data lake: snapshot and stream handoff, TOAST, deletes, schema changes, big transactions,
crashes, the guardian and lost positions.

The capture's turns are called directly here, as the consumer workflow calls them (the e2e test
runs them through the local cloud). Every check compares the lake with the table itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import psycopg2
import pytest

from churnguard.cdc.capture import GuardianThresholds
from churnguard.cdc.views import capture_view
from churnguard.cdc_models import CapturePhase, LogRisk
from churnguard.models import DataSyncMode, IntegrationStatus, ProviderName
from churnguard.providers.postgresql.changes import slot_name
from churnguard.providers.registry import PROVIDERS
from churnguard.store.cdc import CHECKPOINT_SCOPE, CaptureStore
from tests.support.cdc import Cdc, crashed_turn, latest, once_each
from tests.support.sync import ORG

pytestmark = pytest.mark.timeout(300)


def drop_slot(cdc: Cdc) -> None:
    with cdc.db.conn.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
            " WHERE slot_name = %s AND active_pid IS NOT NULL",
            [slot_name(cdc.integration_id)],
        )
        time.sleep(0.3)
        cur.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
            [slot_name(cdc.integration_id)],
        )


@pytest.fixture
def cdc(harness: Any, postgres: Any) -> Iterator[Cdc]:
    capture = Cdc(harness, postgres, ProviderName.POSTGRESQL)
    yield capture
    if capture.config is not None:
        drop_slot(capture)
        with postgres.conn.cursor() as cur:
            cur.execute(f'DROP PUBLICATION IF EXISTS "{slot_name(capture.integration_id)}"')


def table_rows(db: Any, table: str) -> dict[str, dict[str, Any]]:
    with db.conn.cursor() as cur:
        cur.execute(f'SELECT id, plan, mrr FROM "{db.name}".{table} ORDER BY id')
        return {str(row[0]): {"plan": row[1], "mrr": row[2]} for row in cur.fetchall()}


def create_accounts(db: Any, rows: int) -> None:
    db.execute(
        f'CREATE TABLE "{db.name}".accounts (id bigint PRIMARY KEY, plan text, mrr integer,'
        " updated_at timestamptz NOT NULL DEFAULT now())"
    )
    db.execute(f'ALTER TABLE "{db.name}".accounts REPLICA IDENTITY FULL')
    db.execute(
        f"INSERT INTO \"{db.name}\".accounts (id, plan, mrr) SELECT i, 'free', 0 FROM generate_series(1, %s) i",
        (rows,),
    )


def test_snapshot_and_stream_hand_over_without_gap_or_overlap_under_concurrent_writes(cdc: Cdc) -> None:
    create_accounts(cdc.db, 3_000)
    cdc.register({"account": f"{cdc.db.name}.accounts"})
    stop = threading.Event()
    writes = Counter[str]()

    def writer() -> None:
        conn = psycopg2.connect(
            host=cdc.db.url.host, port=cdc.db.url.port, user=cdc.db.url.user, dbname=cdc.db.url.database
        )
        conn.autocommit = True
        next_id = 3_001
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute(f"INSERT INTO \"{cdc.db.name}\".accounts (id, plan, mrr) VALUES (%s, 'new', 1)", [next_id])
                cur.execute(
                    f"UPDATE \"{cdc.db.name}\".accounts SET mrr = mrr + 1, plan = 'pro' WHERE id = %s",
                    [next_id % 2_900 + 1],
                )
                cur.execute(f'DELETE FROM "{cdc.db.name}".accounts WHERE id = %s', [next_id - 2_000])
                writes["rounds"] += 1
                next_id += 1
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.3)
        first = cdc.turn(budget=2.0)  # the snapshot, then what streams in meanwhile
        assert first.keep_going
        assert cdc.state().phase is CapturePhase.STREAMING
        cdc.turn(budget=1.0)
    finally:
        stop.set()
        thread.join()
    cdc.turn(budget=1.5)  # the rest

    records = cdc.records()
    assert writes["rounds"] > 50
    once_each(records)
    lake = latest(records)
    table = table_rows(cdc.db, "accounts")
    assert set(lake) == set(table)
    assert {key: {"plan": row["plan"], "mrr": row["mrr"]} for key, row in lake.items()} == table
    snapshot = [r for r in records if r["batch_id"].endswith("_s1")]
    streamed = [r for r in records if not r["batch_id"].endswith("_s1")]
    assert snapshot and streamed
    assert max(r["cursor"] for r in snapshot) < min(r["cursor"] for r in streamed)
    deletes = [r for r in streamed if r["operation"] == "delete"]
    assert deletes and all(r["entity"] == "account" and r["provider"] == "postgresql" for r in records)
    sample = next(r for r in streamed if r["operation"] == "upsert")
    assert sample["event_time"] and sample["source"] == f"{cdc.db.name}.accounts"
    assert set(sample["data"]) == {"id", "plan", "mrr", "updated_at"}
    view = capture_view(cdc.captures, cdc.checkpoints, ORG, cdc.integration_id)
    assert view is not None and view.changes_landed == len(streamed) and view.phase is CapturePhase.STREAMING


def test_readiness_names_what_is_missing_and_stops_the_consumer(cdc: Cdc) -> None:
    cdc.db.execute(f'CREATE TABLE "{cdc.db.name}".notes (id bigint PRIMARY KEY, body text)')
    cdc.db.execute(f'CREATE TABLE "{cdc.db.name}".events (at timestamptz, name text)')
    cdc.register({"note": f"{cdc.db.name}.notes"})

    outcome = cdc.turn()

    assert not outcome.keep_going and "not set up" in outcome.reason
    problems = cdc.state().problems
    assert any(f"ALTER TABLE {cdc.db.name}.notes REPLICA IDENTITY FULL" in p and "body" in p for p in problems)
    assert cdc.state().consumer_execution is None
    cdc.db.execute(f'ALTER TABLE "{cdc.db.name}".notes REPLICA IDENTITY FULL')
    assert cdc.config is not None
    cdc.lifecycle.apply(cdc.config)  # an update of the integration starts it again
    assert cdc.turn().keep_going and cdc.state().problems == []


def test_unchanged_toasted_values_keep_their_value(cdc: Cdc) -> None:
    db = cdc.db
    db.execute(f'CREATE TABLE "{db.name}".docs (id bigint PRIMARY KEY, title text, body text)')
    db.execute(f'ALTER TABLE "{db.name}".docs REPLICA IDENTITY FULL')
    # Incompressible, so it is stored out of line.
    db.execute(
        f"INSERT INTO \"{db.name}\".docs SELECT i, 't', (SELECT string_agg(md5(random()::text), '')"
        " FROM generate_series(1, 400)) FROM generate_series(1, 3) i"
    )
    cdc.register({"doc": f"{db.name}.docs"})
    cdc.turn(budget=0.5)
    db.execute(f"UPDATE \"{db.name}\".docs SET title = 'renamed' WHERE id = 2")
    cdc.turn(budget=1.0)

    with db.conn.cursor() as cur:
        cur.execute(f'SELECT body FROM "{db.name}".docs WHERE id = 2')
        (body,) = cur.fetchone()
    updates = [r for r in cdc.records() if r["record_id"] == "2" and r["data"]["title"] == "renamed"]
    assert len(body) == 12_800 and len(updates) == 1
    assert updates[0]["data"]["body"] == body
    # The slot was told the transaction may be released once it landed.
    commit_lsn = int(updates[0]["cursor"].split(".")[0], 16)
    with db.conn.cursor() as cur:
        cur.execute(
            "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
            [slot_name(cdc.integration_id)],
        )
        (confirmed,) = cur.fetchone()
    assert confirmed >= commit_lsn


def test_a_large_transaction_deletes_and_a_column_added_mid_stream(cdc: Cdc) -> None:
    create_accounts(cdc.db, 10)
    cdc.register({"account": f"{cdc.db.name}.accounts"}, batch_size=5_000)
    cdc.turn(budget=0.5)
    cdc.db.execute(
        f'INSERT INTO "{cdc.db.name}".accounts (id, plan, mrr)'
        " SELECT i, 'bulk', i FROM generate_series(100, 200099) i"
    )
    cdc.db.execute(f'DELETE FROM "{cdc.db.name}".accounts WHERE id <= 5')
    cdc.db.execute(f'ALTER TABLE "{cdc.db.name}".accounts ADD COLUMN region text')
    cdc.db.execute(f"UPDATE \"{cdc.db.name}\".accounts SET region = 'eu' WHERE id = 7")
    for _ in range(20):
        cdc.turn(budget=3.0)
        if cdc.state().changes_landed >= 200_006:
            break

    records = cdc.records()
    once_each(records)
    bulk = [r for r in records if r["data"].get("plan") == "bulk"]
    assert len(bulk) == 200_000
    assert max(Counter(r["batch_id"] for r in bulk).values()) <= 5_000, "a transaction is written in bounded parts"
    deletes = sorted(int(r["record_id"]) for r in records if r["operation"] == "delete")
    assert deletes == [1, 2, 3, 4, 5]
    region = [r for r in records if r["record_id"] == "7" and "region" in r["data"]]
    assert [r["data"]["region"] for r in region] == ["eu"]
    assert set(latest(records)) == set(table_rows(cdc.db, "accounts"))


def test_a_crash_after_the_lake_write_and_before_the_checkpoint_lands_each_change_once(
    cdc: Cdc, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_accounts(cdc.db, 5)
    cdc.register({"account": f"{cdc.db.name}.accounts"})
    cdc.turn(budget=0.5)
    cdc.db.execute(f"UPDATE \"{cdc.db.name}\".accounts SET plan = 'team', mrr = 9")
    crashed_turn(cdc, monkeypatch, budget=1.0)
    written = [r for r in cdc.records() if r["data"]["plan"] == "team"]
    assert len(written) == 5, "the parts were written before the crash"

    cdc.turn(budget=1.0)

    records = cdc.records()
    once_each(records)
    assert len([r for r in records if r["data"]["plan"] == "team"]) == 5
    assert cdc.checkpoints.checkpoint(CHECKPOINT_SCOPE, cdc.integration_id).attempt_start is None


def test_the_guardian_sees_retained_wal_grow_while_the_consumer_is_stopped(harness: Any, postgres: Any) -> None:
    cdc = Cdc(
        harness,
        postgres,
        ProviderName.POSTGRESQL,
        GuardianThresholds(seconds_left=72 * 3600.0, retained_bytes=4 * 1024**2),
    )
    try:
        create_accounts(postgres, 10)
        config = cdc.register({"account": f"{postgres.name}.accounts"})
        cdc.turn(budget=0.5)
        before = cdc.capture.guard(config)
        assert before is not None and before.risk is LogRisk.OK
        paused = config.model_copy(update={"status": IntegrationStatus.PAUSED})
        cdc.lifecycle.apply(paused)
        assert cdc.state().consumer_execution is None
        postgres.execute(
            f'INSERT INTO "{postgres.name}".accounts (id, plan, mrr)'
            " SELECT i, repeat('x', 200), i FROM generate_series(1000, 40000) i"
        )
        time.sleep(1.1)  # a write rate needs two readings a second or more apart
        after = cdc.capture.guard(config)

        assert after is not None and before.retained_bytes is not None and after.retained_bytes is not None
        assert after.retained_bytes > before.retained_bytes + 4 * 1024**2
        assert after.risk is LogRisk.AT_RISK
        assert after.write_rate_bytes_per_second is not None and after.write_rate_bytes_per_second > 0
        counts = cdc.activity.hours(ORG, datetime.now(UTC) - timedelta(hours=1))
        assert any(f"cdc#{config.integration_id}#log_at_risk" in hour for hour in counts.values())
    finally:
        drop_slot(cdc)
        postgres.execute(f'DROP PUBLICATION IF EXISTS "{slot_name(cdc.integration_id)}"')


def test_a_slot_dropped_behind_our_back_is_snapshotted_again_never_skipped(cdc: Cdc) -> None:
    create_accounts(cdc.db, 20)
    cdc.register({"account": f"{cdc.db.name}.accounts"})
    cdc.turn(budget=0.5)
    drop_slot(cdc)
    cdc.db.execute(f"UPDATE \"{cdc.db.name}\".accounts SET plan = 'lost-while-away' WHERE id <= 10")
    cdc.db.execute(f'DELETE FROM "{cdc.db.name}".accounts WHERE id > 15')

    cdc.turn(budget=1.0)

    state = cdc.state()
    assert state.snapshots == 2 and state.phase is CapturePhase.STREAMING
    assert any("lost" in note.message for note in state.notes)
    assert state.guardian is not None
    counts = cdc.activity.hours(ORG, datetime.now(UTC) - timedelta(hours=1))
    assert any(f"cdc#{cdc.integration_id}#log_lost" in hour for hour in counts.values())
    again = [r for r in cdc.records() if r["batch_id"].endswith("_s2")]
    assert sorted(int(r["record_id"]) for r in again) == list(range(1, 16))
    assert {r["data"]["plan"] for r in again if int(r["record_id"]) <= 10} == {"lost-while-away"}


def test_leaving_real_time_mode_drops_the_slot_and_publication(cdc: Cdc) -> None:
    create_accounts(cdc.db, 3)
    config = cdc.register({"account": f"{cdc.db.name}.accounts"})
    cdc.turn(budget=0.5)
    slot = slot_name(config.integration_id)
    with cdc.db.conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", [slot])
        assert cur.fetchone() == (1,)

    batch = config.model_copy(
        update={"sync_config": config.sync_config.model_copy(update={"sync_mode": DataSyncMode.INCREMENTAL})}
    )
    cdc.lifecycle.apply(batch)

    with cdc.db.conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", [slot])
        assert cur.fetchone() == (0,)
        cur.execute("SELECT count(*) FROM pg_publication WHERE pubname = %s", [slot])
        assert cur.fetchone() == (0,)
    assert cdc.captures.find(ORG, config.integration_id) is None


def test_the_management_api_enables_reports_and_removes_a_real_time_database(
    api: Any, harness: Any, postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the management handler: create starts the capture's workflow, sync/status shows it,
    a database whose log we cannot read is refused, and deletion drops the slot."""
    from tests.integration.conftest import LambdaContextStub
    from tests.support.handlers import load_handler_module
    from tests.support.sync import POSTGRES_URL, DatabaseUrl

    monkeypatch.setenv("SYNC_STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:sync")

    url = DatabaseUrl.parse(POSTGRES_URL, 5432)
    create_accounts(postgres, 4)
    body = {
        "integration_name": "warehouse",
        "provider_name": "postgresql",
        "base_url": url.address,
        "status": "active",
        "entity_mappings": {"account": f"{postgres.name}.accounts"},
        "credentials": {
            "credential_type": "basic_auth",
            "username": url.user,
            "password": "unused-password",
            "custom_fields": {"database": url.database},
        },
        "sync_config": {"sync_mode": "real_time"},
    }
    # A database whose log no code reads yet is refused real-time mode.
    monkeypatch.setitem(PROVIDERS, "mongodb", replace(PROVIDERS["mongodb"], changes=None))
    refused = api.call(
        "POST", "/api/integrations", body={**body, "provider_name": "mongodb", "base_url": "127.0.0.1:27017"}
    )
    assert refused.status == 422
    assert refused.body["error"]["details"]["fields"][0]["field"] == "sync_config.sync_mode"

    created = api.call("POST", "/api/integrations", body=body)
    assert created.status == 201, created.body
    integration_id = created.body["integration_id"]
    captures = CaptureStore(boto3.client("dynamodb"), "churnguard-test-data")
    state = captures.get("org_a", integration_id)
    assert state.consumer_execution is not None and ":stream-consumer:" in state.consumer_execution
    started = boto3.client("stepfunctions").describe_execution(executionArn=state.consumer_execution)
    assert json.loads(started["input"]) == {
        "organization_id": "org_a",
        "stream_id": integration_id,
        "kind": "cdc",
        "iteration": 0,
    }
    status = api.call("GET", f"/api/integrations/{integration_id}/sync/status")
    assert status.status == 200, status.body
    assert status.body["sync_id"] is None and status.body["run"] is None
    assert status.body["change_capture"]["phase"] == "snapshot" and status.body["change_capture"]["running"]

    consumer = load_handler_module("stream_consumer")
    consumer.capture.cache_clear()
    turn = consumer.lambda_handler(
        {"organization_id": "org_a", "stream_id": integration_id, "kind": "cdc", "execution": state.consumer_execution},
        LambdaContextStub(),
    )
    assert turn["continue"] and turn["iteration"] == 1
    landed = [r for r in harness.lake_records(organization_id="org_a") if r["integration_id"] == integration_id]
    assert sorted(int(r["record_id"]) for r in landed) == [1, 2, 3, 4]
    status = api.call("GET", f"/api/integrations/{integration_id}/sync/status").body["change_capture"]
    assert status["phase"] == "streaming" and status["snapshots"] == 1 and status["guardian"]["risk"] == "ok"
    slot = slot_name(integration_id)

    deleted = api.call("DELETE", f"/api/integrations/{integration_id}")

    assert deleted.status == 204, deleted.body
    with postgres.conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", [slot])
        assert cur.fetchone() == (0,)
        cur.execute("SELECT count(*) FROM pg_publication WHERE pubname = %s", [slot])
        assert cur.fetchone() == (0,)
    assert captures.find("org_a", integration_id) is None
