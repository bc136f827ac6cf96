"""Sync runs: what is stored per run, what a Step Functions task passes on, what the API shows."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field

from churnguard.connectors.base import Stream
from churnguard.models import (
    DataSyncMode,
    IntegrationConfiguration,
    Model,
    ProviderName,
    StrictModel,
    SyncConfiguration,
)
from churnguard.providers.registry import supported_providers

BATCH_MODES = frozenset({DataSyncMode.FULL_SYNC, DataSyncMode.INCREMENTAL, DataSyncMode.SCHEDULED})


def wants_schedule(config: IntegrationConfiguration) -> bool:
    """Whether the integration syncs on a schedule (every `sync_frequency` seconds)."""
    return config.provider_name in supported_providers() and config.sync_config.sync_mode in BATCH_MODES


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


class QuotaUsage(Model):
    """The provider allocation the account had used when the run last heard (see QuotaReading)."""

    used: int
    limit: int
    what: str
    observed_at: datetime

    @property
    def share(self) -> float:
        return self.used / self.limit if self.limit > 0 else 0.0


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
    quota: QuotaUsage | None = None
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


# As many as the health score reads (its success and rejects rates count the last 10 runs); the
# dashboard's run list reads the runs themselves.
RECENT_RUNS = 10


class RunOutcome(Model):
    """One finished run, as an integration's recent history keeps it."""

    sync_id: str
    status: SyncStatus
    trigger: str
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    records_read: int
    records_written: int
    records_rejected: int
    error: str | None = None

    @classmethod
    def of(cls, run: SyncRun) -> RunOutcome:
        finished = run.finished_at or run.updated_at
        return cls(
            sync_id=run.sync_id,
            status=run.status,
            trigger=run.trigger,
            started_at=run.started_at,
            finished_at=finished,
            duration_seconds=round(max(0.0, (finished - run.started_at).total_seconds()), 3),
            records_read=run.records_read,
            records_written=run.records_written,
            records_rejected=run.records_rejected,
            error=run.errors[-1].message if run.status is SyncStatus.FAILED and run.errors else None,
        )


class EntityActivity(Model):
    last_success_at: datetime
    records_last_run: int
    records_total: int


class RunHistory(Model):
    """What the dashboard needs of an integration's runs without reading them: kept per
    integration (store.run_history) and updated as each run finishes."""

    integration_id: str
    runs: list[RunOutcome] = Field(default_factory=list, description=f"the last {RECENT_RUNS}, newest first")
    last_success_at: datetime | None = None
    # When the last successful run started: every change before it was read.
    last_success_started_at: datetime | None = None
    consecutive_failures: int = 0
    quota: QuotaUsage | None = None
    entities: dict[str, EntityActivity] = Field(default_factory=dict)
    version: int = 0

    def with_run(self, run: SyncRun) -> RunHistory:
        """This history with `run` (finished) added; the same history if it is there already."""
        if any(outcome.sync_id == run.sync_id for outcome in self.runs):
            return self
        outcome = RunOutcome.of(run)
        after = self.model_copy(deep=True)
        after.runs = [outcome, *self.runs][:RECENT_RUNS]
        after.quota = run.quota or self.quota
        if run.status is SyncStatus.SUCCEEDED:
            after.last_success_at, after.last_success_started_at = outcome.finished_at, run.started_at
            after.consecutive_failures = 0
            for progress in run.streams:
                before = after.entities.get(progress.stream.entity)
                after.entities[progress.stream.entity] = EntityActivity(
                    last_success_at=outcome.finished_at,
                    records_last_run=progress.records_written,
                    records_total=(before.records_total if before else 0) + progress.records_written,
                )
        elif run.status is SyncStatus.FAILED:
            after.consecutive_failures += 1
        return after
