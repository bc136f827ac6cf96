"""Syncs from the real PostgreSQL into the moto data lake, through the engine and the pipeline.

Each test creates its own schema (the `postgres` fixture) and drops it. The server is
CHURNGUARD_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from churnguard.connectors.base import CheckStatus, SourceError
from churnguard.errors import BadRequestError, ConflictError
from churnguard.models import DataSyncMode, ProviderName
from churnguard.pipeline.core import StreamPipeline
from churnguard.pipeline.sinks import Part, PartKey
from churnguard.runs import SyncStatus
from churnguard.store.syncs import SyncStore
from tests.support.sync import ORG, credentials, drive, ref, sync

ROWS = 20_000
SHARED_TIMESTAMP_ROWS = 8_000


def create_customers(db: Any, rows: int = ROWS) -> None:
    """Rows 1..8000 share one updated_at; the rest share theirs in groups of about 24."""
    db.execute(
        f"""
        CREATE TABLE "{db.name}".customers (
            id bigint PRIMARY KEY, email text, name text, plan text, mrr numeric(12, 2),
            updated_at timestamptz NOT NULL
        );
        INSERT INTO "{db.name}".customers
        SELECT i, 'user' || i || '@example.com', 'User ' || i, 'pro', 49.90,
               CASE WHEN i <= %s THEN timestamptz '2024-01-01 00:00:00+00'
                    ELSE timestamptz '2024-01-01 00:00:00+00' + (i %% 500) * interval '1 second' END
        FROM generate_series(1, %s) AS i;
        CREATE INDEX ON "{db.name}".customers (updated_at, id);
        """,
        (SHARED_TIMESTAMP_ROWS, rows),
    )


def register(harness: Any, db: Any, mappings: dict[str, str] | None = None, **options: Any) -> Any:
    url = db.url
    sync_config = {"batch_size": 250, **options.pop("sync_config", {})}
    return harness.register(
        ProviderName.POSTGRESQL,
        url.address,
        credentials(url.user, url.password, url.database),
        mappings or {"customer": f"{db.name}.customers"},
        sync_config=sync_config,
        **options,
    )


def ids_of(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(record["record_id"] for record in records)


def test_full_then_incremental_sync_is_exact_with_shared_timestamps(harness: Any, postgres: Any) -> None:
    create_customers(postgres)
    config = register(harness, postgres)
    engine = harness.engine(flush_records=1_000)

    first = sync(engine, config.integration_id, mode=DataSyncMode.FULL_SYNC, record_budget=3_000)

    assert first.status is SyncStatus.SUCCEEDED
    assert first.steps > 1, "the record budget should have split the sync into several steps"
    records = harness.lake_records()
    counts = ids_of(records)
    assert len(records) == ROWS
    assert set(counts) == {str(i) for i in range(1, ROWS + 1)}
    assert max(counts.values()) == 1
    assert len({r["dedupe_key"] for r in records}) == ROWS
    sample = next(r for r in records if r["record_id"] == "42")
    assert sample["organization_id"] == ORG and sample["integration_id"] == config.integration_id
    assert sample["provider"] == "postgresql" and sample["entity"] == "customer" and sample["operation"] == "upsert"
    assert sample["source"] == f"{postgres.name}.customers" and sample["batch_id"] == first.sync_id
    assert sample["cursor"] == "2024-01-01T00:00:00+00:00" and "event_time" not in sample
    assert sample["data"] == {
        "id": 42,
        "email": "user42@example.com",
        "name": "User 42",
        "plan": "pro",
        "mrr": "49.90",
        "updated_at": "2024-01-01T00:00:00+00:00",
    }
    status = engine.get_sync_status(ORG, config.integration_id, first.sync_id)
    assert status.progress.records_written == ROWS and status.progress.estimated_total == ROWS
    assert status.progress.percent == 100.0
    integration = harness.integrations.get(ORG, config.integration_id)
    assert integration.total_records_synced == ROWS and integration.sync_metrics["last_sync_id"] == first.sync_id

    updated = list(range(7, ROWS, 199))[:100]
    postgres.execute(
        f"UPDATE \"{postgres.name}\".customers SET plan = 'team', updated_at = '2024-02-01T00:00:00Z'"
        " WHERE id = ANY(%s)",
        (updated,),
    )
    postgres.execute(
        f"INSERT INTO \"{postgres.name}\".customers SELECT i, 'new' || i || '@example.com', 'New', 'free', 0,"
        " '2024-02-01T00:00:00Z' FROM generate_series(%s, %s) AS i",
        (ROWS + 1, ROWS + 50),
    )

    second = sync(engine, config.integration_id, mode=DataSyncMode.INCREMENTAL, record_budget=40)

    assert second.status is SyncStatus.SUCCEEDED and second.mode is DataSyncMode.INCREMENTAL
    new_records = [r for r in harness.lake_records() if r["batch_id"] == second.sync_id]
    assert sorted(ids_of(new_records).elements(), key=int) == [
        str(i) for i in sorted([*updated, *range(ROWS + 1, ROWS + 51)])
    ]
    assert all(r["data"]["plan"] in {"team", "free"} for r in new_records)
    assert second.estimated_total == 150

    third = sync(engine, config.integration_id)
    assert third.status is SyncStatus.SUCCEEDED and third.records_written == 0

    page = engine.history(ORG, config.integration_id, limit=2)
    assert [v.sync_id for v in page.items] == [third.sync_id, second.sync_id] and page.next_token
    rest = engine.history(ORG, config.integration_id, limit=2, next_token=page.next_token)
    assert [v.sync_id for v in rest.items] == [first.sync_id] and rest.next_token is None
    with pytest.raises(BadRequestError):
        engine.history(ORG, config.integration_id, next_token="bm90LWEtc3luYw")


def test_crashes_before_and_after_sink_writes_resume_exactly_once(
    harness: Any, postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_customers(postgres, rows=5_000)
    config = register(harness, postgres, sync_config={"batch_size": 100})

    class FlakySink:
        """Fails the 4th part before writing anything: the sink write itself crashes."""

        def __init__(self, inner: Any) -> None:
            self.inner, self.parts = inner, 0

        def write(self, part: Part) -> None:
            self.parts += 1
            if self.parts == 4:
                raise RuntimeError("crash before the sink write")
            self.inner.write(part)

        def discard(self, key: PartKey) -> None:
            self.inner.discard(key)

    engine = harness.engine(sinks=[FlakySink(harness.lake)], flush_records=500)
    run = engine.start_sync(ORG, config.integration_id, mode=DataSyncMode.FULL_SYNC)
    engine.prepare(ref(run))

    # The second checkpoint's DynamoDB write fails after its part reached S3.
    original_save = SyncStore.save
    saves = {"count": 0}

    def crashing_save(self: SyncStore, run_: Any, *, lease_until: float | None) -> None:
        saves["count"] += 1
        if saves["count"] == 2:
            raise RuntimeError("crash after the sink write, before the checkpoint")
        original_save(self, run_, lease_until=lease_until)

    monkeypatch.setattr(SyncStore, "save", crashing_save)
    with pytest.raises(RuntimeError, match="after the sink write"):
        engine.extract_step(ref(run), 600, 1_000_000)
    with pytest.raises(RuntimeError, match="before the sink write"):
        engine.extract_step(ref(run), 600, 1_000_000)
    finished = drive(engine, run)

    assert finished.status is SyncStatus.SUCCEEDED
    counts = ids_of(harness.lake_records())
    assert set(counts) == {str(i) for i in range(1, 5_001)} and max(counts.values()) == 1
    assert finished.records_written == 5_000
    assert len(harness.lake_keys()) == 10


def test_a_second_start_while_one_runs_conflicts(harness: Any, postgres: Any) -> None:
    create_customers(postgres, rows=10)
    config = register(harness, postgres)
    engine = harness.engine()
    run = engine.start_sync(ORG, config.integration_id)

    with pytest.raises(ConflictError):
        engine.start_sync(ORG, config.integration_id)

    drive(engine, run)
    assert engine.start_sync(ORG, config.integration_id).sync_id != run.sync_id


def test_an_abandoned_lock_is_taken_over_after_its_lease(harness: Any, postgres: Any) -> None:
    create_customers(postgres, rows=10)
    config = register(harness, postgres)
    now = {"t": 1_700_000_000.0}
    engine = harness.engine(clock=lambda: now["t"], lock_lease_seconds=60)
    abandoned = engine.start_sync(ORG, config.integration_id)

    now["t"] += 30
    with pytest.raises(ConflictError):
        engine.start_sync(ORG, config.integration_id)
    now["t"] += 31
    replacement = engine.start_sync(ORG, config.integration_id)

    assert engine.get_sync_status(ORG, config.integration_id, abandoned.sync_id).status is SyncStatus.FAILED
    assert drive(engine, replacement).status is SyncStatus.SUCCEEDED


def test_cancellation_stops_at_the_next_page_boundary(
    harness: Any, postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_customers(postgres, rows=2_000)
    config = register(harness, postgres, sync_config={"batch_size": 100})
    engine = harness.engine(flush_records=250)
    run = engine.start_sync(ORG, config.integration_id)
    engine.prepare(ref(run))

    original = StreamPipeline.process
    pages = {"count": 0}

    def process_and_cancel(self: StreamPipeline, rows: Any, batch: Any, *args: Any) -> None:
        original(self, rows, batch, *args)
        pages["count"] += 1
        if pages["count"] == 3:
            engine.cancel(ORG, config.integration_id, run.sync_id)

    monkeypatch.setattr(StreamPipeline, "process", process_and_cancel)
    result = engine.extract_step(ref(run), 600, 1_000_000)

    assert result.done and result.status is SyncStatus.CANCELLED
    assert pages["count"] == 3 and result.records_read == 300
    assert len(harness.lake_records()) == 300  # what was read before the boundary is kept, once
    assert engine.finalize(ref(run)).status is SyncStatus.CANCELLED
    assert engine.start_sync(ORG, config.integration_id).status is SyncStatus.STARTED  # lock released


def test_types_are_written_faithfully(harness: Any, postgres: Any) -> None:
    postgres.execute(
        f"""
        CREATE TABLE "{postgres.name}".accounts (
            id integer PRIMARY KEY, doc jsonb, raw json, amount numeric(50, 25), seen timestamptz,
            local_time timestamp, tags text[], scores integer[], blob bytea, ref uuid, span interval,
            updated_at timestamptz
        );
        INSERT INTO "{postgres.name}".accounts VALUES (
            1,
            '{{"plan": {{"tier": "gold", "seats": 12}}, "ratio": 0.25, "big": 123456789012345678901234567890,
              "precise": 3.14159265358979323846, "flags": [true, null]}}',
            '{{"kept": "as sent", "n": 1}}',
            12345678901234567890123.4567890123456789012345678,
            '2024-03-10 12:34:56.789012+02', '2024-03-10 12:34:56', ARRAY['a', 'b"c'], ARRAY[1, 2, 3],
            '\\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 day 02:00:00.5',
            '2024-03-10 00:00:00+00'
        );
        """,
    )
    config = register(harness, postgres, {"account": f"{postgres.name}.accounts"})
    assert sync(harness.engine(), config.integration_id).status is SyncStatus.SUCCEEDED

    keys = harness.lake_keys()
    raw = harness.s3.get_object(Bucket="churnguard-test-lake", Key=keys[0])["Body"].read()
    import gzip

    line = gzip.decompress(raw).decode()
    assert '"big":123456789012345678901234567890' in line
    assert '"precise":3.14159265358979323846' in line
    (record,) = harness.lake_records()
    data = record["data"]
    assert data["doc"] == {
        "plan": {"tier": "gold", "seats": 12},
        "ratio": 0.25,
        "big": 123456789012345678901234567890,
        "precise": json.loads("3.14159265358979323846"),
        "flags": [True, None],
    }
    assert data["raw"] == {"kept": "as sent", "n": 1}
    assert data["amount"] == "12345678901234567890123.4567890123456789012345678"
    assert data["seen"] == "2024-03-10T10:34:56.789012+00:00"
    assert data["local_time"] == "2024-03-10T12:34:56+00:00"
    assert data["tags"] == ["a", 'b"c'] and data["scores"] == [1, 2, 3]
    assert data["blob"] == {"$base64": "AP8Q"}
    assert data["ref"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert data["span"] == "PT93600.5S"


def test_a_source_failure_is_recorded_and_finalize_fails_the_run(harness: Any, postgres: Any) -> None:
    create_customers(postgres, rows=100)
    config = register(harness, postgres)
    engine = harness.engine()
    run = engine.start_sync(ORG, config.integration_id)
    engine.prepare(ref(run))
    postgres.execute(f'DROP TABLE "{postgres.name}".customers')

    with pytest.raises(SourceError) as raised:
        engine.extract_step(ref(run), 600, 1_000_000)
    assert raised.value.kind is CheckStatus.MISSING_OBJECT and not raised.value.retryable

    status = engine.get_sync_status(ORG, config.integration_id, run.sync_id)
    assert status.status is SyncStatus.RUNNING and status.errors[-1].message == "a configured table does not exist"
    assert status.errors[-1].stream == "customer"
    failed = engine.finalize(ref(run), error=f"{type(raised.value).__name__}: {raised.value.message}")
    assert failed.status is SyncStatus.FAILED
    integration = harness.integrations.get(ORG, config.integration_id)
    assert integration.last_error.endswith("a configured table does not exist")
    assert integration.sync_metrics["last_sync_status"] == "failed"
    assert engine.start_sync(ORG, config.integration_id).status is SyncStatus.STARTED


@pytest.mark.parametrize("encoded", [True, False], ids=["rendered-by-postgres", "python-path"])
def test_a_row_committed_after_a_later_one_is_read_by_the_next_incremental_sync(
    harness: Any, postgres: Any, encoded: bool
) -> None:
    """updated_at = now() is the transaction's start: a transaction that commits after a later
    one makes its row visible after the sync has read past that time."""
    import psycopg2

    table = f'"{postgres.name}".orders'
    postgres.execute(
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, status text, updated_at timestamptz NOT NULL DEFAULT now());"
        f"INSERT INTO {table} VALUES (1, 'old', now() - interval '1 day'), (2, 'recent', now() - interval '1 minute')"
    )
    mappings = {"order": table.replace('"', "")}
    with_window = register(harness, postgres, mappings)
    without = register(harness, postgres, mappings, name="no window", source_options={"order": {"lookback_seconds": 0}})
    engine = harness.engine(source_encoding=encoded)
    for config in (with_window, without):
        assert sync(engine, config.integration_id, mode=DataSyncMode.INCREMENTAL).records_written == 2

    url = postgres.url
    late = psycopg2.connect(host=url.host, port=url.port, user=url.user, dbname=url.database)
    try:
        with late.cursor() as cur:  # open: its now() is taken here, its row visible at commit
            cur.execute(f"INSERT INTO {table} (id, status) VALUES (3, 'committed late')")
        postgres.execute(f"INSERT INTO {table} (id, status) VALUES (4, 'committed at once')")
        for config in (with_window, without):
            run = sync(engine, config.integration_id)
            assert harness.written_by(run) == ["4"], "row 2, read again in the window, is not written again"
        late.commit()
    finally:
        late.close()

    caught = sync(engine, with_window.integration_id)
    assert harness.written_by(caught) == ["3"]
    assert sync(engine, with_window.integration_id).records_written == 0, "nothing is written twice"
    missed = sync(engine, without.integration_id)
    assert harness.written_by(missed) == [], "without a window, the late row is lost: the defect the window fixes"
    lake = [r for r in harness.lake_records() if r["integration_id"] == with_window.integration_id]
    assert sorted(ids_of(lake).elements(), key=int) == ["1", "2", "3", "4"]
