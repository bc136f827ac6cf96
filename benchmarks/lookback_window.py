"""What the lookback window costs a database read, on PostgreSQL's encoded fast path.

The window remembers the rows a read delivered within it (see connectors/lookback.py). For
history loaded long ago that is nothing; the worst case is a table whose every row changed in
the last minutes, where every page is in the window. This reads one table of `--rows` rows
through `PostgresConnector.read(encoded=True)` (rendered by PostgreSQL, as a sync does) with the
window off (the baseline) and on, for rows stamped in 2024 and rows stamped a minute ago, taking
each state as a checkpoint does every 50,000 rows, and reports the median of `--repeat` runs and
each ratio to the baseline of the same data in the same run.

    .venv/bin/python -m benchmarks.lookback_window [--rows 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time

import psycopg2

from churnguard.connectors.base import Position
from churnguard.models import IntegrationConfiguration, IntegrationCredentials, ProviderName
from churnguard.providers.postgresql.source import PostgresConnector
from churnguard.resilience import BreakerState, CircuitBreaker, Guard, RateLimiter, RetryPolicy

URL = os.environ.get("CHURNGUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
CHECKPOINT_ROWS = 50_000


class Healthy:
    """A breaker store for a source that never fails: nothing to record."""

    def load(self, organization_id: str, integration_id: str) -> BreakerState:
        return BreakerState()

    def record_failure(self, organization_id: str, integration_id: str, now: float, threshold: int) -> BreakerState:
        return BreakerState()

    def acquire_probe(self, organization_id: str, integration_id: str, seen: BreakerState, now: float) -> bool:
        return True

    def close(self, organization_id: str, integration_id: str) -> BreakerState:
        return BreakerState()


def load(schema: str, rows: int) -> None:
    conn = psycopg2.connect(URL)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
        for table, stamp in (("history", "timestamptz '2024-01-01'"), ("recent", "now() - interval '1 minute'")):
            cur.execute(
                f'CREATE TABLE "{schema}".{table} AS SELECT i AS id, md5(i::text) AS email, (i %% 3)::text AS plan,'
                f" {stamp} + i * interval '1 millisecond' AS updated_at FROM generate_series(1, %s) AS i",
                (rows,),
            )
            cur.execute(f'ALTER TABLE "{schema}".{table} ADD PRIMARY KEY (id)')
            cur.execute(f'CREATE INDEX ON "{schema}".{table} (updated_at, id)')
    conn.close()


def connector(schema: str, table: str, lookback: int) -> PostgresConnector:
    parsed = psycopg2.extensions.parse_dsn(URL)
    config = IntegrationConfiguration(
        organization_id="org_bench",
        integration_name="lookback",
        provider_name=ProviderName.POSTGRESQL,
        base_url=f"{parsed.get('host', '127.0.0.1')}:{parsed.get('port', 5432)}",
        entity_mappings={"customer": f"{schema}.{table}"},
        source_options={"customer": {"cursor_field": "updated_at", "lookback_seconds": lookback}},
    )
    credentials = IntegrationCredentials.model_validate(
        {
            "credential_type": "basic_auth",
            "username": parsed.get("user", "postgres"),
            "password": parsed.get("password") or "unused-password",
            "custom_fields": {"database": parsed.get("dbname", "test")},
        }
    )
    guard = Guard(RetryPolicy(0, 0.0), RateLimiter(100_000, 5), CircuitBreaker(Healthy(), "org_bench", "int_bench"))
    return PostgresConnector(config, credentials, guard)


def read_once(schema: str, table: str, lookback: int) -> tuple[float, int]:
    source = connector(schema, table, lookback)
    stream = source.stream("customer")
    assert stream.encodable, "the benchmark measures the encoded fast path"
    started, rows, since_checkpoint = time.perf_counter(), 0, 0
    try:
        for page in source.read(stream, Position(), 1_000, encoded=True):
            rows += len(page.rows)
            since_checkpoint += len(page.rows)
            if since_checkpoint >= CHECKPOINT_ROWS:
                source.state_of(stream, page.position)
                since_checkpoint = 0
        source.state_of(stream, page.position)
    finally:
        source.close()
    return time.perf_counter() - started, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("ALLOW_PRIVATE_NETWORK_SOURCES", "true")
    schema = f"cg_bench_{secrets.token_hex(4)}"
    load(schema, args.rows)
    try:
        print(f"PostgreSQL encoded read of {args.rows:,} rows, median of {args.repeat}")
        print(f"{'rows stamped':<14}{'window':>8}{'rows/s':>12}{'vs off':>9}")
        for table in ("history", "recent"):
            baseline = None
            for lookback in (0, 300):
                times = []
                for _ in range(args.repeat):
                    seconds, rows = read_once(schema, table, lookback)
                    assert rows == args.rows
                    times.append(seconds)
                median = statistics.median(times)
                baseline = baseline or median
                label = "2024" if table == "history" else "1 min ago"
                print(f"{label:<14}{lookback:>7}s{args.rows / median:>12,.0f}{median / baseline:>8.2f}x")
    finally:
        conn = psycopg2.connect(URL)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()


if __name__ == "__main__":
    main()
