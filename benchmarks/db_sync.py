"""PostgreSQL → S3 data lake throughput: the real sync pipeline against COPY and a bare loop.

Loads N rows (default 1,000,000) into a scratch schema of the test PostgreSQL
(CHURNGUARD_TEST_POSTGRES_URL), then runs each mode in a fresh interpreter, so every mode's peak
memory (max RSS) is its own:

- copy:     `COPY (SELECT … ORDER BY updated_at, id) TO STDOUT`, bytes counted and dropped: the
            server's and wire's ceiling;
- bare:     server-side cursor → dict → orjson → gzip, nothing else: what any Python sync costs;
- pipeline: the real thing. SyncEngine.start_sync → prepare → extract_step (loop) → finalize,
            through mapping, validation, canonical records, dedupe keys, the S3 sink (moto, in
            process) and DynamoDB checkpoints.

The bar: the pipeline moves at least 100,000 rows/s on this 2-core machine. Not part of the test
run; `make bench` runs it.

    .venv/bin/python -m benchmarks.db_sync [--rows 1000000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BAR_ROWS_PER_SECOND = 100_000
MODES = ("copy", "bare", "pipeline")
PAGE = 10_000


def _connect() -> Any:
    import psycopg2

    from tests.support.sync import POSTGRES_URL, DatabaseUrl

    url = DatabaseUrl.parse(POSTGRES_URL, 5432)
    conn = psycopg2.connect(
        host=url.host, port=url.port, user=url.user, password=url.password or None, dbname=url.database
    )
    return conn, url


def load(schema: str, rows: int) -> None:
    conn, _ = _connect()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
        cur.execute(
            f"""
            CREATE TABLE "{schema}".customers (
                id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL, plan text NOT NULL,
                mrr numeric(10, 2) NOT NULL, active boolean NOT NULL, created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL
            );
            INSERT INTO "{schema}".customers
            SELECT i, 'user' || i || '@example.com', 'Customer ' || i, (ARRAY['free', 'pro', 'team'])[1 + i %% 3],
                   (i %% 1000) / 10.0, i %% 7 <> 0, timestamptz '2023-01-01' + i * interval '1 second',
                   timestamptz '2024-01-01' + (i / 50) * interval '1 second'
            FROM generate_series(1, %s) AS i;
            CREATE INDEX ON "{schema}".customers (updated_at, id);
            ANALYZE "{schema}".customers;
            """,
            (rows,),
        )
    conn.close()


def drop(schema: str) -> None:
    conn, _ = _connect()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
    conn.close()


def run_copy(schema: str) -> tuple[int, float]:
    conn, _ = _connect()
    started = time.perf_counter()

    class Counter:
        lines = 0

        def write(self, data: bytes) -> int:
            self.lines += data.count(b"\n")
            return len(data)

    sink = Counter()
    with conn.cursor() as cur:
        cur.copy_expert(f'COPY (SELECT * FROM "{schema}".customers ORDER BY updated_at, id) TO STDOUT', sink)
    seconds = time.perf_counter() - started
    conn.close()
    return sink.lines, seconds


def run_bare(schema: str) -> tuple[int, float]:
    import orjson

    conn, _ = _connect()
    started = time.perf_counter()
    rows = 0
    with conn.cursor(name="bench") as cur:
        cur.itersize = PAGE
        cur.execute(f'SELECT * FROM "{schema}".customers ORDER BY updated_at, id')
        names: tuple[str, ...] | None = None
        compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
        while batch := cur.fetchmany(PAGE):
            names = names or tuple(c.name for c in cur.description)
            lines = [orjson.dumps(dict(zip(names, row, strict=True)), default=str) for row in batch]
            compressor.compress(b"\n".join(lines))
            rows += len(batch)
        compressor.flush()
    seconds = time.perf_counter() - started
    conn.close()
    return rows, seconds


def run_pipeline(schema: str) -> tuple[int, float]:
    """The engine end to end, on moto in this process, as the state machine drives it."""
    import boto3
    from moto import mock_aws

    from churnguard.connectors.resilience import RetryPolicy
    from churnguard.crypto import CredentialCipher
    from churnguard.integrations import IntegrationService
    from churnguard.models import IntegrationConfiguration, IntegrationCredentials, SyncConfiguration
    from churnguard.pipeline.sinks import S3DataLakeSink
    from churnguard.store.circuit_breakers import CircuitBreakerStore
    from churnguard.store.integrations import IntegrationStore
    from churnguard.store.syncs import SyncStore
    from churnguard.sync.engine import SyncEngine
    from churnguard.sync.models import SyncRef

    _, url = _connect()
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    with mock_aws():
        dynamodb, kms, s3 = boto3.client("dynamodb"), boto3.client("kms"), boto3.client("s3")
        dynamodb.create_table(
            TableName="bench",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            BillingMode="PAY_PER_REQUEST",
        )
        s3.create_bucket(Bucket="bench-lake")
        integrations = IntegrationStore(dynamodb, "bench")
        service = IntegrationService(integrations, CredentialCipher(kms, kms.create_key()["KeyMetadata"]["Arn"]))
        config = IntegrationConfiguration(
            organization_id="org_bench",
            integration_name="bench",
            provider_name="postgresql",  # type: ignore[arg-type]
            base_url=url.address,
            entity_mappings={"customer": f"{schema}.customers"},
            credentials=IntegrationCredentials.model_validate(
                {
                    "credential_type": "basic_auth",
                    "username": url.user,
                    "password": url.password or "unused",
                    "custom_fields": {"database": url.database},
                }
            ),
            sync_config=SyncConfiguration(batch_size=PAGE),
        )
        service.register(config)
        engine = SyncEngine(
            syncs=SyncStore(dynamodb, "bench"),
            integrations=integrations,
            credentials=service.load_credentials,
            breakers=CircuitBreakerStore(dynamodb, "bench"),
            sinks=[S3DataLakeSink(s3, "bench-lake", RetryPolicy(attempts=3, base_delay=1.0))],
        )
        started = time.perf_counter()
        run = engine.start_sync("org_bench", config.integration_id)
        ref = SyncRef(organization_id="org_bench", integration_id=config.integration_id, sync_id=run.sync_id)
        engine.prepare(ref)
        # A Lambda-sized step: 13 minutes of a 15-minute timeout, or 2M records.
        while not engine.extract_step(ref, 780, 2_000_000).done:
            pass
        finished = engine.finalize(ref)
        return finished.records_written, time.perf_counter() - started


def measure(mode: str, schema: str) -> dict[str, Any]:
    """Runs one mode in this process and reports rows, seconds (moving data only: imports and
    setup excluded) and peak memory."""
    runner = {"copy": run_copy, "bare": run_bare, "pipeline": run_pipeline}[mode]
    rows, seconds = runner(schema)
    return {
        "mode": mode,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:  # a child run
        print(json.dumps(measure(args.mode, args.schema)))
        return 0

    schema = f"bench_{secrets.token_hex(4)}"
    loading = time.perf_counter()
    load(schema, args.rows)
    loaded = time.perf_counter() - loading
    results = []
    try:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "shared"), str(REPO)])}
        for mode in MODES:
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.db_sync", "--mode", mode, "--schema", schema],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    finally:
        drop(schema)
    pipeline = next(r for r in results if r["mode"] == "pipeline")
    passed = pipeline["rows"] == args.rows and pipeline["rows_per_second"] >= BAR_ROWS_PER_SECOND
    if args.json:
        print(json.dumps({"rows": args.rows, "load_seconds": round(loaded, 1), "results": results, "passed": passed}))
    else:
        print(f"{args.rows:,} rows loaded in {loaded:.1f}s")
        print(f"{'mode':<10}{'rows/s':>12}{'seconds':>10}{'max RSS MB':>12}")
        for r in results:
            print(f"{r['mode']:<10}{r['rows_per_second']:>12,}{r['seconds']:>10}{r['max_rss_mb']:>12}")
        verdict = "meets" if passed else "MISSES"
        print(f"pipeline {verdict} the bar of {BAR_ROWS_PER_SECOND:,} rows/s with every row written")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
