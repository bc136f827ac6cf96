"""Database → S3 data lake throughput: the real sync pipeline against the database's ceiling, a
bare loop and dlt, on PostgreSQL and MariaDB/MySQL.

Loads N rows (default 1,000,000) of one table shape into a scratch schema (PostgreSQL,
CHURNGUARD_TEST_POSTGRES_URL) or database (MariaDB, CHURNGUARD_TEST_MYSQL_URL):

    customers(id, email, name, plan, mrr numeric, status, updated_at timestamptz, payload jsonb)

(MariaDB: DECIMAL, TIMESTAMP(6) and JSON), then runs each mode in a fresh interpreter, so every
mode's peak memory (max RSS of that process alone) is its own:

- copy:     the database's and wire's ceiling, rows counted and dropped. PostgreSQL:
            `COPY (SELECT … ORDER BY updated_at, id) TO STDOUT`. MariaDB has no COPY (and
            `SELECT … INTO OUTFILE` writes on the server): the fastest raw streaming read from
            Python, PyMySQL `SSCursor.fetchmany(10000)`, rows dropped;
- bare:     server-side cursor → dict → orjson → gzip JSON lines, nothing else: what any Python
            sync costs. The JSON column is parsed with orjson.loads (psycopg2's jsonb caster set to
            it; MariaDB's JSON arrives as text), so the payload is JSON in the output too;
- pipeline: the real thing. SyncEngine.start_sync → prepare → extract_step (loop) → finalize,
            through mapping, validation, canonical records, dedupe keys, the S3 sink and DynamoDB
            checkpoints. AWS is a moto server in its own process (AWS_ENDPOINT_URL), started fresh
            for each run, so the RSS is the pipeline's own; the server's peak RSS is shown apart;
- dlt:      the open-source peer, dlt's `sql_table` source (default SQLAlchemy backend) with
            loader_file_format="jsonl" into the `filesystem` destination (a temp directory), in
            `.venv-bench` (requirements-bench.txt), extract + normalize + load timed.

Timings cover moving the data only (imports, connection and AWS setup excluded). copy, bare and
pipeline run `--repeat` times (default 3), dlt `--dlt-repeat` times (default 1), interleaved
round-robin; the table shows medians and ratios of medians measured in this run.

State transitions: one more sync of the same table runs through the real state machine
(`statemachines/sync.asl.json`) on the local cloud (LocalCloud on template.yaml: management API →
Step Functions interpreter → sync task function → S3), and the `…StateEntered` events of its
execution's history are counted.

Targets (the issue's bar): pipeline ≥ 100,000 rows/s, ≥ 0.8× the bare loop, ≥ 5× dlt, peak RSS
< 256 MB, ≤ 30 state transitions per million rows, every row written. Not part of the test run.

    .venv/bin/python -m benchmarks.db_sync [--rows 1000000] [--engine postgresql|mysql|both] [--json]
    (dlt: python3.11 -m venv .venv-bench && .venv-bench/bin/pip install -r requirements-bench.txt)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

REPO = Path(__file__).resolve().parents[1]
BENCH_PYTHON = REPO / ".venv-bench" / "bin" / "python"
POSTGRES_URL = os.environ.get("CHURNGUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("CHURNGUARD_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
ENGINES = ("postgresql", "mysql")
MODES = ("copy", "bare", "pipeline", "dlt")
PAGE = 10_000
LOGIN_VARIABLE = "CHURNGUARD_BENCH_LOGIN_PASSWORD"

BAR_ROWS_PER_SECOND = 100_000
BAR_VS_BARE = 0.8
BAR_VS_DLT = 5.0
BAR_RSS_MB = 256
BAR_TRANSITIONS_PER_MILLION = 30

COPY_LABEL = {
    "postgresql": "COPY (SELECT …) TO STDOUT",
    "mysql": "PyMySQL SSCursor fetchmany, rows dropped",
}


# ---------------------------------------------------------------- connections and the table


class Url:
    def __init__(self, engine: str) -> None:
        raw, default_port = (POSTGRES_URL, 5432) if engine == "postgresql" else (MYSQL_URL, 3306)
        parts = urlsplit(raw)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or default_port
        self.user = unquote(parts.username or "")
        self.password = unquote(parts.password or "")
        self.database = parts.path.lstrip("/") or "test"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def connect(engine: str, database: str | None = None) -> Any:
    url = Url(engine)
    if engine == "postgresql":
        import psycopg2

        return psycopg2.connect(
            host=url.host, port=url.port, user=url.user, password=url.password or None, dbname=url.database
        )
    import pymysql

    conn = pymysql.connect(
        host=url.host,
        port=url.port,
        user=url.user,
        password=url.password,
        database=database or url.database,
        autocommit=True,
    )
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
    return conn


def table_ref(engine: str, name: str) -> str:
    """The benchmark table, quoted for the engine (`name` is our scratch schema or database)."""
    return f'"{name}".customers' if engine == "postgresql" else f"`{name}`.customers"


def load(engine: str, name: str, rows: int) -> None:
    conn = connect(engine)
    if engine == "postgresql":
        conn.autocommit = True
        statements = [
            f'CREATE SCHEMA "{name}"',
            f"""CREATE TABLE "{name}".customers (
                id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL, plan text NOT NULL,
                mrr numeric(10, 2) NOT NULL, status text NOT NULL, updated_at timestamptz NOT NULL,
                payload jsonb NOT NULL)""",
            f"""INSERT INTO "{name}".customers
            SELECT i, 'user' || i || '@example.com', 'Customer ' || i, (ARRAY['free', 'pro', 'team'])[1 + i % 3],
                   (i % 100000) / 100.0, (ARRAY['active', 'trialing', 'past_due', 'canceled'])[1 + i % 4],
                   timestamptz '2024-01-01' + (i / 50) * interval '1 second',
                   jsonb_build_object('seats', i % 50, 'source', (ARRAY['web', 'sales', 'partner'])[1 + i % 3],
                                      'tags', jsonb_build_array('t' || i % 7, 't' || i % 11),
                                      'score', (i % 100) / 100.0)
            FROM generate_series(1, {int(rows)}) AS i""",
            f'CREATE INDEX ON "{name}".customers (updated_at, id)',
            f'ANALYZE "{name}".customers',
        ]
    else:
        statements = [
            f"CREATE DATABASE `{name}`",
            f"""CREATE TABLE `{name}`.customers (
                id BIGINT PRIMARY KEY, email VARCHAR(255) NOT NULL, name VARCHAR(255) NOT NULL,
                plan VARCHAR(16) NOT NULL, mrr DECIMAL(10, 2) NOT NULL, status VARCHAR(16) NOT NULL,
                updated_at TIMESTAMP(6) NOT NULL, payload JSON NOT NULL,
                KEY updated_at_id (updated_at, id)) ENGINE=InnoDB""",
            # MariaDB's Sequence engine: seq_1_to_N is a virtual table of 1..N.
            f"""INSERT INTO `{name}`.customers
            SELECT seq, CONCAT('user', seq, '@example.com'), CONCAT('Customer ', seq),
                   ELT(1 + seq % 3, 'free', 'pro', 'team'), (seq % 100000) / 100.0,
                   ELT(1 + seq % 4, 'active', 'trialing', 'past_due', 'canceled'),
                   TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (seq DIV 50) SECOND,
                   JSON_OBJECT('seats', seq % 50, 'source', ELT(1 + seq % 3, 'web', 'sales', 'partner'),
                               'tags', JSON_ARRAY(CONCAT('t', seq % 7), CONCAT('t', seq % 11)),
                               'score', (seq % 100) / 100.0)
            FROM seq_1_to_{int(rows)}""",
            f"ANALYZE TABLE `{name}`.customers",
            # The integration's login: basic_auth credentials always carry a password.
            f"CREATE USER '{name}'@'%' IDENTIFIED BY '{os.environ[LOGIN_VARIABLE]}'",
            f"GRANT ALL ON `{name}`.* TO '{name}'@'%'",
        ]
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
            if engine == "mysql" and cur.description:
                cur.fetchall()
    conn.close()


def drop(engine: str, name: str) -> None:
    conn = connect(engine)
    if engine == "postgresql":
        conn.autocommit = True
    with conn.cursor() as cur:
        if engine == "postgresql":
            cur.execute(f'DROP SCHEMA "{name}" CASCADE')
        else:
            cur.execute(f"DROP DATABASE `{name}`")
            cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")
    conn.close()


def select(engine: str, name: str) -> str:
    return f"SELECT * FROM {table_ref(engine, name)} ORDER BY updated_at, id"


# ---------------------------------------------------------------- modes (each in its own process)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_copy(engine: str, name: str) -> dict[str, Any]:
    conn = connect(engine)
    rows = 0
    cpu, started = _cpu(), time.perf_counter()
    if engine == "postgresql":

        class Counter:
            lines = 0

            def write(self, data: bytes) -> int:
                self.lines += data.count(b"\n")
                return len(data)

        sink = Counter()
        with conn.cursor() as cur:
            cur.copy_expert(f"COPY ({select(engine, name)}) TO STDOUT", sink)
        rows = sink.lines
    else:
        import pymysql.cursors

        with conn.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute(select(engine, name))
            while batch := cur.fetchmany(PAGE):
                rows += len(batch)
    seconds = time.perf_counter() - started
    conn.close()
    result: dict[str, Any] = {"rows": rows, "seconds": seconds, "cpu_before": cpu}
    if engine == "mysql":
        result["cli_rows_per_second"] = _mariadb_cli(name)
    return result


def _mariadb_cli(name: str) -> int | None:
    """The server's and wire's ceiling with a C client: the `mariadb` CLI streaming (--quick) the
    same SELECT to a pipe whose lines are counted. Informational: PyMySQL is what Python gets."""
    import shutil

    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None:
        return None
    url = Url("mysql")
    command = [client, "-h", url.host, "-P", str(url.port), "-u", url.user, "--quick", "--batch", "-N"]
    if url.password:
        command.append(f"-p{url.password}")
    started = time.perf_counter()
    lines = 0
    with subprocess.Popen([*command, "-e", select("mysql", name)], stdout=subprocess.PIPE) as process:
        assert process.stdout is not None
        while chunk := process.stdout.read(1 << 20):
            lines += chunk.count(b"\n")
    if process.returncode != 0:
        return None
    return round(lines / (time.perf_counter() - started))


def run_bare(engine: str, name: str) -> dict[str, Any]:
    import orjson

    conn = connect(engine)
    rows = 0
    out = 0
    cpu, started = _cpu(), time.perf_counter()
    if engine == "postgresql":
        import psycopg2.extras

        psycopg2.extras.register_default_jsonb(conn, loads=orjson.loads)  # not the stdlib's json
        cur = conn.cursor(name="bench")
        cur.itersize = PAGE
    else:
        import pymysql.cursors

        cur = conn.cursor(pymysql.cursors.SSCursor)
    with cur:
        cur.execute(select(engine, name))
        names: tuple[str, ...] | None = None
        compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
        while batch := cur.fetchmany(PAGE):
            names = names or tuple(c[0] for c in cur.description)
            records = [dict(zip(names, row, strict=True)) for row in batch]
            if engine == "mysql":
                for record in records:
                    record["payload"] = orjson.loads(record["payload"])
            lines = [orjson.dumps(record, default=str) for record in records]
            out += len(compressor.compress(b"\n".join(lines) + b"\n"))
            rows += len(batch)
        out += len(compressor.flush())
    seconds = time.perf_counter() - started
    conn.close()
    return {"rows": rows, "seconds": seconds, "gzip_bytes": out, "cpu_before": cpu}


def _bench_integration(engine: str, name: str) -> tuple[str, str, dict[str, Any]]:
    """(provider, base_url, credentials document) of an integration reading the bench table."""
    url = Url(engine)
    if engine == "postgresql":  # basic_auth always carries a password; trust auth ignores it
        user, password, database = url.user, url.password or "trust-auth-ignores-this", url.database
    else:  # MariaDB refuses a password for a login without one: a scratch login (see load)
        user, password, database = name, os.environ[LOGIN_VARIABLE], name
    credentials = {
        "credential_type": "basic_auth",
        "username": user,
        "password": password,
        "custom_fields": {"database": database},
    }
    return engine, url.address, credentials


def run_pipeline(engine: str, name: str) -> dict[str, Any]:
    """The engine end to end, as the state machine drives it, against the moto server named by
    AWS_ENDPOINT_URL (another process)."""
    import boto3

    from churnguard.crypto import CredentialCipher
    from churnguard.integrations import IntegrationService
    from churnguard.models import IntegrationConfiguration, IntegrationCredentials, SyncConfiguration
    from churnguard.pipeline.sinks import S3DataLakeSink
    from churnguard.resilience import RetryPolicy
    from churnguard.runs import SyncRef
    from churnguard.store.circuit_breakers import CircuitBreakerStore
    from churnguard.store.integrations import IntegrationStore
    from churnguard.store.syncs import SyncStore
    from churnguard.sync.engine import SyncEngine

    if not os.environ.get("AWS_ENDPOINT_URL"):
        raise SystemExit("the pipeline mode needs AWS_ENDPOINT_URL (a moto server)")
    provider, base_url, credentials = _bench_integration(engine, name)
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
        provider_name=provider,  # type: ignore[arg-type]
        base_url=base_url,
        entity_mappings={"customer": f"{name}.customers"},
        credentials=IntegrationCredentials.model_validate(credentials),
        sync_config=SyncConfiguration(batch_size=PAGE),
    )
    service.register(config)
    engine_ = SyncEngine(
        syncs=SyncStore(dynamodb, "bench"),
        integrations=integrations,
        credentials=service.load_credentials,
        breakers=CircuitBreakerStore(dynamodb, "bench"),
        sinks=[S3DataLakeSink(s3, "bench-lake", RetryPolicy(attempts=3, base_delay=1.0))],
    )
    cpu, started = _cpu(), time.perf_counter()
    run = engine_.start_sync("org_bench", config.integration_id)
    ref = SyncRef(organization_id="org_bench", integration_id=config.integration_id, sync_id=run.sync_id)
    engine_.prepare(ref)
    steps = 0
    # What the state machine gives a step: 3/4 of a 15-minute Lambda, 5M records.
    while True:
        steps += 1
        if engine_.extract_step(ref, 675, 5_000_000).done:
            break
    finished = engine_.finalize(ref)
    seconds = time.perf_counter() - started
    objects = s3.list_objects_v2(Bucket="bench-lake").get("KeyCount", 0)
    return {
        "rows": finished.records_written,
        "seconds": seconds,
        "status": finished.status.value,
        "rejected": finished.records_rejected,
        "extract_steps": steps,
        "s3_objects": objects,
        "cpu_before": cpu,
    }


def run_dlt(engine: str, name: str) -> dict[str, Any]:
    """dlt's sql_table (default backend) → jsonl → filesystem destination, in `.venv-bench`."""
    with tempfile.TemporaryDirectory(prefix="dlt-bench-") as tmp:
        os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
        os.environ["DLT_DATA_DIR"] = str(Path(tmp) / "data")
        import dlt
        from dlt.sources.sql_database import sql_table

        url = Url(engine)
        auth = url.user + (f":{url.password}" if url.password else "")
        if engine == "postgresql":
            credentials, schema = f"postgresql://{auth}@{url.address}/{url.database}", name
        else:
            credentials, schema = f"mysql+pymysql://{auth}@{url.address}/{name}", None
        pipeline = dlt.pipeline(
            pipeline_name=f"bench_{engine}",
            pipelines_dir=str(Path(tmp) / "pipelines"),
            destination=dlt.destinations.filesystem(bucket_url=(Path(tmp) / "lake").as_uri()),
            dataset_name="bench",
        )
        cpu, started = _cpu(), time.perf_counter()
        source = sql_table(credentials=credentials, table="customers", schema=schema)
        pipeline.run(source, loader_file_format="jsonl")
        seconds = time.perf_counter() - started
        counts = pipeline.last_trace.last_normalize_info.row_counts  # type: ignore[union-attr]
        files = [p for p in (Path(tmp) / "lake").rglob("*") if p.is_file() and "customers" in p.parts]
        return {
            "rows": int(counts.get("customers", 0)),
            "seconds": seconds,
            "files": len(files),
            "backend": "sqlalchemy (default)",
            "dlt_version": dlt.__version__,
            "cpu_before": cpu,
        }


def run_transitions(engine: str, name: str) -> dict[str, Any]:
    """One sync of the table through the real state machine on the local cloud: counts the
    execution's StateEntered events."""
    import requests

    from churnguard.admin import create_api_key
    from local.cloud import LocalCloud

    provider, base_url, credentials = _bench_integration(engine, name)
    with LocalCloud(REPO / "template.yaml", ports={"ManagementApi": 0, "WebhookApi": 0}, moto_port=0) as cloud:
        created = create_api_key(
            table_name=cloud.resources["DataTable"]["physical_id"],
            organization_id="org_bench",
            name="bench",
            dynamodb=cloud.boto3_client("dynamodb"),
        )
        api = str(cloud.api_urls["ManagementApi"])
        headers = {"Authorization": f"Bearer {created.api_key}"}
        response = requests.post(
            f"{api}/api/integrations",
            headers=headers,
            timeout=30,
            json={
                "integration_name": "bench",
                "provider_name": provider,
                "base_url": base_url,
                "status": "active",
                "entity_mappings": {"customer": f"{name}.customers"},
                "credentials": credentials,
                "sync_config": {"batch_size": PAGE, "sync_frequency": 3600},
            },
        )
        response.raise_for_status()
        integration_id = response.json()["integration_id"]
        cpu, started = _cpu(), time.perf_counter()
        response = requests.post(f"{api}/api/integrations/{integration_id}/sync", headers=headers, timeout=30)
        response.raise_for_status()
        sync_id = response.json()["sync_id"]
        sfn = cloud.boto3_client("stepfunctions")
        machine = cloud.resources["SyncStateMachine"]["physical_id"]
        execution_arn = None
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            if execution_arn is None:
                for execution in sfn.list_executions(stateMachineArn=machine)["executions"]:
                    if execution["name"] == sync_id:
                        execution_arn = execution["executionArn"]
            if execution_arn is not None and sfn.describe_execution(executionArn=execution_arn)["status"] != "RUNNING":
                break
            time.sleep(0.2)
        else:
            raise SystemExit(f"the sync {sync_id} did not finish in time")
        seconds = time.perf_counter() - started
        status = sfn.describe_execution(executionArn=execution_arn)["status"]
        events: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = sfn.get_execution_history(
                executionArn=execution_arn, maxResults=1000, **({"nextToken": token} if token else {})
            )
            events += page["events"]
            token = page.get("nextToken")
            if not token:
                break
        entered = [e for e in events if e["type"].endswith("StateEntered")]
        states = [e["stateEnteredEventDetails"]["name"] for e in entered]
        run = requests.get(f"{api}/api/integrations/{integration_id}/sync/status", headers=headers, timeout=30).json()
    return {
        "rows": int(run.get("records_processed") or 0),
        "seconds": seconds,
        "execution_status": status,
        "sync_status": run.get("status"),
        "transitions": len(entered),
        "extract_steps": states.count("Extract"),
        "states": states,
        "cpu_before": cpu,
    }


RUNNERS = {
    "copy": run_copy,
    "bare": run_bare,
    "pipeline": run_pipeline,
    "dlt": run_dlt,
    "transitions": run_transitions,
}


def measure(mode: str, engine: str, name: str) -> dict[str, Any]:
    """Runs one mode in this process: rows, seconds and CPU seconds of this process (user + system,
    all threads) while moving data, and this process's peak RSS."""
    result = RUNNERS[mode](engine, name)
    result["mode"] = mode
    result["rows_per_second"] = round(result["rows"] / result["seconds"]) if result["seconds"] else 0
    result["seconds"] = round(result["seconds"], 2)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["max_rss_mb"] = round(usage.ru_maxrss / 1024)
    result["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime - result.pop("cpu_before", 0.0), 2)
    return result


# ---------------------------------------------------------------- orchestration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A fresh moto server in its own process; yields its URL and process."""
    import requests

    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.1)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (from /proc)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)
    return None


def _peak_rss_mb(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    return None


def child(mode: str, engine: str, name: str) -> dict[str, Any]:
    """Runs one mode in a fresh interpreter (dlt: in .venv-bench) and returns its result."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "shared"), str(REPO)]),
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    python = sys.executable
    if mode == "dlt":
        if not BENCH_PYTHON.exists():
            return {"mode": mode, "error": "no .venv-bench (pip install -r requirements-bench.txt)"}
        python, env["PYTHONPATH"] = str(BENCH_PYTHON), str(REPO)
    command = [python, "-m", "benchmarks.db_sync", "--mode", mode, "--engine", engine, "--name", name]
    with contextlib.ExitStack() as stack:
        server = None
        if mode == "pipeline":
            env["AWS_ENDPOINT_URL"], server = stack.enter_context(moto_server())
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        moto_rss = _peak_rss_mb(server.pid) if server is not None else None
        moto_cpu = _cpu_seconds(server.pid) if server is not None else None
    if done.returncode != 0:
        return {"mode": mode, "error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if moto_rss is not None:
        result["moto_server_rss_mb"] = moto_rss
        result["moto_server_cpu_seconds"] = moto_cpu  # start-up included (about 1 s)
    return result


def summarise(mode: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if "error" not in r]
    summary: dict[str, Any] = {"runs": runs, "n": len(good)}
    if good:
        summary["median_rows_per_second"] = round(statistics.median(r["rows_per_second"] for r in good))
        summary["median_seconds"] = round(statistics.median(r["seconds"] for r in good), 2)
        summary["median_cpu_seconds"] = round(statistics.median(r["cpu_seconds"] for r in good), 2)
        summary["peak_rss_mb"] = max(r["max_rss_mb"] for r in good)
        summary["rows"] = min(r["rows"] for r in good)
    return summary


def bench_engine(
    engine: str, rows: int, modes: tuple[str, ...], repeat: int, dlt_repeat: int, transitions: bool
) -> dict[str, Any]:
    name = f"bench_{secrets.token_hex(4)}"
    os.environ[LOGIN_VARIABLE] = secrets.token_hex(12)  # children inherit it
    # The bench databases are on this machine: the address guard allows them as a VPC deployment would.
    os.environ["ALLOW_PRIVATE_NETWORK_SOURCES"] = "true"
    loading = time.perf_counter()
    load(engine, name, rows)
    loaded = time.perf_counter() - loading
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    state: dict[str, Any] | None = None
    try:
        for round_ in range(max(repeat, dlt_repeat)):
            for mode in modes:
                if round_ < (dlt_repeat if mode == "dlt" else repeat):
                    runs[mode].append(child(mode, engine, name))
                    print(f"  {engine} {mode} run {round_ + 1}: {_brief(runs[mode][-1])}", file=sys.stderr)
        if transitions:
            state = child("transitions", engine, name)
            print(f"  {engine} transitions: {_brief(state)}", file=sys.stderr)
    finally:
        drop(engine, name)
    summaries = {mode: summarise(mode, runs[mode]) for mode in MODES}
    return {
        "engine": engine,
        "rows": rows,
        "load_seconds": round(loaded, 1),
        "copy_mode": COPY_LABEL[engine],
        "modes": summaries,
        "transitions": state,
        **verdict(rows, summaries, state),
    }


def _brief(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"ERROR {result['error']}"
    speed = f"{result['rows_per_second']:,} rows/s"
    return f"{result['rows']:,} rows in {result['seconds']} s = {speed}, RSS {result['max_rss_mb']} MB"


def _ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    if "median_rows_per_second" not in a or not b.get("median_rows_per_second"):
        return None
    return round(a["median_rows_per_second"] / b["median_rows_per_second"], 2)


def verdict(rows: int, modes: dict[str, Any], state: dict[str, Any] | None) -> dict[str, Any]:
    pipeline = modes["pipeline"]
    ratios = {
        "pipeline_vs_copy": _ratio(pipeline, modes["copy"]),
        "pipeline_vs_bare": _ratio(pipeline, modes["bare"]),
        "pipeline_vs_dlt": _ratio(pipeline, modes["dlt"]),
        "bare_vs_dlt": _ratio(modes["bare"], modes["dlt"]),
    }
    per_million = None
    if state and "error" not in state and state.get("rows"):
        per_million = round(state["transitions"] * 1_000_000 / state["rows"], 1)

    def target(label: str, value: Any, ok: bool | None, bar: str) -> dict[str, Any]:
        return {"target": label, "bar": bar, "value": value, "ok": ok}

    speed = pipeline.get("median_rows_per_second")
    targets = [
        target(
            "every row written",
            pipeline.get("rows"),
            None if not pipeline["runs"] else pipeline.get("rows") == rows and pipeline["n"] > 0,
            f"{rows:,}",
        ),
        target("pipeline rows/s", speed, None if speed is None else speed >= BAR_ROWS_PER_SECOND, "≥ 100,000"),
        target(
            "pipeline vs bare loop",
            ratios["pipeline_vs_bare"],
            None if ratios["pipeline_vs_bare"] is None else ratios["pipeline_vs_bare"] >= BAR_VS_BARE,
            f"≥ {BAR_VS_BARE}×",
        ),
        target(
            "pipeline vs dlt",
            ratios["pipeline_vs_dlt"],
            None if ratios["pipeline_vs_dlt"] is None else ratios["pipeline_vs_dlt"] >= BAR_VS_DLT,
            f"≥ {BAR_VS_DLT:g}×",
        ),
        target(
            "pipeline peak RSS MB",
            pipeline.get("peak_rss_mb"),
            None if "peak_rss_mb" not in pipeline else pipeline["peak_rss_mb"] < BAR_RSS_MB,
            f"< {BAR_RSS_MB}",
        ),
        target(
            "state transitions / 1M rows",
            per_million,
            None if per_million is None else per_million <= BAR_TRANSITIONS_PER_MILLION,
            f"≤ {BAR_TRANSITIONS_PER_MILLION}",
        ),
    ]
    return {
        "ratios": ratios,
        "transitions_per_million_rows": per_million,
        "targets": targets,
        "passed": all(t["ok"] is True for t in targets),
    }


def render(report: dict[str, Any]) -> str:
    out: list[str] = []
    for result in report["engines"]:
        modes = result["modes"]
        out.append(f"\n{result['engine']}: {result['rows']:,} rows (loaded in {result['load_seconds']} s)")
        out.append(
            f"  {'mode':<10}{'runs':>5}{'median rows/s':>15}{'median s':>10}{'CPU s':>7}{'peak RSS MB':>13}"
            f"{'vs bare':>9}{'vs dlt':>8}  notes"
        )
        for mode in MODES:
            m = modes[mode]
            if not m["runs"]:
                out.append(f"  {mode:<10}{0:>5}  not run")
                continue
            if not m["n"]:
                errors = [r.get("error") for r in m["runs"]]
                out.append(f"  {mode:<10}{0:>5}  failed: {errors}")
                continue
            note = {
                "copy": result["copy_mode"]
                + (
                    "; mariadb CLI --quick to a pipe: "
                    + "/".join(f"{r.get('cli_rows_per_second') or 0:,}" for r in m["runs"])
                    + " rows/s"
                    if result["engine"] == "mysql"
                    else ""
                ),
                "bare": "server-side cursor → dict → orjson → gzip",
                "pipeline": "moto server (own process): peak RSS "
                + "/".join(str(r.get("moto_server_rss_mb")) for r in m["runs"])
                + " MB, CPU s "
                + "/".join(str(r.get("moto_server_cpu_seconds")) for r in m["runs"])
                + "; extract steps "
                + "/".join(str(r.get("extract_steps")) for r in m["runs"]),
                "dlt": f"dlt {m['runs'][0].get('dlt_version')} sql_table, {m['runs'][0].get('backend')}, jsonl",
            }[mode]
            speeds = "/".join(f"{r['rows_per_second']:,}" for r in m["runs"] if "error" not in r)
            out.append(
                f"  {mode:<10}{m['n']:>5}{m['median_rows_per_second']:>15,}{m['median_seconds']:>10}"
                f"{m['median_cpu_seconds']:>7}"
                f"{m['peak_rss_mb']:>13}{_fmt(_ratio(m, modes['bare'])):>9}{_fmt(_ratio(m, modes['dlt'])):>8}"
                f"  runs {speeds}; {note}"
            )
        state = result["transitions"]
        if state is None:
            out.append("  state machine: not measured")
        elif "error" in state:
            out.append(f"  state machine: failed {state['error']}")
        else:
            out.append(
                f"  state machine (local cloud, {state['rows']:,} rows, {state['seconds']} s, "
                f"{state['execution_status']}): {state['transitions']} transitions, "
                f"{state['extract_steps']} extract step(s): {' → '.join(state['states'])}"
            )
        out.append("  targets:")
        for t in result["targets"]:
            mark = {True: "ok", False: "MISSED", None: "n/a"}[t["ok"]]
            value = f"{t['value']:,}" if isinstance(t["value"], int) else str(t["value"])
            out.append(f"    {t['target']:<30}{value:>12}  (bar {t['bar']})  {mark}")
    out.append(f"\noverall: {'all targets met' if report['passed'] else 'targets MISSED'}")
    return "\n".join(out)


def _fmt(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}×"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=(*ENGINES, "both"), default="both")
    parser.add_argument("--repeat", type=int, default=3, help="runs of copy, bare and pipeline (median)")
    parser.add_argument("--dlt-repeat", type=int, default=1, help="runs of dlt (median)")
    parser.add_argument("--no-transitions", action="store_true", help="skip the state-machine run")
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated subset of copy,bare,pipeline,dlt (default: all)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--save", type=Path, help="also write the JSON report to this file")
    parser.add_argument("--mode", choices=[*MODES, "transitions"], help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:  # a child run
        print(json.dumps(measure(args.mode, args.engine, args.name), default=str))
        return 0

    engines = ENGINES if args.engine == "both" else (args.engine,)
    modes = tuple(mode for mode in MODES if mode in args.modes.split(","))
    results = [
        bench_engine(engine, args.rows, modes, args.repeat, args.dlt_repeat, not args.no_transitions)
        for engine in engines
    ]
    report = {"rows": args.rows, "engines": results, "passed": all(r["passed"] for r in results)}
    if args.save:
        args.save.write_text(json.dumps(report, default=str, indent=1))
    print(json.dumps(report, default=str) if args.json else render(report))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
