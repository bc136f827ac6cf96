"""What the sync routes answer. Kept apart from the engine so the API imports them cheaply."""

from __future__ import annotations

from churnguard.cdc_models import CaptureView
from churnguard.models import DataSyncMode, Model
from churnguard.runs import SyncRunView, SyncStatus


class SyncStarted(Model):
    """The seed's answer to POST /api/integrations/{id}/sync."""

    sync_id: str
    status: str = "started"
    mode: DataSyncMode
    estimated_duration: str | None
    estimated_duration_seconds: float | None


class SyncStatusView(Model):
    """The seed's GET /api/integrations/{id}/sync/status: the integration's latest run and, for a
    real-time database, its change capture (the run fields are null while it has had no run)."""

    integration_id: str
    sync_id: str | None
    status: SyncStatus | None
    progress: float | None
    records_processed: int
    estimated_remaining: str | None
    estimated_remaining_seconds: float | None
    run: SyncRunView | None
    change_capture: CaptureView | None = None

    @classmethod
    def capture_only(cls, integration_id: str, capture: CaptureView) -> SyncStatusView:
        return cls(
            integration_id=integration_id,
            sync_id=None,
            status=None,
            progress=None,
            records_processed=capture.changes_landed,
            estimated_remaining=None,
            estimated_remaining_seconds=None,
            run=None,
            change_capture=capture,
        )


def humanize_seconds(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    if seconds < 90:
        return f"{max(1, round(seconds))} seconds"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} minutes"
    return f"{round(seconds / 3600, 1)} hours"
