"""Sync runs: what is stored per run, what a Step Functions task passes on, what the API shows."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field

from churnguard.connectors.base import Stream
from churnguard.models import DataSyncMode, Model, ProviderName, StrictModel, SyncConfiguration


class SyncStatus(StrEnum):
    STARTED = "started"
    RUNNING = "running"
    # The source asked to wait (a daily API allocation spent): no task works on the run until
    # `paused_until`, when the workflow tries again from the last checkpoint.
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({SyncStatus.SUCCEEDED, SyncStatus.FAILED, SyncStatus.CANCELLED})
MAX_ERRORS = 20


class SyncError(Model):
    at: datetime
    message: str
    stream: str | None = None


class SyncNote(Model):
    """Something the run's owner should know that is not a failure (e.g. a stream read in full
    because the provider no longer had its incremental cursor)."""

    at: datetime
    message: str
    stream: str | None = None


class StreamProgress(Model):
    """One entity's part of a run. `state` is the checkpoint: the position after the last row
    durably in the sinks; `parts` is how many parts were written (the next part's sequence)."""

    stream: Stream
    mode: DataSyncMode
    state: dict[str, Any] = Field(default_factory=dict)
    done: bool = False
    parts: int = 0
    records_read: int = 0
    records_written: int = 0
    records_rejected: int = 0
    records_filtered: int = 0
    estimated_total: int | None = None


class SyncRun(Model):
    model_config = ConfigDict(extra="forbid")

    sync_id: str
    organization_id: str
    integration_id: str
    provider: ProviderName
    mode: DataSyncMode
    trigger: str = "manual"
    # The mappings, filters and batch size the whole run uses, whatever changes meanwhile, so a
    # retried step writes exactly what the crashed one did.
    sync_config: SyncConfiguration
    status: SyncStatus = SyncStatus.STARTED
    started_at: datetime
    prepared_at: datetime | None = None
    updated_at: datetime
    finished_at: datetime | None = None
    streams: list[StreamProgress] = Field(default_factory=list)
    errors: list[SyncError] = Field(default_factory=list)
    notes: list[SyncNote] = Field(default_factory=list)
    steps: int = 0
    version: int = 1
    paused_until: datetime | None = None
    pause_reason: str | None = None
    # Kept outside the versioned document (see store.syncs), so asking to cancel never races a
    # checkpoint; read back into the model.
    cancel_requested: bool = False

    @property
    def records_read(self) -> int:
        return sum(s.records_read for s in self.streams)

    @property
    def records_written(self) -> int:
        return sum(s.records_written for s in self.streams)

    @property
    def records_rejected(self) -> int:
        return sum(s.records_rejected for s in self.streams)

    @property
    def records_filtered(self) -> int:
        return sum(s.records_filtered for s in self.streams)

    @property
    def estimated_total(self) -> int | None:
        estimates = [s.estimated_total for s in self.streams]
        if not estimates or any(e is None for e in estimates):
            return None
        return sum(e for e in estimates if e is not None)

    @property
    def all_streams_done(self) -> bool:
        return all(s.done for s in self.streams)


class SyncRef(StrictModel):
    """A Step Functions task's input: which run to work on."""

    organization_id: str
    integration_id: str
    sync_id: str


class StepResult(Model):
    """A task's output, small whatever the table's size: Step Functions loops while not done."""

    organization_id: str
    integration_id: str
    sync_id: str
    status: SyncStatus
    done: bool
    records_read: int
    records_written: int
    records_this_step: int = 0
    estimated_total: int | None = None


class SyncProgress(Model):
    records_read: int
    records_written: int
    records_rejected: int
    records_filtered: int
    estimated_total: int | None
    percent: float | None = Field(description="share of the estimated rows read, 0–100")
    rows_per_second: float | None
    estimated_remaining_seconds: float | None


class StreamView(Model):
    entity: str
    source: str
    mode: DataSyncMode
    done: bool
    records_read: int
    records_written: int
    records_rejected: int
    records_filtered: int
    estimated_total: int | None


class SyncRunView(Model):
    """A run as the API shows it: no internal state, with progress."""

    sync_id: str
    integration_id: str
    provider: ProviderName
    mode: DataSyncMode
    trigger: str
    status: SyncStatus
    cancel_requested: bool
    paused_until: datetime | None = Field(description="while paused: when the next try is")
    pause_reason: str | None = Field(description="while paused: why, in the provider's words")
    started_at: datetime
    finished_at: datetime | None
    updated_at: datetime
    progress: SyncProgress
    streams: list[StreamView]
    errors: list[SyncError]
    notes: list[SyncNote]

    @classmethod
    def of(cls, run: SyncRun, now: datetime) -> SyncRunView:
        read, total = run.records_read, run.estimated_total
        began = run.prepared_at or run.started_at
        elapsed = ((run.finished_at or now) - began).total_seconds()
        rate = read / elapsed if elapsed > 0 and read else None
        percent = remaining = None
        if run.status is SyncStatus.SUCCEEDED:
            percent, remaining = 100.0, 0.0
        elif total:
            percent = round(min(100.0, 100.0 * read / total), 1)
            remaining = max(0.0, (total - read) / rate) if rate else None
        return cls(
            sync_id=run.sync_id,
            integration_id=run.integration_id,
            provider=run.provider,
            mode=run.mode,
            trigger=run.trigger,
            status=run.status,
            cancel_requested=run.cancel_requested,
            paused_until=run.paused_until if run.status is SyncStatus.PAUSED else None,
            pause_reason=run.pause_reason if run.status is SyncStatus.PAUSED else None,
            started_at=run.started_at,
            finished_at=run.finished_at,
            updated_at=run.updated_at,
            progress=SyncProgress(
                records_read=read,
                records_written=run.records_written,
                records_rejected=run.records_rejected,
                records_filtered=run.records_filtered,
                estimated_total=total,
                percent=percent,
                rows_per_second=round(rate, 1) if rate else None,
                estimated_remaining_seconds=round(remaining, 1) if remaining is not None else None,
            ),
            streams=[
                StreamView(
                    entity=s.stream.entity,
                    source=s.stream.source,
                    mode=s.mode,
                    done=s.done,
                    records_read=s.records_read,
                    records_written=s.records_written,
                    records_rejected=s.records_rejected,
                    records_filtered=s.records_filtered,
                    estimated_total=s.estimated_total,
                )
                for s in run.streams
            ],
            errors=run.errors,
            notes=run.notes,
        )


class SyncHistoryPage(Model):
    items: list[SyncRunView]
    next_token: str | None = None
