"""Starting a sync: take the integration's lock, then start the state machine on the new run.

If the workflow cannot be started, the run is finished as failed at once, which releases the
lock: a refused start leaves no run that looks alive and no integration stuck behind a lock.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from churnguard.errors import NotFoundError, ServiceUnavailableError
from churnguard.models import DataSyncMode
from churnguard.runs import SyncRef, SyncRunView, SyncStatus
from churnguard.sync.engine import SyncEngine
from churnguard.sync.views import SyncStarted, SyncStatusView, humanize_seconds

_HISTORY_FOR_ESTIMATE = 10


class SyncLauncher:
    def __init__(self, engine: SyncEngine, states: Any, state_machine_arn: str) -> None:
        self._engine = engine
        self._states = states
        self._state_machine_arn = state_machine_arn

    @property
    def engine(self) -> SyncEngine:
        return self._engine

    def start(
        self, organization_id: str, integration_id: str, *, mode: DataSyncMode | None = None, trigger: str = "manual"
    ) -> SyncStarted:
        estimate = self._typical_duration(organization_id, integration_id)
        run = self._engine.start_sync(organization_id, integration_id, mode=mode, trigger=trigger)
        ref = SyncRef(organization_id=organization_id, integration_id=integration_id, sync_id=run.sync_id)
        try:
            self._states.start_execution(
                stateMachineArn=self._state_machine_arn,
                name=run.sync_id,
                input=json.dumps({"ref": ref.model_dump()}),
            )
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            self._engine.finalize(ref, error=f"the sync workflow could not be started ({code})")
            raise ServiceUnavailableError(
                "the sync workflow could not be started; the run was closed and the request can be retried",
                {"sync_id": run.sync_id, "aws_error": code},
            ) from None
        return SyncStarted(
            sync_id=run.sync_id,
            mode=run.mode,
            estimated_duration=humanize_seconds(estimate),
            estimated_duration_seconds=estimate,
        )

    def status(self, organization_id: str, integration_id: str) -> SyncStatusView:
        latest = self._latest(organization_id, integration_id)
        progress = latest.progress
        return SyncStatusView(
            integration_id=integration_id,
            sync_id=latest.sync_id,
            status=latest.status,
            progress=None if progress.percent is None else round(progress.percent / 100, 4),
            records_processed=progress.records_read,
            estimated_remaining=humanize_seconds(progress.estimated_remaining_seconds),
            estimated_remaining_seconds=progress.estimated_remaining_seconds,
            run=latest,
        )

    def cancel(self, organization_id: str, integration_id: str) -> SyncRunView:
        latest = self._latest(organization_id, integration_id)
        return self._engine.cancel(organization_id, integration_id, latest.sync_id)

    def _latest(self, organization_id: str, integration_id: str) -> SyncRunView:
        page = self._engine.history(organization_id, integration_id, limit=1)
        if not page.items:
            raise NotFoundError("this integration has not been synced yet", {"integration_id": integration_id})
        return page.items[0]

    def _typical_duration(self, organization_id: str, integration_id: str) -> float | None:
        """The median duration of recent successful syncs: the best guess before rows are counted."""
        page = self._engine.history(organization_id, integration_id, limit=_HISTORY_FOR_ESTIMATE)
        durations = [
            (run.finished_at - run.started_at).total_seconds()
            for run in page.items
            if run.status is SyncStatus.SUCCEEDED and run.finished_at is not None
        ]
        return round(statistics.median(durations), 1) if durations else None
