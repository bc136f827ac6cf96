"""Syncs and connection checks against the real MariaDB (MySQL protocol), through the engine.

Each test creates its own database (the `mysql` fixture) and drops it. The server is
CHURNGUARD_TEST_MYSQL_URL (default mysql://root@127.0.0.1:3306/test).
"""

from __future__ import annotations

import gzip
import json
import secrets
from collections import Counter
from typing import Any

import pytest

from churnguard.connectors.base import CheckStatus
from churnguard.models import DataSyncMode, ProviderName
from churnguard.pipeline.core import StreamPipeline
from churnguard.runs import SyncStatus
from tests.support.sync import BUCKET, ORG, credentials, sync

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


def lake_lines(harness: Any, sync_id: str) -> dict[str, bytes]:
    """The raw JSON lines one run wrote, by record id (each once), with the run's id blanked."""
    lines: dict[str, bytes] = {}
    for key in harness.lake_keys():
        body = gzip.decompress(harness.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        for line in body.splitlines():
            record = json.loads(line)
            if record["batch_id"] == sync_id:
                assert record["record_id"] not in lines, "written twice"
                lines[record["record_id"]] = line.replace(sync_id.encode(), b"<run>")
    return lines


def fast_and_python_lines(
    harness: Any, mysql: Any, monkeypatch: pytest.MonkeyPatch, table: str, *, encodable: bool = True, **options: Any
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The lines a full sync of `table` writes with MariaDB encoding rows, then in Python
    (`options`: for `sync`, such as a record budget that makes the run resume step by step)."""
    encoded_flags: list[bool] = []
    original = StreamPipeline.process

    def spy(self: StreamPipeline, rows: Any, batch: Any, *args: Any) -> None:
        encoded_flags.append(self.encoded)
        original(self, rows, batch, *args)

    monkeypatch.setattr(StreamPipeline, "process", spy)
    config = register(harness, mysql, mappings={"account": table}, name=table)
    results = []
    for fast in (True, False):
        encoded_flags.clear()
        run = sync(harness.engine(source_encoding=fast), config.integration_id, mode=DataSyncMode.FULL_SYNC, **options)
        assert run.status is SyncStatus.SUCCEEDED and run.streams[0].stream.encodable is encodable
        assert set(encoded_flags) == {fast and encodable}
        results.append(lake_lines(harness, run.sync_id))
    return results[0], results[1]


def test_rows_mariadb_encodes_are_the_python_encoding_byte_for_byte(
    harness: Any, mysql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path (MariaDB renders each row's JSON) and the Python path write the same bytes,
    for every column type the fast path takes, NULLs, edge values and awkward text."""
    mysql.execute(
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY, name VARCHAR(100), code CHAR(10),"
        " legacy VARCHAR(20) CHARACTER SET latin1, tier ENUM('free', 'pro'), opts SET('a', 'b'), flag TINYINT(1),"
        " small SMALLINT, big BIGINT UNSIGNED, amount DECIMAL(40, 20), price DECIMAL(10, 2), tiny DECIMAL(12, 8),"
        " seen TIMESTAMP(3) NULL, local_time DATETIME(6), plain_time DATETIME, day DATE, doc JSON, blob_value BLOB,"
        " fixed BINARY(4), bytes_value VARBINARY(200), body TEXT, updated_at DATETIME(6) NULL,"
        " fee DECIMAL(8, 3) NOT NULL DEFAULT 1.5, due DATE NOT NULL DEFAULT '2024-01-31',"
        " label VARCHAR(10) NOT NULL DEFAULT 'x\x1fy',"
        " stamp TIMESTAMP(6) NOT NULL DEFAULT '2024-01-01 00:00:00.000001',"
        " meta JSON NOT NULL DEFAULT '{\"a\": 1.50}',"
        " KEY by_cursor (updated_at, id))"
    )
    text = 'Ann "quoted" \\ back / \u00e9\u4e2d\U0001f600 \x1b\x0b\x1f\x7f\n\t\u2028 end'
    mysql.execute(
        "INSERT INTO accounts VALUES (1, %s, 'c1', %s, 'pro', 'a,b', 1, -7, 18446744073709551615,"
        " 12345678901234567890.12345678901234567890, 12.50, 0.00000012, '2024-03-10 10:34:56.789',"
        " '2024-03-10 12:34:56.123456', '2024-03-10 12:34:56', '2024-03-10', %s, %s, 'ab', %s,"
        " 'literal \\\\u001A \\\\ and \\\\\\\\u001B text', '2024-03-10 00:00:00',"
        " DEFAULT, DEFAULT, DEFAULT, DEFAULT, DEFAULT)",
        (
            text,
            "caf\u00e9",
            '{"big": 123456789012345678901234567890, "a": [1, 2.50, null, 1e2, -0.0],'
            ' "s": "\\u00e9\\u001A\\/", "pi": 3.14159265358979323846, "nested": {"k": "v"}}',
            b"\x00\xff\x10",
            bytes(range(200)),
        ),
    )
    mysql.execute(
        "INSERT INTO accounts (id, body, amount, price, tiny, doc, blob_value, updated_at) VALUES"
        " (2, 'line\\nbreak', 0, 0, -0.00000099, 'null', '', '2024-03-11 00:00:00.5'),"
        " (3, '', -0.5, -0.01, 0.000001, '[]', NULL, NULL),"
        " (4, REPEAT('x', 65000), 0.00000000000000000001, 99999999.99, 0, '\"text\"', NULL,"
        " '2024-03-11 00:00:00.5')"
    )
    # Values PyMySQL cannot make dates of, which it hands over as the server's text.
    mysql.execute("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'")
    mysql.execute(
        "INSERT INTO accounts (id, seen, local_time, plain_time, day, updated_at, due, stamp) VALUES"
        " (5, '0000-00-00 00:00:00', '0000-00-00 00:00:00', '2024-02-30 10:00:00', '0000-00-00', '2024-03-12',"
        " '0000-00-00', '0000-00-00 00:00:00'),"
        " (6, NULL, '0000-01-01 00:00:00.5', '0001-01-01 00:00:01', '2024-02-30', '2024-03-12', '2024-02-30',"
        " '2024-03-12 10:00:00')"
    )

    fast, python = fast_and_python_lines(harness, mysql, monkeypatch, "accounts")

    assert sorted(fast) == ["1", "2", "3", "4", "5", "6"]
    for record_id, line in fast.items():
        assert line == python[record_id], record_id
    records = {record_id: json.loads(line) for record_id, line in fast.items()}
    first = records["1"]["data"]
    assert first["name"] == text and first["legacy"] == "caf\u00e9" and first["opts"] == "a,b"
    assert first["flag"] == 1 and first["big"] == 18446744073709551615
    assert first["amount"] == "12345678901234567890.12345678901234567890" and first["price"] == "12.50"
    assert first["tiny"] == "1.2E-7" and records["2"]["data"]["tiny"] == "-9.9E-7"
    assert records["2"]["data"]["amount"] == "0E-20" and records["4"]["data"]["amount"] == "1E-20"
    assert first["seen"] == "2024-03-10T10:34:56.789000+00:00"
    assert first["local_time"] == "2024-03-10T12:34:56.123456+00:00"
    assert first["plain_time"] == "2024-03-10T12:34:56+00:00" and first["day"] == "2024-03-10"
    assert first["doc"]["big"] == 123456789012345678901234567890 and first["doc"]["s"] == "\u00e9\x1a/"
    assert first["blob_value"] == {"$base64": "AP8Q"} and first["fixed"] == {"$base64": "YWIAAA=="}
    assert records["2"]["data"]["blob_value"] == {"$base64": ""} and records["2"]["data"]["doc"] is None
    assert b'"cursor":null' in fast["3"] and records["4"]["cursor"] == "2024-03-11T00:00:00.500000+00:00"
    assert records["5"]["data"]["local_time"] == "0000-00-00 00:00:00.000000"
    assert records["5"]["data"]["plain_time"] == "2024-02-30 10:00:00" and records["5"]["data"]["day"] == "0000-00-00"
    assert records["6"]["data"]["local_time"] == "0000-01-01 00:00:00.500000"
    assert (first["fee"], first["due"], first["label"], first["meta"]) == ("1.500", "2024-01-31", "x\x1fy", {"a": 1.5})
    assert first["stamp"] == "2024-01-01T00:00:00.000001+00:00" and b'"meta":{"a":1.5}' in fast["1"]
    assert records["5"]["data"]["stamp"] == "0000-00-00 00:00:00.000000" and records["6"]["data"]["due"] == "2024-02-30"
    assert (
        records["6"]["data"]["plain_time"] == "0001-01-01T00:00:01+00:00"
        and records["6"]["data"]["day"] == "2024-02-30"
    )


def test_a_text_key_and_cursor_and_no_cursor_encode_alike(
    harness: Any, mysql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mysql.execute("CREATE TABLE codes (code VARCHAR(20) PRIMARY KEY, updated_at VARCHAR(20), doc JSON)")
    mysql.executemany(
        "INSERT INTO codes VALUES (%s, %s, %s)",
        [
            ("a\\u001Fb\x1f", "x\\u001Ay", '{"k": 1}'),
            ("\x1b", None, None),
            ("plain", "b", "{}"),
            *((f"k{i:03d}", None if i % 3 == 0 else f"c{i % 7}", None) for i in range(300)),
        ],
    )
    mysql.execute("CREATE TABLE events (id INT PRIMARY KEY, kind VARCHAR(10))")
    mysql.execute("INSERT INTO events VALUES (1, 'open'), (2, NULL), (3, '\x1f')")

    # Pages of 100 and steps of 130 records: reads resume from encoded rows' positions, inside
    # the region of null cursors and past it.
    fast, python = fast_and_python_lines(harness, mysql, monkeypatch, "codes", record_budget=130)
    assert fast == python and len(fast) == 303
    fast, python = fast_and_python_lines(harness, mysql, monkeypatch, "events")
    assert fast == python and len(fast) == 3


def test_a_column_mariadb_cannot_render_exactly_keeps_the_python_path(
    harness: Any, mysql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mysql.execute("CREATE TABLE measures (id INT PRIMARY KEY, ratio DOUBLE, span TIME, updated_at DATETIME)")
    mysql.execute("INSERT INTO measures VALUES (1, 0.1, '-01:30:00.25', '2024-03-10 00:00:00')")

    fast, python = fast_and_python_lines(harness, mysql, monkeypatch, "measures", encodable=False)

    assert fast == python and json.loads(fast["1"])["data"]["ratio"] == 0.1


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


@pytest.mark.parametrize("encoded", [True, False], ids=["rendered-by-mariadb", "python-path"])
def test_a_row_committed_after_a_later_one_is_read_by_the_next_incremental_sync(
    harness: Any, mysql: Any, encoded: bool
) -> None:
    """An application that stamps updated_at when its transaction starts and commits after a
    quicker one makes its row visible after the sync has read past that time."""
    import pymysql

    mysql.execute(
        "CREATE TABLE orders (id INT PRIMARY KEY, status VARCHAR(40), updated_at DATETIME(6) NOT NULL,"
        " KEY by_cursor (updated_at, id)) ENGINE=InnoDB"
    )
    mysql.execute(
        "INSERT INTO orders VALUES (1, 'old', UTC_TIMESTAMP(6) - INTERVAL 1 DAY),"
        " (2, 'recent', UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE)"
    )
    with_window = register(harness, mysql, mappings={"order": "orders"})
    no_window = {"order": {"lookback_seconds": 0}}
    without = register(harness, mysql, mappings={"order": "orders"}, name="no window", source_options=no_window)
    engine = harness.engine(source_encoding=encoded)
    for config in (with_window, without):
        assert sync(engine, config.integration_id, mode=DataSyncMode.INCREMENTAL).records_written == 2

    url = mysql.url
    late = pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password, database=mysql.name)
    try:
        with late.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("INSERT INTO orders VALUES (3, 'committed late', UTC_TIMESTAMP(6) - INTERVAL 1 SECOND)")
        mysql.execute("INSERT INTO orders VALUES (4, 'committed at once', UTC_TIMESTAMP(6))")
        for config in (with_window, without):
            run = sync(engine, config.integration_id)
            assert harness.written_by(run) == ["4"], "row 2, read again in the window, is not written again"
        late.commit()
    finally:
        late.close()

    assert harness.written_by(sync(engine, with_window.integration_id)) == ["3"]
    assert sync(engine, with_window.integration_id).records_written == 0, "nothing is written twice"
    assert harness.written_by(sync(engine, without.integration_id)) == [], "without a window, the late row is lost"
