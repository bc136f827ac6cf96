"""Change data capture's state per real-time database integration, and what the API shows of it.

The capture itself (cdc.capture) streams a database's log into the lake; this is what it keeps
between turns (beside its checkpoint) and what the guardian measured about the server's log.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from churnguard.models import Model

MAX_NOTES = 20


class CapturePhase(StrEnum):
    SNAPSHOT = "snapshot"  # no position in the log yet (or it was lost): the next turn snapshots
    STREAMING = "streaming"


class LogRisk(StrEnum):
    OK = "ok"
    AT_RISK = "at_risk"  # under the alert threshold: act before the server drops our position
    LOST = "lost"  # the position is gone; the capture re-snapshots


class CaptureNote(Model):
    at: datetime
    message: str


class GuardianReading(Model):
    """What the server holds for us, measured by the guardian."""

    measured_at: datetime
    retained_bytes: int | None = Field(description="log the server keeps because we have not confirmed it")
    safe_bytes: int | None = Field(description="how much more log it may write before it drops our position")
    write_rate_bytes_per_second: float | None
    seconds_left: float | None = Field(description="until the server would drop our position at this rate")
    risk: LogRisk
    detail: str
    head: int | None = None


class CaptureState(Model):
    organization_id: str
    integration_id: str
    phase: CapturePhase = CapturePhase.SNAPSHOT
    snapshots: int = 0
    # Parts the snapshot in progress wrote: an interrupted snapshot's are removed before the next.
    snapshot_parts: list[str] = Field(default_factory=list)
    snapshot_position: str | None = None
    snapshot_finished_at: datetime | None = None
    consumer_execution: str | None = None
    problems: list[str] = Field(default_factory=list, description="what keeps the database from streaming")
    guardian: GuardianReading | None = None
    notes: list[CaptureNote] = Field(default_factory=list)
    changes_landed: int = 0
    last_change_at: datetime | None = None
    version: int = 0

    def noted(self, at: datetime, message: str) -> list[CaptureNote]:
        return [CaptureNote(at=at, message=message), *self.notes][:MAX_NOTES]


class CaptureView(Model):
    """A real-time integration's change data capture, as GET …/sync/status shows it."""

    phase: CapturePhase
    running: bool
    position: str | None
    snapshots: int
    snapshot_finished_at: datetime | None
    changes_landed: int
    last_change_at: datetime | None = Field(description="when the newest change landed was committed")
    problems: list[str]
    guardian: GuardianReading | None
    notes: list[CaptureNote]


class CaptureSummary(Model):
    """What the dashboard shows of a real-time database integration's change capture."""

    phase: CapturePhase
    running: bool
    risk: LogRisk | None = Field(description="the guardian's last reading; null before the first")
    retained_bytes: int | None
    seconds_left: float | None
    measured_at: datetime | None
    changes_landed: int
    last_change_at: datetime | None
    problems: list[str]
    last_note: str | None

    @classmethod
    def of(cls, state: CaptureState) -> CaptureSummary:
        reading = state.guardian
        return cls(
            phase=state.phase,
            running=state.consumer_execution is not None,
            risk=reading.risk if reading else None,
            retained_bytes=reading.retained_bytes if reading else None,
            seconds_left=reading.seconds_left if reading else None,
            measured_at=reading.measured_at if reading else None,
            changes_landed=state.changes_landed,
            last_change_at=state.last_change_at,
            problems=state.problems,
            last_note=state.notes[0].message if state.notes else None,
        )
