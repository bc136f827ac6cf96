"""What the API shows of a sync run: progress and the estimate of what remains."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from churnguard.connectors.base import Stream
from churnguard.models import DataSyncMode, ProviderName, SyncConfiguration
from churnguard.runs import StreamProgress, SyncRun, SyncRunView, SyncStatus

START = datetime(2024, 5, 1, 12, tzinfo=UTC)


def run_with(read: int, estimated: int | None, status: SyncStatus = SyncStatus.RUNNING) -> SyncRun:
    stream = Stream(
        entity="customer",
        source="public.customers",
        primary_key=("id",),
        cursor_field="updated_at",
        sync_modes=frozenset({DataSyncMode.FULL_SYNC, DataSyncMode.INCREMENTAL}),
    )
    return SyncRun(
        sync_id="syn_1",
        organization_id="org_1",
        integration_id="int_1",
        provider=ProviderName.POSTGRESQL,
        mode=DataSyncMode.FULL_SYNC,
        sync_config=SyncConfiguration(),
        status=status,
        started_at=START,
        prepared_at=START,
        updated_at=START,
        streams=[
            StreamProgress(
                stream=stream,
                mode=DataSyncMode.FULL_SYNC,
                records_read=read,
                records_written=read,
                estimated_total=estimated,
            )
        ],
    )


def test_progress_estimates_what_remains_from_the_rate_so_far() -> None:
    view = SyncRunView.of(run_with(250, 1_000), START + timedelta(seconds=10))
    assert view.progress.percent == 25.0
    assert view.progress.rows_per_second == 25.0
    assert view.progress.estimated_remaining_seconds == 30.0
    assert view.streams[0].entity == "customer" and view.streams[0].estimated_total == 1_000


def test_progress_without_an_estimate_or_rows_yet() -> None:
    unknown = SyncRunView.of(run_with(250, None), START + timedelta(seconds=10))
    assert unknown.progress.percent is None and unknown.progress.estimated_remaining_seconds is None
    fresh = SyncRunView.of(run_with(0, 1_000), START)
    assert fresh.progress.percent == 0.0 and fresh.progress.rows_per_second is None


def test_a_succeeded_run_is_complete() -> None:
    view = SyncRunView.of(run_with(990, 1_000, SyncStatus.SUCCEEDED), START + timedelta(seconds=5))
    assert view.progress.percent == 100.0 and view.progress.estimated_remaining_seconds == 0.0


def test_the_state_machine_retries_every_transient_error_by_its_own_name() -> None:
    """Step Functions matches an error's class name exactly, not its base classes: each
    retryable error class must be listed, or an outage that outlasts one invocation's retries
    fails the sync instead of waiting."""
    import json
    from pathlib import Path

    from churnguard.connectors.base import ThrottledError, TransientSourceError
    from churnguard.resilience import CircuitOpenError

    definition = json.loads((Path(__file__).parents[2] / "statemachines" / "sync.asl.json").read_text())
    retried = [
        {name for retry in state.get("Retry", []) for name in retry["ErrorEquals"]}
        for state in definition["States"].values()
        if state.get("Type") == "Task" and state.get("Retry")
    ]
    assert retried
    wanted = {cls.__name__ for cls in (TransientSourceError, ThrottledError, CircuitOpenError)}
    for names in retried:
        if "TransientSourceError" in names:
            assert wanted <= names


def test_a_paused_source_is_retried_patiently_before_anything_else() -> None:
    """A spent daily allocation comes back within a day: hourly retries for 24 hours, matched
    before the quick rules."""
    import json
    from pathlib import Path

    definition = json.loads((Path(__file__).parents[2] / "statemachines" / "sync.asl.json").read_text())
    for name in ("Prepare", "Extract"):
        first = definition["States"][name]["Retry"][0]
        assert first["ErrorEquals"] == ["SourcePausedError"]
        assert first["IntervalSeconds"] >= 3600 and first["IntervalSeconds"] * first["MaxAttempts"] >= 86_400
