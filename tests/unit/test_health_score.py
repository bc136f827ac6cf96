"""The health score's formula, component by component, and time to data loss."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from churnguard.dashboard.health import assess, organization_score, time_to_data_loss
from churnguard.models import IntegrationConfiguration, IntegrationStatus, ProviderName, SyncConfiguration
from churnguard.resilience import BreakerState
from churnguard.runs import QuotaUsage, RunHistory, RunOutcome, SyncStatus

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _config(**changes: Any) -> IntegrationConfiguration:
    return IntegrationConfiguration.model_validate(
        {
            "organization_id": "org_h",
            "integration_name": "billing",
            "provider_name": ProviderName.STRIPE,
            "status": IntegrationStatus.ACTIVE,
            "sync_config": SyncConfiguration(sync_frequency=3600, sync_mode="incremental"),
            "created_at": NOW - timedelta(days=10),
            **changes,
        }
    )


def _run(status: SyncStatus, ago: timedelta, written: int = 100, rejected: int = 0) -> RunOutcome:
    return RunOutcome(
        sync_id=f"syn_{ago.total_seconds():.0f}",
        status=status,
        trigger="schedule",
        started_at=NOW - ago - timedelta(minutes=1),
        finished_at=NOW - ago,
        duration_seconds=60.0,
        records_read=written + rejected,
        records_written=written,
        records_rejected=rejected,
    )


def _history(*runs: RunOutcome, **changes: Any) -> RunHistory:
    succeeded = [r for r in runs if r.status is SyncStatus.SUCCEEDED]
    failures = 0
    for run in runs:
        if run.status is not SyncStatus.FAILED:
            break
        failures += 1
    return RunHistory(
        integration_id="int_1",
        runs=list(runs),
        last_success_at=succeeded[0].finished_at if succeeded else None,
        last_success_started_at=succeeded[0].started_at if succeeded else None,
        consecutive_failures=failures,
        **changes,
    )


def _components(health: Any) -> dict[str, float | None]:
    return {c.name: c.score for c in health.components}


def test_a_fresh_integration_whose_runs_succeed_scores_100() -> None:
    health = assess(_config(), _history(_run(SyncStatus.SUCCEEDED, 10 * 60 * timedelta(seconds=1))), None, 0, NOW)
    assert health.score == 100
    assert health.state == "healthy"
    assert not health.stale


def test_freshness_falls_linearly_from_one_frequency_to_stale_at_two() -> None:
    at_1_5 = assess(_config(), _history(_run(SyncStatus.SUCCEEDED, 1.5 * HOUR)), None, 0, NOW)
    assert _components(at_1_5)["freshness"] == 0.5
    assert not at_1_5.stale
    at_2_5 = assess(_config(), _history(_run(SyncStatus.SUCCEEDED, 2.5 * HOUR)), None, 0, NOW)
    assert _components(at_2_5)["freshness"] == 0.0
    assert at_2_5.stale
    # Freshness (25) is lost of the 90 that apply (Stripe reports no quota).
    assert at_2_5.score == round(100 * 65 / 90)


def test_failures_rejects_dead_letters_breaker_quota_and_authentication_each_lower_the_score() -> None:
    history = _history(
        _run(SyncStatus.FAILED, 0.1 * HOUR, written=0),
        _run(SyncStatus.SUCCEEDED, 0.5 * HOUR, written=95, rejected=5),
        quota=QuotaUsage(used=900, limit=1000, what="daily API requests", observed_at=NOW),
    )
    health = assess(
        _config(status=IntegrationStatus.AUTHENTICATION_FAILED),
        history,
        BreakerState(state="open", failures=5, changed_at=0.0, version=3),
        5,
        NOW,
    )
    components = _components(health)
    assert components["success"] == 0.5
    assert components["rejects"] == 0.5  # 5% rejected, zero at 10%
    assert components["dead_letters"] == 0.5
    assert components["circuit"] == 0.0
    assert components["quota"] == 0.5  # 90%: halfway between 80% and 100%
    assert components["authentication"] == 0.0
    expected = round(100 * (25 * 1 + 20 * 0.5 + 10 * 0.5 + 10 * 0.5 + 10 * 0 + 10 * 0.5 + 15 * 0) / 100)
    assert health.score == expected
    assert health.state == "failing"
    details = {c.name: c.detail for c in health.components}
    assert "the last 1 failed" in details["success"]
    assert "900 of 1000" in details["quota"]


def test_components_that_do_not_apply_are_left_out_of_the_weighting() -> None:
    health = assess(_config(sync_config=SyncConfiguration(sync_mode="real_time")), _history(), None, 0, NOW)
    components = _components(health)
    assert components["freshness"] is None
    assert components["success"] is None
    assert components["rejects"] is None
    assert components["quota"] is None
    assert health.score == 100
    assert health.state == "new"


def test_a_paused_integration_is_shown_paused_and_never_stale() -> None:
    health = assess(
        _config(status=IntegrationStatus.PAUSED), _history(_run(SyncStatus.SUCCEEDED, 30 * HOUR)), None, 0, NOW
    )
    assert health.state == "paused"
    assert not health.stale


def test_time_to_data_loss_counts_stripes_30_day_event_retention_from_the_last_successful_start() -> None:
    history = _history(_run(SyncStatus.FAILED, HOUR), _run(SyncStatus.SUCCEEDED, timedelta(days=27)))
    left = time_to_data_loss(_config(), history, NOW)
    assert left is not None
    assert abs(left - (3 * 86_400 - 60)) < 1  # started a minute before it finished, 27 days ago


def test_nothing_expires_for_full_syncs_databases_or_an_integration_that_never_synced() -> None:
    history = _history(_run(SyncStatus.SUCCEEDED, timedelta(days=27)))
    assert time_to_data_loss(_config(sync_config=SyncConfiguration(sync_mode="full_sync")), history, NOW) is None
    assert time_to_data_loss(_config(provider_name=ProviderName.POSTGRESQL, base_url=""), history, NOW) is None
    assert time_to_data_loss(_config(), _history(), NOW) is None


def test_the_organisation_score_is_the_mean_of_its_integrations() -> None:
    assert organization_score([100, 50, 75]) == 75
    assert organization_score([]) == 100


def test_a_quota_reading_older_than_a_day_no_longer_counts() -> None:
    quota = QuotaUsage(used=990, limit=1000, what="daily API requests", observed_at=NOW - timedelta(hours=25))
    health = assess(_config(), _history(_run(SyncStatus.SUCCEEDED, HOUR / 2), quota=quota), None, 0, NOW)
    assert _components(health)["quota"] is None
    assert health.score == 100
