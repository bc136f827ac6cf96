"""Syncs and connection checks against the real MariaDB (MySQL protocol), through the engine.

Each test creates its own database (the `mysql` fixture) and drops it. The server is
CHURNGUARD_TEST_MYSQL_URL (default mysql://root@127.0.0.1:3306/test).
"""

from __future__ import annotations

import secrets
from collections import Counter
from typing import Any

import pytest

from churnguard.connectors.base import CheckStatus
from churnguard.models import DataSyncMode, ProviderName
from churnguard.sync.models import SyncStatus
from tests.support.sync import ORG, credentials, sync

ROWS = 3_000


def register(
    harness: Any,
    db: Any,
    *,
    user: str | None = None,
    password: str | None = None,
    port: int | None = None,
    mappings: dict[str, str] | None = None,
    **options: Any,
) -> Any:
    url, (login_user, login_password) = db.url, db.login
    return harness.register(
        ProviderName.MYSQL,
        f"{url.host}:{port or url.port}",
        credentials(user or login_user, login_password if password is None else password, db.name),
        mappings or {"customer": "customers"},
        sync_config={"batch_size": 100},
        **options,
    )


def create_customers(db: Any) -> None:
    db.execute(
        "CREATE TABLE customers (id INT PRIMARY KEY, email VARCHAR(200), plan VARCHAR(20),"
        " updated_at DATETIME(6) NOT NULL, KEY by_cursor (updated_at, id))"
    )
    db.executemany(
        "INSERT INTO customers VALUES (%s, %s, 'pro', %s)",
        [
            (i, f"user{i}@example.com", "2024-01-01 00:00:00" if i <= 1_000 else f"2024-01-01 00:{i % 60:02d}:00")
            for i in range(1, ROWS + 1)
        ],
    )


def test_full_then_incremental_sync_is_exact_with_shared_timestamps(harness: Any, mysql: Any) -> None:
    create_customers(mysql)
    config = register(harness, mysql)
    engine = harness.engine(flush_records=400)

    first = sync(engine, config.integration_id, mode=DataSyncMode.FULL_SYNC, record_budget=700)

    assert first.status is SyncStatus.SUCCEEDED and first.steps > 1
    counts = Counter(r["record_id"] for r in harness.lake_records())
    assert set(counts) == {str(i) for i in range(1, ROWS + 1)} and max(counts.values()) == 1

    updated = list(range(5, ROWS, 31))[:40]
    mysql.execute(
        f"UPDATE customers SET plan = 'team', updated_at = '2024-02-01' WHERE id IN ({', '.join(['%s'] * 40)})",
        updated,
    )
    mysql.executemany(
        "INSERT INTO customers VALUES (%s, 'new@example.com', 'free', '2024-02-01')",
        [(i,) for i in range(ROWS + 1, ROWS + 21)],
    )
    second = sync(engine, config.integration_id, record_budget=25)

    new = [r for r in harness.lake_records() if r["batch_id"] == second.sync_id]
    assert sorted(int(r["record_id"]) for r in new) == sorted([*updated, *range(ROWS + 1, ROWS + 21)])


def test_types_are_written_faithfully(harness: Any, mysql: Any) -> None:
    mysql.execute(
        "CREATE TABLE accounts (id BIGINT UNSIGNED PRIMARY KEY, doc JSON, amount DECIMAL(40, 20), blob_value BLOB,"
        " seen TIMESTAMP(3) NULL, flag TINYINT(1), updated_at DATETIME)"
    )
    mysql.execute(
        "INSERT INTO accounts VALUES (18446744073709551615, %s, %s, %s, '2024-03-10 10:34:56.789', 1,"
        " '2024-03-10 00:00:00')",
        (
            '{"plan": {"tier": "gold"}, "big": 123456789012345678901234567890, "list": [1, 2.5, null]}',
            "12345678901234567890.12345678901234567890",
            b"\x00\xff\x10",
        ),
    )
    config = register(harness, mysql, mappings={"account": "accounts"})
    assert sync(harness.engine(), config.integration_id).status is SyncStatus.SUCCEEDED

    (record,) = harness.lake_records()
    assert record["record_id"] == "18446744073709551615"
    data = record["data"]
    assert data["doc"] == {"plan": {"tier": "gold"}, "big": 123456789012345678901234567890, "list": [1, 2.5, None]}
    assert data["amount"] == "12345678901234567890.12345678901234567890"
    assert data["blob_value"] == {"$base64": "AP8Q"}
    assert data["seen"] == "2024-03-10T10:34:56.789000+00:00"
    assert data["flag"] == 1 and data["updated_at"] == "2024-03-10T00:00:00+00:00"


@pytest.fixture
def mysql_user(mysql: Any) -> Any:
    """A login that may read `other` but not `customers`."""
    user = f"cg_{secrets.token_hex(4)}"
    mysql.execute("CREATE TABLE other (id INT PRIMARY KEY)")
    mysql.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'reader-password'")
    mysql.execute(f"GRANT SELECT ON `{mysql.name}`.`other` TO '{user}'@'%'")
    try:
        yield user
    finally:
        mysql.execute(f"DROP USER '{user}'@'%'")


def test_connection_check_kinds(harness: Any, mysql: Any, mysql_user: str) -> None:
    create_customers(mysql)
    engine = harness.engine()

    def status(name: str, **options: Any) -> Any:
        config = register(harness, mysql, name=name, **options)
        return engine.test_connection(ORG, config.integration_id)

    ok = status("ok")
    assert ok.ok and ok.streams[0].primary_key == ["id"] and ok.streams[0].cursor_field == "updated_at"
    assert status("port", port=1).status is CheckStatus.UNREACHABLE
    refused = status("password", password="wrong-password-5678")
    assert refused.status is CheckStatus.AUTHENTICATION_FAILED
    assert "wrong-password-5678" not in refused.model_dump_json()
    assert status("table", mappings={"customer": "missing_table"}).status is CheckStatus.MISSING_OBJECT
    denied = status("privileges", user=mysql_user, password="reader-password")
    assert denied.status is CheckStatus.MISSING_PRIVILEGES and mysql_user not in denied.model_dump_json()
