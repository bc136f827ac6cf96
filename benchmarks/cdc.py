"""Change data capture benchmark: PostgreSQL and MariaDB on this machine.

1. Throughput under a sustained update load, against a bare replication reader. `--changes`
   row updates (statements of 100 rows, each its own transaction) are written, then read twice
   over the same stretch of log: by the bare reader (PostgreSQL: a replication connection and our
   pgoutput decoder; MariaDB: mysql-replication's reader; decoding only, writing nothing) and by
   the platform (capture turns: values cast as a sync casts them, the record pipeline, parts
   gzipped as the S3 sink does, checkpoints in moto's DynamoDB in process). Medians of `--runs`;
   the bar is 0.7x the bare reader. DynamoDB calls are timed apart, as in benchmarks/streams.py:
   moto spends this process's CPU on each, where DynamoDB costs a network round trip.
2. Commit-to-lake latency through the local cloud (PostgreSQL): a real-time integration
   registered over the API, rows inserted at `--rate` a second for `--seconds`, each row's commit
   time against the moment its part appeared in the lake (polled every 0.2 s); p50 and p99.
3. Peak RSS while a 200,000-row transaction is captured, in a fresh process (`--rss` runs only
   this; the parent starts it).

    .venv/bin/python -m benchmarks.cdc [--changes 100000] [--runs 3] [--rate 1000] [--seconds 20]

Published anchors, for scale: Sequin reports 50k ops/s from one PostgreSQL slot; Debezium on MSK
Connect about 6k ops/s in the same test.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TABLE = "bench-cdc"
BAR = 0.7
ROWS = 20_000
STATEMENT_ROWS = 100


# ---------------------------------------------------------------------- databases


def postgres() -> Any:
    import psycopg2

    from tests.support.sync import POSTGRES_URL, DatabaseUrl

    url = DatabaseUrl.parse(POSTGRES_URL, 5432)
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.user, dbname=url.database)
    conn.autocommit = True
    return conn


def mariadb() -> Any:
    import pymysql

    from tests.support.sync import MYSQL_URL, DatabaseUrl

    url = DatabaseUrl.parse(MYSQL_URL, 3306)
    return pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password, autocommit=True)


def run(conn: Any, *statements: str) -> None:
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def update_load(conn: Any, table: str, changes: int) -> None:
    """`changes` row updates, 100 rows a statement, each statement its own transaction."""
    with conn.cursor() as cur:
        for start in range(0, changes, STATEMENT_ROWS):
            first = start % ROWS + 1
            cur.execute(f"UPDATE {table} SET mrr = mrr + 1 WHERE id BETWEEN {first} AND {first + STATEMENT_ROWS - 1}")


# ---------------------------------------------------------------------- the platform in process


class GzipSink:
    """What the S3 sink does to a part before uploading it; counts what it was given, and when."""

    def __init__(self) -> None:
        self.records = 0
        self.written_at = 0.0

    def write(self, part: Any) -> None:
        from churnguard.pipeline.sinks import gzip_bytes

        gzip_bytes(part.records)
        self.records += part.record_count
        self.written_at = time.perf_counter()

    def discard(self, key: Any) -> None:
        return None


@contextmanager
def platform() -> Iterator[dict[str, Any]]:
    """moto in process: the table, key and consumer workflow a capture needs."""
    import os

    import boto3
    from moto import mock_aws

    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "ALLOW_PRIVATE_NETWORK_SOURCES": "true",
        }
    )
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(
            TableName=TABLE,
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            BillingMode="PAY_PER_REQUEST",
        )
        key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
        machine = boto3.client("stepfunctions").create_state_machine(
            name="consumer",
            definition='{"StartAt": "T", "States": {"T": {"Type": "Pass", "End": true}}}',
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]
        yield {"dynamodb": dynamodb, "key": key, "machine": machine}


class Capture:
    """One real-time integration's capture, timed."""

    def __init__(self, aws: dict[str, Any], provider: str, address: str, login: dict[str, Any], table: str) -> None:
        import boto3

        from benchmarks.streams import TimedClient
        from churnguard.cdc.capture import ChangeCapture
        from churnguard.cdc.lifecycle import CaptureLifecycle
        from churnguard.continuous import ConsumerWorkflow
        from churnguard.crypto import CredentialCipher
        from churnguard.integrations import IntegrationService
        from churnguard.models import IntegrationConfiguration
        from churnguard.store.cdc import CaptureStore
        from churnguard.store.integrations import IntegrationStore
        from churnguard.store.streams import StreamStore

        self.client = TimedClient(aws["dynamodb"])
        integrations = IntegrationStore(self.client, TABLE)
        service = IntegrationService(integrations, CredentialCipher(boto3.client("kms"), aws["key"]))
        self.sink = GzipSink()
        self.captures = CaptureStore(self.client, TABLE)
        workflow = ConsumerWorkflow(boto3.client("stepfunctions"), aws["machine"])
        self.capture = ChangeCapture(
            self.captures, StreamStore(self.client, TABLE), integrations, service, [self.sink], workflow
        )
        self.config = IntegrationConfiguration.model_validate(
            {
                "organization_id": "org_bench",
                "integration_name": f"{provider} bench {secrets.token_hex(3)}",
                "provider_name": provider,
                "base_url": address,
                "status": "active",
                "entity_mappings": {"account": table},
                "credentials": login,
                "sync_config": {"sync_mode": "real_time", "batch_size": 5_000},
            }
        )
        service.register(self.config)
        self.lifecycle = CaptureLifecycle(self.captures, service, workflow)
        self.lifecycle.apply(self.config)

    def turns_until(self, landed: int, budget: float = 2.0) -> float:
        """Seconds from the first turn until the part that brought the changes landed to
        `landed` was written (a turn reads on for its budget; that idle tail is not counted)."""
        started = time.perf_counter()
        while True:
            state = self.captures.get("org_bench", self.config.integration_id)
            if state.changes_landed >= landed and state.phase.value == "streaming":
                return self.sink.written_at - started
            assert state.consumer_execution is not None
            self.capture.turn("org_bench", self.config.integration_id, state.consumer_execution, 0, budget)

    def release(self) -> None:
        self.lifecycle.remove(self.config)


# ---------------------------------------------------------------------- bare readers


def bare_postgres(conn: Any, slot: str, publication: str, expected: int) -> float:
    """Seconds for a replication connection and the pgoutput decoder to go through `expected` changes."""
    import select

    import psycopg2
    import psycopg2.extras

    from churnguard.connectors.pgoutput import Change, PgOutputDecoder

    dsn = conn.get_dsn_parameters()
    replication = psycopg2.connect(
        host=dsn["host"],
        port=dsn["port"],
        user=dsn["user"],
        dbname=dsn["dbname"],
        connection_factory=psycopg2.extras.LogicalReplicationConnection,
    )
    cur = replication.cursor()
    decoder = PgOutputDecoder()
    seen = 0
    started = time.perf_counter()
    cur.start_replication(
        slot_name=slot, decode=False, options={"proto_version": "1", "publication_names": publication}
    )
    while seen < expected:
        message = cur.read_message()
        if message is None:
            select.select([replication], [], [], 1.0)
            continue
        if isinstance(decoder.decode(message.payload), Change):
            seen += 1
    elapsed = time.perf_counter() - started
    replication.close()
    return elapsed


def bare_mariadb(start: tuple[str, int], expected: int) -> float:
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.row_event import UpdateRowsEvent

    from tests.support.sync import MYSQL_URL, DatabaseUrl

    url = DatabaseUrl.parse(MYSQL_URL, 3306)
    reader = BinLogStreamReader(
        connection_settings={"host": url.host, "port": url.port, "user": url.user, "password": url.password},
        server_id=4_000_000_001,
        resume_stream=True,
        # Non-blocking reads end with an error MariaDB's dump thread sends that mysql-replication
        # takes for a lost connection (and reconnects for ever): block, and stop at the count.
        blocking=True,
        slave_heartbeat=1.0,
        log_file=start[0],
        log_pos=start[1],
        only_events=[UpdateRowsEvent],
        is_mariadb=True,
        enable_logging=False,
    )
    seen = 0
    started = time.perf_counter()
    while seen < expected:
        event = reader.fetchone()
        seen += len(event.rows)
    elapsed = time.perf_counter() - started
    reader.close()
    return elapsed


# ---------------------------------------------------------------------- 1. throughput


def throughput_postgres(aws: dict[str, Any], changes: int, runs: int) -> dict[str, Any]:
    from tests.support.sync import POSTGRES_URL, DatabaseUrl

    url = DatabaseUrl.parse(POSTGRES_URL, 5432)
    conn = postgres()
    schema = f"bench_cdc_{secrets.token_hex(4)}"
    table = f'"{schema}".accounts'
    run(
        conn,
        f'CREATE SCHEMA "{schema}"',
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, plan text, mrr integer)",
        f"ALTER TABLE {table} REPLICA IDENTITY FULL",
        f"INSERT INTO {table} SELECT i, 'pro', 0 FROM generate_series(1, {ROWS}) i",
        f"CREATE PUBLICATION {schema} FOR TABLE {table}",
    )
    login = {
        "credential_type": "basic_auth",
        "username": url.user,
        "password": "trust-auth-ignores-this",
        "custom_fields": {"database": url.database},
    }
    capture = Capture(aws, "postgresql", url.address, login, f"{schema}.accounts")
    try:
        capture.turns_until(0)  # the snapshot
        bare, platform_s, own = [], [], []
        for index in range(runs):
            slot = f"{schema}_{index}"
            run(conn, f"SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')")
            update_load(conn, table, changes)
            bare.append(bare_postgres(conn, slot, schema, changes))
            run(conn, f"SELECT pg_drop_replication_slot('{slot}')")
            capture.client.seconds = 0.0
            elapsed = capture.turns_until(changes * (index + 1))
            platform_s.append(elapsed)
            own.append(elapsed - capture.client.seconds)
        return _rates("postgresql", changes, bare, platform_s, own)
    finally:
        capture.release()
        run(conn, f"DROP PUBLICATION IF EXISTS {schema}", f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()


def throughput_mariadb(aws: dict[str, Any], changes: int, runs: int) -> dict[str, Any]:
    from tests.support.sync import MYSQL_URL, DatabaseUrl

    url = DatabaseUrl.parse(MYSQL_URL, 3306)
    conn = mariadb()
    database = f"bench_cdc_{secrets.token_hex(4)}"
    user, password = database, secrets.token_hex(12)
    table = f"`{database}`.accounts"
    run(
        conn,
        f"CREATE DATABASE `{database}`",
        f"USE `{database}`",
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, plan varchar(40), mrr int)",
        f"INSERT INTO {table} SELECT seq, 'pro', 0 FROM seq_1_to_{ROWS}",
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
        f"GRANT ALL ON `{database}`.* TO '{user}'@'%'",
        f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'%'",
    )
    login = {
        "credential_type": "basic_auth",
        "username": user,
        "password": password,
        "custom_fields": {"database": database},
    }
    capture = Capture(aws, "mysql", url.address, login, "accounts")
    try:
        capture.turns_until(0)
        bare, platform_s, own = [], [], []
        for index in range(runs):
            with conn.cursor() as cur:
                cur.execute("SHOW MASTER STATUS")
                file, position = cur.fetchone()[:2]
            update_load(conn, table, changes)
            bare.append(bare_mariadb((file, int(position)), changes))
            capture.client.seconds = 0.0
            elapsed = capture.turns_until(changes * (index + 1))
            platform_s.append(elapsed)
            own.append(elapsed - capture.client.seconds)
        return _rates("mariadb", changes, bare, platform_s, own)
    finally:
        run(conn, f"DROP DATABASE `{database}`", f"DROP USER '{user}'@'%'")
        conn.close()


def _rates(name: str, changes: int, bare: list[float], platform_s: list[float], own: list[float]) -> dict[str, Any]:
    bare_rate = changes / statistics.median(bare)
    rate = changes / statistics.median(platform_s)
    own_rate = changes / statistics.median(own)
    return {
        "database": name,
        "changes_per_run": changes,
        "bare_reader_per_s": round(bare_rate),
        "platform_per_s": round(rate),
        "ratio": round(rate / bare_rate, 2),
        "platform_own_work_per_s": round(own_rate),
        "own_work_ratio": round(own_rate / bare_rate, 2),
        "within_bar": own_rate / bare_rate >= BAR,
    }


# ---------------------------------------------------------------------- 2. latency


def latency(rate: int, seconds: int) -> dict[str, Any]:
    import gzip
    from datetime import datetime

    from churnguard.admin import create_api_key
    from local.cloud import LocalCloud
    from tests.e2e.conftest import Tenant, register_postgres

    conn = postgres()
    schema = f"bench_lat_{secrets.token_hex(4)}"
    table = f'"{schema}".events'
    run(
        conn,
        f'CREATE SCHEMA "{schema}"',
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, committed_at timestamptz NOT NULL DEFAULT clock_timestamp())",
        f"ALTER TABLE {table} REPLICA IDENTITY FULL",
    )
    try:
        with LocalCloud(REPO / "template.yaml", ports={"ManagementApi": 0, "WebhookApi": 0}, moto_port=0) as cloud:
            created = create_api_key(
                table_name=cloud.resources["DataTable"]["physical_id"],
                organization_id="org_bench_cdc",
                name="bench",
                dynamodb=cloud.boto3_client("dynamodb"),
            )
            tenant = Tenant("org_bench_cdc", created.api_key, created.key_id, cloud.api_urls["ManagementApi"])
            integration_id = register_postgres(tenant, {"event": f"{schema}.events"})
            tenant.request(
                "PATCH", f"/api/integrations/{integration_id}", json={"sync_config": {"sync_mode": "real_time"}}
            )
            s3 = cloud.boto3_client("s3")
            bucket = cloud.resources["DataLakeBucket"]["physical_id"]
            prefix = "org=org_bench_cdc/provider=postgresql/entity=event/"
            seen_keys: set[str] = set()
            latencies: list[float] = []

            def poll() -> int:
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                    for obj in page.get("Contents", []):
                        if obj["Key"] in seen_keys:
                            continue
                        now = time.time()
                        seen_keys.add(obj["Key"])
                        body = gzip.decompress(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
                        for line in body.splitlines():
                            record = json.loads(line)
                            if "_s1" not in record["batch_id"]:
                                committed = datetime.fromisoformat(record["data"]["committed_at"]).timestamp()
                                latencies.append(now - committed)
                return len(latencies)

            _wait(lambda: _phase(tenant, integration_id) == "streaming", 120)
            total = rate * seconds
            writer = threading.Thread(target=_insert_at, args=(table, rate, seconds))
            writer.start()
            deadline = time.monotonic() + seconds + 120
            while poll() < total and time.monotonic() < deadline:
                time.sleep(0.2)
            writer.join()
            tenant.request("DELETE", f"/api/integrations/{integration_id}")
    finally:
        run(conn, f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()
    ordered = sorted(latencies)
    return {
        "rate_per_s": rate,
        "changes": len(ordered),
        "expected": total,
        "p50_s": round(ordered[len(ordered) // 2], 2) if ordered else None,
        "p99_s": round(ordered[int(len(ordered) * 0.99)], 2) if ordered else None,
        "max_s": round(ordered[-1], 2) if ordered else None,
        "poll_interval_s": 0.2,
    }


def _phase(tenant: Any, integration_id: str) -> str | None:
    status = tenant.request("GET", f"/api/integrations/{integration_id}/sync/status")
    if status.status_code != 200:
        return None
    return str(status.json()["change_capture"]["phase"])


def _insert_at(table: str, rate: int, seconds: int) -> None:
    """`rate` rows a second, ten per transaction, paced against the clock."""
    conn = postgres()
    started, sent = time.monotonic(), 0
    with conn.cursor() as cur:
        while sent < rate * seconds:
            due = int((time.monotonic() - started) * rate)
            while sent < min(due, rate * seconds):
                cur.execute(
                    f"INSERT INTO {table} (id) SELECT generate_series(%s, %s)",
                    [sent + 1, sent + 10],
                )
                sent += 10
            time.sleep(0.005)
    conn.close()


def _wait(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the capture did not start streaming")
        time.sleep(0.5)


# ---------------------------------------------------------------------- 3. peak RSS


def peak_rss() -> dict[str, Any]:
    """In this (fresh) process: VmRSS sampled every 20 ms while a 200,000-row transaction is captured."""
    from tests.support.sync import POSTGRES_URL, DatabaseUrl

    url = DatabaseUrl.parse(POSTGRES_URL, 5432)
    conn = postgres()
    schema = f"bench_rss_{secrets.token_hex(4)}"
    table = f'"{schema}".accounts'
    run(
        conn,
        f'CREATE SCHEMA "{schema}"',
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, plan text, mrr integer, note text)",
        f"ALTER TABLE {table} REPLICA IDENTITY FULL",
    )
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(_rss_kib())
            time.sleep(0.02)

    login = {
        "credential_type": "basic_auth",
        "username": url.user,
        "password": "trust-auth-ignores-this",
        "custom_fields": {"database": url.database},
    }
    try:
        with platform() as aws:
            capture = Capture(aws, "postgresql", url.address, login, f"{schema}.accounts")
            capture.turns_until(0)
            run(conn, f"INSERT INTO {table} SELECT i, 'bulk', i, repeat('n', 100) FROM generate_series(1, 200000) i")
            before = _rss_kib()
            sampler = threading.Thread(target=sample)
            sampler.start()
            capture.turns_until(200_000, budget=30.0)
            stop.set()
            sampler.join()
            capture.release()
            landed = capture.sink.records
    finally:
        run(conn, f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()
    return {
        "transaction_rows": 200_000,
        "records_landed": landed,
        "rss_before_mib": round(before / 1024, 1),
        "peak_rss_mib": round(max(samples) / 1024, 1),
        "within_256_mib": max(samples) / 1024 < 256,
    }


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rss", action="store_true", help="only the peak RSS figure (run in a fresh process)")
    arguments = parser.parse_args()
    sys.path[:0] = [str(REPO / "shared"), str(REPO)]
    if arguments.rss:
        print(json.dumps(peak_rss()))
        return
    results: dict[str, Any] = {}
    with platform() as aws:
        results["throughput"] = [
            throughput_postgres(aws, arguments.changes, arguments.runs),
            throughput_mariadb(aws, arguments.changes, arguments.runs),
        ]
    print(json.dumps(results["throughput"], indent=2), flush=True)
    rss = subprocess.run(
        [sys.executable, "-m", "benchmarks.cdc", "--rss"], cwd=REPO, capture_output=True, text=True, check=True
    )
    results["peak_rss"] = json.loads(rss.stdout.strip().splitlines()[-1])
    print(json.dumps(results["peak_rss"], indent=2), flush=True)
    results["latency"] = latency(arguments.rate, arguments.seconds)
    print(json.dumps(results["latency"], indent=2), flush=True)


if __name__ == "__main__":
    main()
