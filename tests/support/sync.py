"""Helpers for sync tests: database fixtures' connection settings, an engine on moto, running a
sync to the end the way the state machine does, and reading the data lake back."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from churnguard.crypto import CredentialCipher
from churnguard.integrations import IntegrationService
from churnguard.models import IntegrationConfiguration, IntegrationCredentials, ProviderName, SyncConfiguration
from churnguard.pipeline.sinks import S3DataLakeSink, Sink
from churnguard.resilience import RetryPolicy
from churnguard.runs import StepResult, SyncRef, SyncRun
from churnguard.store.activity import ActivityStore
from churnguard.store.circuit_breakers import CircuitBreakerStore
from churnguard.store.integrations import IntegrationStore
from churnguard.store.run_history import RunHistoryStore
from churnguard.store.syncs import SyncStore
from churnguard.sync.engine import SyncEngine

POSTGRES_URL = os.environ.get("CHURNGUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("CHURNGUARD_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
BUCKET = "churnguard-test-lake"
ORG = "org_sync"


@dataclass(frozen=True)
class DatabaseUrl:
    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def parse(cls, url: str, default_port: int) -> DatabaseUrl:
        parts = urlsplit(url)
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or default_port,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            database=parts.path.lstrip("/") or "test",
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class TestDatabase:
    """A connection to a per-test schema (PostgreSQL) or database (MySQL), and its name."""

    conn: Any
    url: DatabaseUrl
    name: str
    login: tuple[str, str] | None = None  # (user, password) for integrations, when not the admin's

    def execute(self, statement: str, params: tuple[Any, ...] | list[Any] = ()) -> None:
        with self.conn.cursor() as cur:
            cur.execute(statement, params or None)  # no parameters: no %-formatting either

    def executemany(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(statement, rows)


def credentials(user: str, password: str, database: str, **extra: str) -> IntegrationCredentials:
    # basic_auth needs a password; the local servers trust connections and ignore it.
    return IntegrationCredentials.model_validate(
        {
            "credential_type": "basic_auth",
            "username": user,
            "password": password or "unused-password",
            "custom_fields": {"database": database, **extra},
        }
    )


class SyncHarness:
    """The stores, service and engine of one test, on the moto table, key and bucket."""

    def __init__(self, aws: dict[str, Any], s3: Any) -> None:
        self.dynamodb = aws["dynamodb"]
        self.s3 = s3
        self.integrations = IntegrationStore(self.dynamodb, aws["table"])
        self.service = IntegrationService(self.integrations, CredentialCipher(aws["kms"], aws["key_arn"]))
        self.syncs = SyncStore(self.dynamodb, aws["table"])
        self.breakers = CircuitBreakerStore(self.dynamodb, aws["table"])
        self.activity = ActivityStore(self.dynamodb, aws["table"])
        self.histories = RunHistoryStore(self.dynamodb, aws["table"])
        self.lake = S3DataLakeSink(s3, BUCKET, RetryPolicy(attempts=0, base_delay=0.0))

    def register(
        self,
        provider: ProviderName,
        base_url: str,
        creds: IntegrationCredentials,
        entity_mappings: dict[str, str],
        *,
        name: str = "source",
        sync_config: dict[str, Any] | None = None,
        **settings: Any,
    ) -> IntegrationConfiguration:
        config = IntegrationConfiguration(
            organization_id=ORG,
            integration_name=name,
            provider_name=provider,
            base_url=base_url,
            entity_mappings=entity_mappings,
            credentials=creds,
            # The default 60 requests a minute would make every SaaS test wait; pacing tests set theirs.
            sync_config=SyncConfiguration.model_validate(
                {"retry_backoff": 1, "requests_per_minute": 60_000, **(sync_config or {})}
            ),
            **settings,
        )
        self.service.register(config)
        return config

    def engine(self, *, sinks: list[Sink] | None = None, **options: Any) -> SyncEngine:
        return SyncEngine(
            syncs=self.syncs,
            integrations=self.integrations,
            credentials=self.service.load_credentials,
            save_credentials=self.service.replace_credentials,
            breakers=self.breakers,
            sinks=sinks if sinks is not None else [self.lake],
            activity=self.activity,
            histories=self.histories,
            **{"cancel_poll_seconds": 0.0, "sleep": lambda _seconds: None, **options},
        )

    def lake_records(self, area: str = "", organization_id: str = ORG) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for key in self.lake_keys(area, organization_id):
            body = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            records += [json.loads(line) for line in gzip.decompress(body).splitlines()]
        return records

    def written_by(self, run: SyncRun) -> list[str]:
        """The record ids `run` wrote, sorted (numerically where they are numbers)."""
        ids = [r["record_id"] for r in self.lake_records() if r["batch_id"] == run.sync_id]
        return sorted(ids, key=lambda value: (len(value), value) if value.isdigit() else (0, value))

    def lake_keys(self, area: str = "", organization_id: str = ORG) -> list[str]:
        keys: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=BUCKET, Prefix=f"{area}org={organization_id}/"):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys


def ref(run: SyncRun) -> SyncRef:
    return SyncRef(organization_id=run.organization_id, integration_id=run.integration_id, sync_id=run.sync_id)


def drive(
    engine: SyncEngine,
    run: SyncRun,
    *,
    record_budget: int = 1_000_000,
    budget_seconds: float = 600.0,
    max_steps: int = 1_000,
    after_step: Callable[[StepResult], None] | None = None,
) -> SyncRun:
    """What the state machine does: prepare, extract until done, finalize."""
    engine.prepare(ref(run))
    for _ in range(max_steps):
        result = engine.extract_step(ref(run), budget_seconds, record_budget)
        if after_step is not None:
            after_step(result)
        if result.done:
            return engine.finalize(ref(run))
    raise AssertionError(f"the sync did not finish within {max_steps} steps")


def sync(engine: SyncEngine, integration_id: str, **options: Any) -> SyncRun:
    mode = options.pop("mode", None)
    return drive(engine, engine.start_sync(ORG, integration_id, mode=mode), **options)
