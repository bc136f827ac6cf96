"""One organisation's failing syncs cannot starve the others: a source that does not answer costs
one connect attempt per workflow step (its retries wait in Step Functions, not in a Lambda), and an
organisation runs at most `max_concurrent_syncs` syncs at once. The unreachable source is a closed
port on 127.0.0.1, which refuses at once."""

from __future__ import annotations

from typing import Any

import pytest

from churnguard.connectors.base import TransientSourceError
from churnguard.errors import OrganizationBusyError
from churnguard.models import IntegrationConfiguration, ProviderName
from churnguard.runs import SyncStatus
from tests.support.sync import credentials, drive, ref

CLOSED_PORT = "127.0.0.1:1"


def register(harness: Any, organization_id: str, address: str, name: str, url: Any, table: str = "t") -> str:
    config = IntegrationConfiguration(
        organization_id=organization_id,
        integration_name=name,
        provider_name=ProviderName.POSTGRESQL,
        base_url=address,
        entity_mappings={"customer": table},
        credentials=credentials(url.user, url.password, url.database),
        # Generous in-process retries: the engine must still not spend them on connecting.
        sync_config={"retry_attempts": 5, "retry_backoff": 60},
    )
    return harness.service.register(config).integration_id  # type: ignore[no-any-return]


def test_an_unreachable_source_costs_one_connect_attempt_per_step_and_no_retry_sleep(
    harness: Any, postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg2

    attempts: list[dict[str, Any]] = []
    real_connect = psycopg2.connect

    def connect(**arguments: Any) -> Any:
        attempts.append(arguments)
        return real_connect(**arguments)

    monkeypatch.setattr(psycopg2, "connect", connect)
    sleeps: list[float] = []
    engine = harness.engine(sleep=sleeps.append)
    integration_id = register(harness, "org_failing", CLOSED_PORT, "down", postgres.url)
    run = engine.start_sync("org_failing", integration_id)
    with pytest.raises(TransientSourceError):
        engine.prepare(ref(run))
    assert len(attempts) == 1 and sleeps == [], "the step's retries belong to Step Functions"
    with pytest.raises(TransientSourceError):
        engine.prepare(ref(run))  # Step Functions' retry: one more attempt, no more
    assert len(attempts) == 2 and sleeps == []


def test_an_organisation_at_its_cap_gets_429_while_another_organisation_syncs(harness: Any, postgres: Any) -> None:
    postgres.execute(
        f'CREATE TABLE "{postgres.name}".customers (id int PRIMARY KEY, updated_at timestamptz NOT NULL);'
        f" INSERT INTO \"{postgres.name}\".customers SELECT i, '2024-01-01' FROM generate_series(1, 50) i"
    )
    engine = harness.engine(max_concurrent_syncs=2)
    failing = [register(harness, "org_failing", CLOSED_PORT, f"down {n}", postgres.url) for n in range(3)]
    runs = [engine.start_sync("org_failing", integration_id) for integration_id in failing[:2]]
    for run in runs:
        with pytest.raises(TransientSourceError):
            engine.prepare(ref(run))  # failing, and retried later by the workflow: still running
    with pytest.raises(OrganizationBusyError) as refused:
        engine.start_sync("org_failing", failing[2])
    assert refused.value.status_code == 429 and refused.value.details == {"running": 2, "limit": 2}
    assert harness.syncs.lock_holder("org_failing", failing[2]) is None, "nothing was left behind"

    healthy = register(harness, "org_healthy", postgres.url.address, "up", postgres.url, f"{postgres.name}.customers")
    finished = drive(engine, engine.start_sync("org_healthy", healthy))
    assert finished.status is SyncStatus.SUCCEEDED and finished.records_written == 50

    engine.finalize(ref(runs[0]), error="TransientSourceError: gave up")
    assert engine.start_sync("org_failing", failing[2]).status is SyncStatus.STARTED, "a finished run frees its slot"


def test_two_starts_racing_for_the_last_slot_do_not_both_keep_it(
    harness: Any, postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = harness.engine(max_concurrent_syncs=1)
    first, second = (register(harness, "org_racing", CLOSED_PORT, f"r{n}", postgres.url) for n in range(2))
    engine.start_sync("org_racing", first)
    real_running = type(harness.syncs).running
    calls = {"n": 0}

    def running(store: Any, organization_id: str, now: float) -> list[str]:
        calls["n"] += 1
        # The first count happens before the other start's run was visible.
        return [] if calls["n"] == 1 else real_running(store, organization_id, now)

    monkeypatch.setattr(type(harness.syncs), "running", running)
    with pytest.raises(OrganizationBusyError):
        engine.start_sync("org_racing", second)
    assert harness.syncs.lock_holder("org_racing", second) is None
    assert engine.history("org_racing", second).items == [], "the withdrawn run left no history"
