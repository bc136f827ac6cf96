"""Integration fixtures: moto in-process with the table and key the template declares."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.support.apigw import http_event
from tests.support.handlers import load_handler_module

TABLE = "churnguard-test-data"


@dataclass
class ApiResponse:
    status: int
    body: Any
    headers: dict[str, str]
    raw: str


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "TABLE_NAME": TABLE,
        "POWERTOOLS_SERVICE_NAME": "churnguard",
        "POWERTOOLS_METRICS_NAMESPACE": "ChurnGuardTest",
        # The provider fakes listen on 127.0.0.1, which only a deployment allowing private
        # networks reaches; tests of the guard itself switch it off.
        "ALLOW_PRIVATE_NETWORK_SOURCES": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
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
        kms = boto3.client("kms")
        key_arn = kms.create_key(Description="test credentials key")["KeyMetadata"]["Arn"]
        monkeypatch.setenv("KMS_KEY_ID", key_arn)
        token_key = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["Arn"]
        monkeypatch.setenv("PAGE_TOKEN_KEY_ID", token_key)
        # The continuous consumer workflow the management API starts for real-time databases
        # (moto records executions and runs nothing).
        consumer = boto3.client("stepfunctions").create_state_machine(
            name="stream-consumer",
            definition='{"StartAt": "Turn", "States": {"Turn": {"Type": "Pass", "End": true}}}',
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]
        monkeypatch.setenv("STREAM_CONSUMER_STATE_MACHINE_ARN", consumer)
        from churnguard import aws as aws_clients
        from churnguard.api import dashboard, integrations, keys, syncs

        caches = (
            aws_clients.client,
            integrations.service,
            keys.service,
            dashboard.probe,
            dashboard.services,
            syncs.launcher,
        )
        for cached in caches:
            cached.cache_clear()
        yield {"dynamodb": dynamodb, "kms": kms, "table": TABLE, "key_arn": key_arn}
        for cached in caches:
            cached.cache_clear()


class ManagementApi:
    """Calls the management handler in-process with the authorizer's context for an org."""

    def __init__(self) -> None:
        self.module = load_handler_module("management_api")

    def call(
        self,
        method: str,
        path: str,
        *,
        org: str | None = "org_a",
        body: Any = None,
        raw_body: str | None = None,
        query: dict[str, str] | None = None,
        auth_error: str | None = None,
        headers: dict[str, str] | None = None,
        base64_body: bytes | None = None,
    ) -> ApiResponse:
        authorizer: dict[str, str] = (
            {"organization_id": org, "key_id": "key_000000000000"}
            if org
            else {
                "organization_id": "",
                "auth_error": auth_error or "missing_api_key",
            }
        )
        event = http_event(
            method, path, body=body, raw_body=raw_body, query=query, headers=headers, authorizer=authorizer
        )
        if base64_body is not None:
            event["body"], event["isBase64Encoded"] = base64.b64encode(base64_body).decode(), True
        result = self.module.lambda_handler(event, LambdaContextStub())
        raw = result.get("body") or ""
        content_type = (result.get("headers") or {}).get("Content-Type", "")
        parsed = json.loads(raw) if raw and "json" in content_type else raw
        return ApiResponse(result["statusCode"], parsed, result.get("headers") or {}, raw)


class LambdaContextStub:
    function_name = "ManagementFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ManagementFunction"
    memory_limit_in_mb = 512
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/ManagementFunction"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


@pytest.fixture
def api(aws: dict[str, Any]) -> ManagementApi:
    return ManagementApi()


@pytest.fixture
def lake(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The data lake bucket in moto, as the template names it to functions (DATA_LAKE_BUCKET)."""
    from tests.support.sync import BUCKET

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("DATA_LAKE_BUCKET", BUCKET)
    return s3


@pytest.fixture
def harness(aws: dict[str, Any], lake: Any) -> Any:
    from tests.support.sync import SyncHarness

    return SyncHarness(aws, lake)


@pytest.fixture
def postgres() -> Iterator[Any]:
    """A fresh schema in the test PostgreSQL (CHURNGUARD_TEST_POSTGRES_URL), dropped afterwards."""
    import secrets

    import psycopg2

    from tests.support.sync import POSTGRES_URL, DatabaseUrl, TestDatabase

    url = DatabaseUrl.parse(POSTGRES_URL, 5432)
    conn = psycopg2.connect(
        host=url.host, port=url.port, user=url.user, password=url.password or None, dbname=url.database
    )
    conn.autocommit = True
    schema = f"cg_{secrets.token_hex(6)}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield TestDatabase(conn, url, schema)
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()


@pytest.fixture
def mysql() -> Iterator[Any]:
    """A fresh database in the test MySQL/MariaDB (CHURNGUARD_TEST_MYSQL_URL), dropped afterwards."""
    import secrets

    import pymysql

    from tests.support.sync import MYSQL_URL, DatabaseUrl, TestDatabase

    url = DatabaseUrl.parse(MYSQL_URL, 3306)
    conn = pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password, autocommit=True)
    database = f"cg_{secrets.token_hex(6)}"
    # A login with a password for the integration: basic_auth credentials always carry one.
    login = (database, secrets.token_hex(12))
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
        cur.execute(f"USE `{database}`")
        cur.execute(f"CREATE USER '{login[0]}'@'%' IDENTIFIED BY '{login[1]}'")
        cur.execute(f"GRANT ALL ON `{database}`.* TO '{login[0]}'@'%'")
    try:
        yield TestDatabase(conn, url, database, login)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE `{database}`")
            cur.execute(f"DROP USER '{login[0]}'@'%'")
        conn.close()
