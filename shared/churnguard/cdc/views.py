"""What the API shows of a real-time integration's change capture."""

from __future__ import annotations

from churnguard.cdc_models import CaptureView
from churnguard.store.cdc import CHECKPOINT_SCOPE, CaptureStore
from churnguard.store.streams import StreamStore


def capture_view(
    captures: CaptureStore, checkpoints: StreamStore, organization_id: str, integration_id: str
) -> CaptureView | None:
    """A real-time integration's change capture as the API shows it; None when it has none."""
    state = captures.find(organization_id, integration_id)
    if state is None:
        return None
    checkpoint = checkpoints.checkpoint(CHECKPOINT_SCOPE, integration_id)
    return CaptureView(
        phase=state.phase,
        running=state.consumer_execution is not None,
        position=checkpoint.position,
        snapshots=state.snapshots,
        snapshot_finished_at=state.snapshot_finished_at,
        changes_landed=state.changes_landed,
        last_change_at=state.last_change_at,
        problems=state.problems,
        guardian=state.guardian,
        notes=state.notes,
    )
