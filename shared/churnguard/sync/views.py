"""What the sync routes answer. Kept apart from the engine so the API imports them cheaply."""

from __future__ import annotations

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
    """The seed's GET /api/integrations/{id}/sync/status, for the integration's latest run."""

    integration_id: str
    sync_id: str
    status: SyncStatus
    progress: float | None
    records_processed: int
    estimated_remaining: str | None
    estimated_remaining_seconds: float | None
    run: SyncRunView


def humanize_seconds(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    if seconds < 90:
        return f"{max(1, round(seconds))} seconds"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} minutes"
    return f"{round(seconds / 3600, 1)} hours"
