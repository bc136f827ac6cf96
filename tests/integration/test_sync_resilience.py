"""Failures between the engine and its sources: a connection dropped mid-read, and the circuit
breaker whose state outlives a Lambda invocation (DynamoDB in moto)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from churnguard.models import ProviderName
from churnguard.pipeline.core import StreamPipeline
from churnguard.providers.postgresql.source import PostgresConnector
from churnguard.resilience import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    CircuitBreaker,
    CircuitOpenError,
)
from churnguard.runs import SyncStatus
from tests.support.sync import ORG, credentials, sync


def test_a_connection_dropped_mid_read_resumes_from_the_last_page(
    harness: Any, postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres.execute(
        f'CREATE TABLE "{postgres.name}".customers (id int PRIMARY KEY, updated_at timestamptz NOT NULL);'
        f" INSERT INTO \"{postgres.name}\".customers SELECT i, '2024-01-01' FROM generate_series(1, 1000) i"
    )
    url = postgres.url
    config = harness.register(
        ProviderName.POSTGRESQL,
        url.address,
        credentials(url.user, url.password, url.database),
        {"customer": f"{postgres.name}.customers"},
        sync_config={"batch_size": 100, "retry_attempts": 3},
    )
    original = StreamPipeline.process
    pages = {"count": 0}

    def process_then_drop(self: StreamPipeline, rows: Any, batch: Any, *args: Any) -> None:
        original(self, rows, batch, *args)
        pages["count"] += 1
        if pages["count"] == 3:  # the server goes away while the cursor is open
            postgres.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'churnguard-sync' AND pid <> pg_backend_pid()"
            )

    monkeypatch.setattr(StreamPipeline, "process", process_then_drop)
    translated: list[str] = []
    original_translate = PostgresConnector.translate

    def translate(self: PostgresConnector, exc: BaseException) -> Any:
        error = original_translate(self, exc)
        translated.append(type(error).__name__)
        return error

    monkeypatch.setattr(PostgresConnector, "translate", translate)
    run = sync(harness.engine(), config.integration_id)

    assert translated == ["TransientSourceError"], "the dropped connection should be retried once"
    assert run.status is SyncStatus.SUCCEEDED and run.records_written == 1000
    counts = Counter(r["record_id"] for r in harness.lake_records())
    assert len(counts) == 1000 and max(counts.values()) == 1
    assert harness.breakers.load(ORG, config.integration_id).state == CLOSED


def test_the_circuit_breaker_state_is_shared_across_invocations(harness: Any) -> None:
    now = {"t": 1_000.0}

    def breaker() -> CircuitBreaker:
        """A breaker as a fresh Lambda invocation builds it: no cached state."""
        return CircuitBreaker(
            harness.breakers, ORG, "int_breaker", failure_threshold=3, reset_timeout=60, clock=lambda: now["t"]
        )

    first = breaker()
    for _ in range(3):
        first.before_call()
        first.record_failure()
    assert harness.breakers.load(ORG, "int_breaker").state == OPEN

    second = breaker()
    with pytest.raises(CircuitOpenError) as refused:
        second.before_call()
    assert refused.value.retry_after == pytest.approx(60)

    now["t"] += 61
    prober, bystander = breaker(), breaker()
    prober.before_call()  # the one half-open probe
    assert harness.breakers.load(ORG, "int_breaker").state == HALF_OPEN
    with pytest.raises(CircuitOpenError):
        bystander.before_call()

    prober.record_failure()  # the probe failed: open again, for another full timeout
    assert harness.breakers.load(ORG, "int_breaker").state == OPEN
    now["t"] += 61
    prober = breaker()
    prober.before_call()
    prober.record_success()
    state = harness.breakers.load(ORG, "int_breaker")
    assert (state.state, state.failures) == (CLOSED, 0)
    breaker().before_call()
