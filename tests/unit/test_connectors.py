"""The connector SDK without a database: retry policy, rate limiter, state codec, identifier
rules, and the registry's lazy imports."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from churnguard.connectors.base import Position, Stream
from churnguard.connectors.identifiers import source_problems
from churnguard.models import DataSyncMode, IntegrationSettings
from churnguard.resilience import RateLimiter, RetryableError, RetryPolicy
from tests.support.handlers import REPO


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(times: int, error: Exception) -> Any:
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise error
        return "ok"

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def test_backoff_is_exponential_with_full_jitter() -> None:
    time = FakeTime()
    policy = RetryPolicy(
        attempts=4, base_delay=2.0, max_delay=10.0, sleep=time.sleep, clock=time.clock, jitter=lambda: 1.0
    )
    assert policy.call(failing(4, RetryableError("busy"))) == "ok"
    assert time.sleeps == [2.0, 4.0, 8.0, 10.0]  # the top of each jitter range, capped
    low = RetryPolicy(attempts=1, base_delay=2.0, jitter=lambda: 0.25)
    assert low.delay(3) == 4.0


def test_retry_after_is_honoured_and_attempts_are_bounded() -> None:
    time = FakeTime()
    policy = RetryPolicy(attempts=2, base_delay=1.0, sleep=time.sleep, clock=time.clock)
    assert policy.call(failing(1, RetryableError("slow down", retry_after=42.0))) == "ok"
    assert time.sleeps == [42.0]
    fn = failing(10, RetryableError("down"))
    with pytest.raises(RetryableError):
        policy.call(fn)
    assert fn.calls["n"] == 3  # the first try and two retries
    permanent = failing(10, ValueError("bad request"))
    with pytest.raises(ValueError, match="bad request"):
        policy.call(permanent)
    assert permanent.calls["n"] == 1


def test_a_retry_that_would_overrun_the_deadline_is_not_taken() -> None:
    time = FakeTime()
    policy = RetryPolicy(attempts=5, base_delay=1.0, sleep=time.sleep, clock=time.clock)
    with pytest.raises(RetryableError):
        policy.call(failing(10, RetryableError("x", retry_after=30.0)), deadline=20.0)
    assert time.sleeps == []


def test_rate_limiter_spaces_requests() -> None:
    time = FakeTime()
    limiter = RateLimiter(requests_per_minute=60, concurrent_requests=2, clock=time.clock, sleep=time.sleep)
    for _ in range(5):
        with limiter.slot():
            pass
    # Two at once (the burst), then one a second.
    assert time.now == pytest.approx(3.0)


def test_state_values_round_trip_with_their_types() -> None:
    from churnguard.providers.postgresql.source import PostgresConnector

    stream = Stream(
        entity="customer",
        source="public.customers",
        primary_key=("id", "ref"),
        cursor_field="updated_at",
        sync_modes=frozenset({DataSyncMode.FULL_SYNC, DataSyncMode.INCREMENTAL}),
    )
    connector = PostgresConnector.__new__(PostgresConnector)
    for cursor, key in [
        (datetime(2024, 1, 1, 12, tzinfo=UTC), (1, UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"))),
        (datetime(2024, 1, 1, 12), (Decimal("1.50"), b"\x00")),
        (date(2024, 1, 1), ("a", 2.5)),
        (None, (1, "x")),
    ]:
        position = Position(cursor, key)
        state = connector.state_of(stream, position)
        assert connector.position_of(stream, state) == position
        assert type(connector.position_of(stream, state).cursor) is type(cursor)  # type: ignore[union-attr]
    assert connector.position_of(stream, {}) == Position()
    moved = {**connector.state_of(stream, Position(1, (1, "x"))), "cursor_field": "modified"}
    assert connector.position_of(stream, moved) is None


def settings(provider: str, **fields: Any) -> IntegrationSettings:
    return IntegrationSettings.model_validate({"integration_name": "x", "provider_name": provider, **fields})


@pytest.mark.parametrize(
    ("provider", "fields", "bad"),
    [
        ("postgresql", {"entity_mappings": {"customer": "sales.customers"}}, []),
        ("postgresql", {"entity_mappings": {"customer": "customers'--"}}, ["entity_mappings.customer"]),
        ("postgresql", {"entity_mappings": {"customer": "1customers"}}, ["entity_mappings.customer"]),
        ("mysql", {"entity_mappings": {"customer": "shop.customers"}}, []),
        ("mysql", {"entity_mappings": {"customer": "cust`omers"}}, ["entity_mappings.customer"]),
        ("mongodb", {"entity_mappings": {"customer": "app.customers-v2"}}, []),
        ("mongodb", {"entity_mappings": {"customer": "system.users"}}, ["entity_mappings.customer"]),
        ("mongodb", {"entity_mappings": {"customer": "c$x"}}, ["entity_mappings.customer"]),
        (
            "mongodb",
            {"source_options": {"customer": {"query": "SELECT 1", "primary_key": ["id"]}}},
            ["source_options.customer.query"],
        ),
        (
            "postgresql",
            {"entity_mappings": {"customer": "c"}, "source_options": {"customer": {"primary_key": ["meta.id"]}}},
            ["source_options.customer.primary_key.0"],
        ),
        ("postgresql", {"source_options": {"invoice": {"cursor_field": "changed"}}}, ["source_options.invoice"]),
        ("salesforce", {"entity_mappings": {"customer": "Account;anything"}}, []),
    ],
)
def test_identifier_rules(provider: str, fields: dict[str, Any], bad: list[str]) -> None:
    assert [p["field"] for p in source_problems(settings(provider, **fields))] == bad


def test_the_registry_imports_only_the_driver_it_is_asked_for() -> None:
    script = (
        "import sys\n"
        "from churnguard.sync.engine import SyncEngine\n"
        "from churnguard.providers.registry import connector_class\n"
        "from churnguard.models import ProviderName\n"
        "assert not {'psycopg2', 'pymysql', 'pymongo'} & set(sys.modules), 'a driver loaded eagerly'\n"
        "connector_class(ProviderName.POSTGRESQL)\n"
        "assert 'psycopg2' in sys.modules and not {'pymysql', 'pymongo'} & set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO / "shared")})
