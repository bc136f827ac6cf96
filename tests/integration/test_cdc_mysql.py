"""Change data capture from the real MariaDB (binary log on, ROW, FULL image and metadata, which
.ci/run sets) into the moto data lake: snapshot and stream handoff, deletes, schema changes, big
transactions, crashes, the guardian and purged logs. Every check compares the lake with the table.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pymysql
import pytest

from churnguard.cdc_models import CapturePhase, LogRisk
from churnguard.models import ProviderName
from tests.support.cdc import Cdc, crashed_turn, latest, once_each

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def cdc(harness: Any, mysql: Any) -> Cdc:
    assert mysql.login is not None
    mysql.execute(f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{mysql.login[0]}'@'%'")
    return Cdc(harness, mysql, ProviderName.MYSQL)


def create_accounts(db: Any, rows: int) -> None:
    db.execute(f"CREATE TABLE `{db.name}`.accounts (id bigint PRIMARY KEY, plan varchar(40), mrr int)")
    db.execute(f"INSERT INTO `{db.name}`.accounts (id, plan, mrr) SELECT seq, 'free', 0 FROM seq_1_to_{rows}")


def table_rows(db: Any) -> dict[str, dict[str, Any]]:
    with db.conn.cursor() as cur:
        cur.execute(f"SELECT id, plan, mrr FROM `{db.name}`.accounts ORDER BY id")
        return {str(row[0]): {"plan": row[1], "mrr": row[2]} for row in cur.fetchall()}


def purge_binary_logs(db: Any) -> None:
    """Purges every binary log but a new one; MariaDB keeps the previous file until its binlog
    checkpoint is written, so this asks until it is gone."""
    with db.conn.cursor() as cur:
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW MASTER STATUS")
        (current, *_) = cur.fetchone()
        for _ in range(50):
            cur.execute(f"PURGE BINARY LOGS TO '{current}'")
            cur.execute("SHOW BINARY LOGS")
            if [name for name, *_ in cur.fetchall()] == [current]:
                return
            time.sleep(0.1)
    raise AssertionError("the older binary logs were not purged")


def test_snapshot_and_binlog_hand_over_without_gap_or_overlap_under_concurrent_writes(cdc: Cdc) -> None:
    create_accounts(cdc.db, 3_000)
    cdc.register({"account": "accounts"})
    stop = threading.Event()
    rounds = Counter[str]()

    def writer() -> None:
        url = cdc.db.url
        conn = pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password, autocommit=True)
        next_id = 3_001
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute(f"INSERT INTO `{cdc.db.name}`.accounts VALUES (%s, 'new', 1)", [next_id])
                cur.execute(
                    f"UPDATE `{cdc.db.name}`.accounts SET mrr = mrr + 1, plan = 'pro' WHERE id = %s",
                    [next_id % 2_900 + 1],
                )
                cur.execute(f"DELETE FROM `{cdc.db.name}`.accounts WHERE id = %s", [next_id - 2_000])
                rounds["rounds"] += 1
                next_id += 1
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.3)
        assert cdc.turn(budget=2.0).keep_going
        assert cdc.state().phase is CapturePhase.STREAMING
        cdc.turn(budget=1.0)
    finally:
        stop.set()
        thread.join()
    cdc.turn(budget=2.5)

    records = cdc.records()
    assert rounds["rounds"] > 50
    once_each(records)
    lake = latest(records)
    assert {key: {"plan": row["plan"], "mrr": row["mrr"]} for key, row in lake.items()} == table_rows(cdc.db)
    snapshot = [r for r in records if r["batch_id"].endswith("_s1")]
    streamed = [r for r in records if not r["batch_id"].endswith("_s1")]
    assert snapshot and streamed
    assert max(r["cursor"] for r in snapshot) < min(r["cursor"] for r in streamed)
    assert any(r["operation"] == "delete" for r in streamed)
    assert all(r["provider"] == "mysql" and r["entity"] == "account" and r["event_time"] for r in streamed)


def test_the_binary_log_is_read_from_the_snapshot_position_not_from_the_start_of_its_file(cdc: Cdc) -> None:
    """Twenty transactions of a hundred updates each, after earlier writes in the same file: each
    change lands once, none before the snapshot again, none missing."""
    create_accounts(cdc.db, 3_000)
    cdc.db.execute(f"UPDATE `{cdc.db.name}`.accounts SET mrr = 7 WHERE id <= 500")  # before the snapshot
    cdc.register({"account": "accounts"})
    cdc.turn(budget=0.5)
    for first in range(1, 2_001, 100):
        cdc.db.execute(f"UPDATE `{cdc.db.name}`.accounts SET mrr = mrr + 1 WHERE id BETWEEN {first} AND {first + 99}")

    cdc.turn(budget=2.0)

    streamed = [r for r in cdc.records() if not r["batch_id"].endswith("_s1")]
    once_each(cdc.records())
    assert sorted(int(r["record_id"]) for r in streamed) == list(range(1, 2_001))
    assert cdc.state().changes_landed == 2_000


def test_readiness_names_the_missing_replication_grant(harness: Any, mysql: Any) -> None:
    cdc = Cdc(harness, mysql, ProviderName.MYSQL)
    create_accounts(mysql, 2)
    cdc.register({"account": "accounts"})

    outcome = cdc.turn()

    assert not outcome.keep_going
    assert any("GRANT REPLICATION SLAVE" in problem for problem in cdc.state().problems)
    assert mysql.login is not None
    mysql.execute(f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{mysql.login[0]}'@'%'")
    assert cdc.config is not None
    cdc.lifecycle.apply(cdc.config)
    assert cdc.turn(budget=0.5).keep_going and cdc.state().problems == []


def test_a_large_transaction_deletes_and_a_column_added_mid_stream(cdc: Cdc) -> None:
    db = cdc.db
    create_accounts(db, 10)
    cdc.register({"account": "accounts"}, batch_size=5_000)
    cdc.turn(budget=0.5)
    db.execute(f"INSERT INTO `{db.name}`.accounts SELECT seq, 'bulk', seq FROM seq_100_to_200099")
    db.execute(f"DELETE FROM `{db.name}`.accounts WHERE id <= 5")
    db.execute(f"ALTER TABLE `{db.name}`.accounts ADD COLUMN region varchar(8)")
    db.execute(f"UPDATE `{db.name}`.accounts SET region = 'eu' WHERE id = 7")
    # A turn that ends inside the transaction makes the next read it again from its start
    # (skipping what landed): long turns, as deployed, read it through.
    for _ in range(10):
        cdc.turn(budget=15.0)
        if cdc.state().changes_landed >= 200_006:
            break

    records = cdc.records()
    once_each(records)
    bulk = [r for r in records if r["data"].get("plan") == "bulk"]
    assert len(bulk) == 200_000
    assert max(Counter(r["batch_id"] for r in bulk).values()) <= 5_000, "a transaction is written in bounded parts"
    assert sorted(int(r["record_id"]) for r in records if r["operation"] == "delete") == [1, 2, 3, 4, 5]
    assert [r["data"]["region"] for r in records if r["record_id"] == "7" and "region" in r["data"]] == ["eu"]
    assert set(latest(records)) == set(table_rows(db))


def test_a_crash_after_the_lake_write_and_before_the_checkpoint_lands_each_change_once(
    cdc: Cdc, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_accounts(cdc.db, 5)
    cdc.register({"account": "accounts"})
    cdc.turn(budget=0.5)
    cdc.db.execute(f"UPDATE `{cdc.db.name}`.accounts SET plan = 'team', mrr = 9")
    crashed_turn(cdc, monkeypatch, budget=2.5)
    assert len([r for r in cdc.records() if r["data"]["plan"] == "team"]) == 5

    cdc.turn(budget=2.5)

    records = cdc.records()
    once_each(records)
    assert len([r for r in records if r["data"]["plan"] == "team"]) == 5


def test_purged_binary_logs_are_snapshotted_again_never_skipped(cdc: Cdc) -> None:
    create_accounts(cdc.db, 20)
    cdc.register({"account": "accounts"})
    cdc.turn(budget=0.5)
    before = cdc.capture.guard(cdc.config) if cdc.config else None
    assert before is not None and before.risk is LogRisk.OK and before.retained_bytes is not None
    cdc.db.execute(f"UPDATE `{cdc.db.name}`.accounts SET plan = 'lost-while-away' WHERE id <= 10")
    cdc.db.execute(f"DELETE FROM `{cdc.db.name}`.accounts WHERE id > 15")
    purge_binary_logs(cdc.db)

    cdc.turn(budget=1.0)

    state = cdc.state()
    assert state.snapshots == 2 and state.phase is CapturePhase.STREAMING
    assert any("purged" in note.message for note in state.notes)
    again = [r for r in cdc.records() if r["batch_id"].endswith("_s2")]
    assert sorted(int(r["record_id"]) for r in again) == list(range(1, 16))
    assert {r["data"]["plan"] for r in again if int(r["record_id"]) <= 10} == {"lost-while-away"}


def test_the_guardian_sees_the_binary_log_grow_while_the_consumer_is_stopped(cdc: Cdc) -> None:
    create_accounts(cdc.db, 10)
    config = cdc.register({"account": "accounts"})
    cdc.turn(budget=0.5)
    before = cdc.capture.guard(config)
    cdc.db.execute(f"INSERT INTO `{cdc.db.name}`.accounts SELECT seq, repeat('x', 40), seq FROM seq_1000_to_30000")

    after = cdc.capture.guard(config)

    assert before is not None and after is not None
    assert before.retained_bytes is not None and after.retained_bytes is not None
    assert after.retained_bytes > before.retained_bytes + 500_000
    assert after.risk is LogRisk.OK and after.seconds_left is None  # no expiry set, under 10 GiB

    # Where logs expire, the time left is the expiry less the age of the file holding our position.
    with cdc.db.conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.binlog_expire_logs_seconds")
        (expiry,) = cur.fetchone()
        cur.execute("SET GLOBAL binlog_expire_logs_seconds = 30 * 86400")
    try:
        expiring = cdc.capture.guard(config)
    finally:
        with cdc.db.conn.cursor() as cur:
            cur.execute(f"SET GLOBAL binlog_expire_logs_seconds = {int(expiry)}")
    assert expiring is not None and expiring.seconds_left is not None
    assert 29 * 86400 < expiring.seconds_left <= 30 * 86400 and expiring.risk is LogRisk.OK
