"""Change data capture: a real-time database integration's log, streamed into the lake, each
change exactly once, on the continuous consumer workflow (churnguard.continuous).

A turn:
1. checks the server is set up (what is missing is recorded, and the workflow stops until the
   integration is updated);
2. asks the guardian what the server holds for us; a position the server no longer has is never
   resumed from: it is noted, counted as an alert, and the tables are snapshotted again;
3. without a position, snapshots: creates the position and reads every table as of exactly that
   position (no gap, no overlap with what the log streams after it);
4. streams changes until its budget is spent, writing them in parts.

Exactly once, as the stream processor does it: the checkpoint (scope `cdc`, partition the
integration) is the last change landed; changes at or before it are skipped; a batch's parts are
named after its first change, recorded on the checkpoint before they are written (so a later,
shorter attempt removes what it does not rewrite), and the checkpoint moves only after every sink
has them. The server is told a transaction may be released only after that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from churnguard.cdc_models import (
    CapturePhase,
    CaptureState,
    GuardianReading,
    LogRisk,
)
from churnguard.connectors.base import Connector, SourceError, Stream, TransientSourceError
from churnguard.connectors.changes import ChangeLog, LogBatch, LoggedChange, PositionLost
from churnguard.continuous import TURNS_PER_EXECUTION, ConsumerKind, ConsumerWorkflow, TurnOutcome
from churnguard.errors import NotFoundError
from churnguard.integrations import IntegrationService
from churnguard.models import DataSyncMode, IntegrationConfiguration, IntegrationCredentials, IntegrationStatus
from churnguard.pipeline.core import CHANGE_CURSOR, CHANGE_TIME, Batch, StreamPipeline, build_pipeline
from churnguard.pipeline.sinks import Part, PartKey, Sink
from churnguard.store.activity import ActivityStore
from churnguard.store.cdc import CHECKPOINT_SCOPE, CaptureStore
from churnguard.store.integrations import IntegrationStore
from churnguard.store.landing import discard, key_text, write_attempt
from churnguard.store.streams import Checkpoint, StreamStore

logger = logging.getLogger(__name__)

RECHECK_SECONDS = 5.0
READ_WAIT_SECONDS = 1.0

OpenLog = Callable[[IntegrationConfiguration, IntegrationCredentials], tuple[Connector, ChangeLog]]


@dataclass(frozen=True)
class GuardianThresholds:
    """When the guardian alerts: less time left than `seconds_left`, or more retained than `retained_bytes`."""

    seconds_left: float = 72 * 3600.0
    retained_bytes: int = 10 * 1024**3


# An integration in these states is not read: its consumer stops and its position is kept.
IDLE = frozenset({IntegrationStatus.INACTIVE, IntegrationStatus.PAUSED, IntegrationStatus.AUTHENTICATION_FAILED})


def captures_changes(config: IntegrationConfiguration) -> bool:
    """Whether the integration is one change data capture reads (a real-time database)."""
    from churnguard.providers.registry import change_log_available

    return config.sync_config.sync_mode is DataSyncMode.REAL_TIME and change_log_available(config.provider_name)


class ChangeCapture:
    def __init__(
        self,
        captures: CaptureStore,
        checkpoints: StreamStore,
        integrations: IntegrationStore,
        service: IntegrationService,
        sinks: list[Sink],
        workflow: ConsumerWorkflow,
        *,
        open_log: OpenLog | None = None,
        activity: ActivityStore | None = None,
        thresholds: GuardianThresholds = GuardianThresholds(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._captures = captures
        self._checkpoints = checkpoints
        self._integrations = integrations
        self._service = service
        self._sinks = sinks
        self._workflow = workflow
        self._open_log = open_log or open_change_log
        self._activity = activity
        self._thresholds = thresholds
        self._clock = clock

    # ------------------------------------------------------------------ a turn
    def turn(
        self, organization_id: str, integration_id: str, execution: str, iteration: int, budget: float
    ) -> TurnOutcome:
        deadline = time.monotonic() + budget
        config, refusal = self._owned(organization_id, integration_id, execution)
        if config is None:
            return TurnOutcome(False, iteration, reason=refusal)
        if iteration >= TURNS_PER_EXECUTION:
            fresh = self._workflow.start(organization_id, integration_id, ConsumerKind.CHANGES)
            self._update(config, consumer_execution=fresh)
            return TurnOutcome(False, iteration, reason="handed over to a fresh execution")
        credentials = self._service.load_credentials(organization_id, integration_id)
        connector, log = self._open_log(config, credentials)
        try:
            try:
                streams = connector.streams()
                problems = log.problems(streams)
            except TransientSourceError:
                raise  # the workflow retries the turn with backoff
            except SourceError as exc:
                problems = [exc.message]
            if problems:
                self._update(config, consumer_execution=None, problems=problems)
                return TurnOutcome(False, iteration, reason="the database is not set up for change data capture")
            state = self._guard(config, log, self._captures.get(organization_id, integration_id))
            if state.phase is CapturePhase.SNAPSHOT:
                state = self._snapshot(config, connector, log, streams, state)
            try:
                landed = self._stream(config, connector, log, streams, execution, deadline)
            except PositionLost as exc:  # found on reading, before the guardian saw it
                self._lost(config, state, str(exc))
                return TurnOutcome(True, iteration + 1)
            except Exception:
                # Removing the capture ends the server session under a turn still reading.
                if not self._wanted(config, execution):
                    return TurnOutcome(False, iteration, reason="the capture was removed while it read")
                raise
            self._guard(config, log, self._captures.get(organization_id, integration_id))
        finally:
            log.close()
        return TurnOutcome(True, iteration + 1, forwarded=landed)

    def _owned(
        self, organization_id: str, integration_id: str, execution: str
    ) -> tuple[IntegrationConfiguration | None, str]:
        """The integration, if this execution is still the one to capture it; else why not."""
        state = self._captures.find(organization_id, integration_id)
        if state is None:
            return None, "the integration captures no changes"
        if state.consumer_execution != execution:
            return None, "another execution captures this integration"
        try:
            config = self._integrations.get(organization_id, integration_id)
        except NotFoundError:
            return None, "the integration was deleted"
        if not captures_changes(config) or config.status in IDLE:
            return None, "the integration is idle or not real-time"
        return config, ""

    def _wanted(self, config: IntegrationConfiguration, execution: str) -> bool:
        state = self._captures.find(config.organization_id, config.integration_id)
        return state is not None and state.consumer_execution == execution

    # ------------------------------------------------------------------ guardian
    def guard(self, config: IntegrationConfiguration) -> GuardianReading | None:
        """Measures what the server holds for the integration now (the scheduled check, which runs
        whether or not its consumer does)."""
        state = self._captures.find(config.organization_id, config.integration_id)
        if state is None:
            return None
        credentials = self._service.load_credentials(config.organization_id, config.integration_id)
        _, log = self._open_log(config, credentials)
        try:
            return self._guard(config, log, state).guardian
        finally:
            log.close()

    def guard_all(self, organization_ids: Iterable[str]) -> list[tuple[IntegrationConfiguration, GuardianReading]]:
        """Measures every real-time integration of these organisations; one that cannot be
        measured (its server is down) is logged and the rest still are."""
        readings = []
        for organization_id in organization_ids:
            for state in self._captures.for_organization(organization_id):
                try:
                    config = self._integrations.get(organization_id, state.integration_id)
                    reading = self.guard(config)
                except Exception:
                    logger.exception("the guardian could not measure", extra={"integration_id": state.integration_id})
                    continue
                if reading is not None:
                    readings.append((config, reading))
        return readings

    def _guard(self, config: IntegrationConfiguration, log: ChangeLog, state: CaptureState) -> CaptureState:
        position = self._checkpoints.checkpoint(CHECKPOINT_SCOPE, config.integration_id).position
        server = log.state(position)
        now = datetime.fromtimestamp(self._clock(), UTC)
        before = state.guardian
        rate = before.write_rate_bytes_per_second if before is not None else None
        if before is not None and before.head is not None and server.head is not None:
            elapsed = (now - before.measured_at).total_seconds()
            if elapsed >= 1.0:
                rate = max(0.0, (server.head - before.head) / elapsed)
        seconds_left = server.seconds_left
        if seconds_left is None and server.safe_bytes is not None and rate:
            seconds_left = server.safe_bytes / rate
        streaming = state.phase is CapturePhase.STREAMING
        if streaming and (server.lost or not server.exists):
            risk = LogRisk.LOST
        elif (seconds_left is not None and seconds_left < self._thresholds.seconds_left) or (
            server.retained_bytes is not None and server.retained_bytes >= self._thresholds.retained_bytes
        ):
            risk = LogRisk.AT_RISK
        else:
            risk = LogRisk.OK
        reading = GuardianReading(
            measured_at=now,
            retained_bytes=server.retained_bytes,
            safe_bytes=server.safe_bytes,
            write_rate_bytes_per_second=round(rate, 3) if rate is not None else None,
            seconds_left=round(seconds_left, 1) if seconds_left is not None else None,
            risk=risk,
            detail=server.detail,
            head=server.head,
        )
        state = self._update(config, guardian=reading)
        if risk is LogRisk.AT_RISK:
            self._alert(config, "log_at_risk")
        if risk is LogRisk.LOST:
            state = self._lost(config, state, server.detail)
        return state

    def _lost(self, config: IntegrationConfiguration, state: CaptureState, detail: str) -> CaptureState:
        """Never resumes silently: notes it, alerts, and snapshots every table again."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        self._alert(config, "log_lost")
        logger.error("change data capture lost its position", extra={"integration_id": config.integration_id})
        message = f"the position in the log was lost ({detail}); every table is snapshotted again"
        return self._update(config, phase=CapturePhase.SNAPSHOT, notes=state.noted(now, message))

    def _alert(self, config: IntegrationConfiguration, problem: str) -> None:
        """Counts the problem where the dashboard's cdc_log alert reads it."""
        if self._activity is not None:
            tally = {f"cdc#{config.integration_id}#{problem}": 1}
            self._activity.add(self._activity.hour_update(config.organization_id, tally))

    # ------------------------------------------------------------------ snapshot
    def _snapshot(
        self,
        config: IntegrationConfiguration,
        connector: Connector,
        log: ChangeLog,
        streams: list[Stream],
        state: CaptureState,
    ) -> CaptureState:
        discard(self._sinks, state.snapshot_parts)
        number = state.snapshots + 1
        state = self._update(config, snapshots=number, snapshot_parts=[])
        written: list[str] = []
        pages: dict[str, int] = {}
        rows_read = 0
        pipelines: dict[str, StreamPipeline] = {}
        batch_id = f"cdc_{config.integration_id}_s{number}"
        for stream, rows in log.snapshot(streams, config.sync_config.batch_size):
            position, at = log.start_position, log.started_at
            for row in rows:
                row[CHANGE_CURSOR] = position
                row[CHANGE_TIME] = at
            pipeline = pipelines.get(stream.entity) or self._pipeline(config, connector, stream, batch_id)
            pipelines[stream.entity] = pipeline
            batch = Batch()
            pipeline.process(rows, batch)
            seq = pages.get(stream.entity, 0)
            pages[stream.entity] = seq + 1
            part = _part(config, stream, batch_id, seq, at, batch)
            written.append(key_text(part.key))
            self._update(config, snapshot_parts=list(written))  # before the write: an interrupted one is found
            for sink in self._sinks:
                sink.write(part)
            rows_read += len(rows)
            self._count(config, part)
        seen = self._checkpoints.checkpoint(CHECKPOINT_SCOPE, config.integration_id)
        self._checkpoints.advance(CHECKPOINT_SCOPE, config.integration_id, seen, log.start_position)
        now = datetime.fromtimestamp(self._clock(), UTC)
        return self._update(
            config,
            phase=CapturePhase.STREAMING,
            snapshot_parts=[],
            snapshot_position=log.start_position,
            snapshot_finished_at=now,
            notes=state.noted(now, f"snapshot {number}: {rows_read} rows of {len(streams)} tables"),
        )

    # ------------------------------------------------------------------ streaming
    def _stream(
        self,
        config: IntegrationConfiguration,
        connector: Connector,
        log: ChangeLog,
        streams: list[Stream],
        execution: str,
        deadline: float,
    ) -> int:
        seen = self._checkpoints.checkpoint(CHECKPOINT_SCOPE, config.integration_id)
        session = log.open(streams, seen.position)
        pipelines: dict[str, StreamPipeline] = {}
        landed = 0
        recheck = time.monotonic() + RECHECK_SECONDS
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                batch = session.read(config.sync_config.batch_size, min(READ_WAIT_SECONDS, remaining))
                if batch.changes:
                    count, seen = self._land(config, connector, batch, seen, pipelines)
                    landed += count
                elif batch.reached is not None and (seen.position is None or batch.reached > seen.position):
                    seen = self._checkpoints.advance(CHECKPOINT_SCOPE, config.integration_id, seen, batch.reached)
                if batch.confirmable is not None:
                    session.confirm(batch.confirmable)
                else:
                    session.keep_alive()
                if time.monotonic() >= recheck:
                    if not self._wanted(config, execution):
                        break
                    recheck = time.monotonic() + RECHECK_SECONDS
            self._noted_truncations(config, session.truncated)
        finally:
            session.close()
        return landed

    def _land(
        self,
        config: IntegrationConfiguration,
        connector: Connector,
        batch: LogBatch,
        seen: Checkpoint,
        pipelines: dict[str, StreamPipeline],
    ) -> tuple[int, Checkpoint]:
        """Writes the changes not landed yet, then moves the checkpoint past them; how many
        landed and the checkpoint as now stored."""
        fresh = [c for c in batch.changes if seen.position is None or c.position > seen.position]
        if not fresh:
            return 0, seen
        first, last = fresh[0], fresh[-1]
        batch_id = f"cdc_{config.integration_id}_{first.position}"
        by_stream: dict[str, list[LoggedChange]] = {}
        for change in fresh:
            by_stream.setdefault(change.stream.entity, []).append(change)
        parts = []
        for entity, changes in by_stream.items():
            stream = changes[0].stream
            if entity not in pipelines:
                pipelines[entity] = self._pipeline(config, connector, stream, batch_id)
            pipeline = pipelines[entity].for_batch(batch_id, stream.source)
            records = Batch()
            for operation, run in groupby(changes, key=lambda change: change.operation):
                run_changes = list(run)
                pipeline.process([c.row for c in run_changes if c.problem is None], records, operation)
                for change in run_changes:
                    if change.problem is not None:
                        pipeline.reject(records, _plain(change.row), None, change.problem)
            parts.append(_part(config, stream, batch_id, 0, first.committed_at, records))
        # Positions are text that sorts in log order.
        attempt = write_attempt(
            self._checkpoints,
            self._sinks,
            CHECKPOINT_SCOPE,
            config.integration_id,
            seen,
            (first.position, last.position),
            parts,
            str,
        )
        landed = self._checkpoints.advance(CHECKPOINT_SCOPE, config.integration_id, attempt, last.position)
        for part in parts:
            self._count(config, part)
        self._progress(config, len(fresh), last.committed_at)
        return len(fresh), landed

    def _progress(self, config: IntegrationConfiguration, landed: int, committed_at: datetime) -> None:
        state = self._captures.get(config.organization_id, config.integration_id)
        self._update(config, changes_landed=state.changes_landed + landed, last_change_at=committed_at)

    def _noted_truncations(self, config: IntegrationConfiguration, tables: list[str]) -> None:
        if not tables:
            return
        state = self._captures.get(config.organization_id, config.integration_id)
        now = datetime.fromtimestamp(self._clock(), UTC)
        message = (
            f"{', '.join(sorted(set(tables)))} truncated: the lake keeps the rows it had"
            " (a truncate names no rows); update the integration to snapshot again"
        )
        self._update(config, notes=state.noted(now, message))

    # ------------------------------------------------------------------ helpers
    def _pipeline(
        self, config: IntegrationConfiguration, connector: Connector, stream: Stream, batch_id: str
    ) -> StreamPipeline:
        return build_pipeline(
            config,
            entity=stream.entity,
            record_entity=stream.record_entity,
            source=stream.source,
            batch_id=batch_id,
            primary_key=stream.primary_key,
            cursor_field=None,
            entities=connector.entity_names(),
            column_kinds=stream.column_kinds,
            canonicalize=connector.canonical_mapper(stream),
            changes=True,
        )

    def _count(self, config: IntegrationConfiguration, part: Part) -> None:
        if self._activity is None:
            return
        tally = {"records_written": part.record_count, "records_rejected": part.reject_count}
        self._activity.add(self._activity.hour_update(config.organization_id, tally))
        self._activity.add(self._activity.day_update(config.organization_id, config.integration_id, tally))

    def _update(self, config: IntegrationConfiguration, **changes: Any) -> CaptureState:
        return self._captures.update(config.organization_id, config.integration_id, **changes)


def _part(
    config: IntegrationConfiguration, stream: Stream, batch_id: str, seq: int, at: datetime, batch: Batch
) -> Part:
    return Part(
        key=PartKey(
            organization_id=config.organization_id,
            provider=config.provider_name.value,
            entity=stream.record_entity,
            day=at.date().isoformat(),
            batch_id=batch_id,
            seq=seq,
            stream=stream.entity,
        ),
        records=batch.payload(),
        record_count=batch.accepted,
        rejects=batch.rejects_payload(),
        reject_count=batch.rejected,
    )


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A change's row without the pipeline's position fields, for a reject's raw row."""
    return {name: value for name, value in row.items() if name not in (CHANGE_CURSOR, CHANGE_TIME)}


def open_change_log(
    config: IntegrationConfiguration, credentials: IntegrationCredentials
) -> tuple[Connector, ChangeLog]:
    """The integration's connector (for its tables and mappings) and its database's log."""
    from churnguard.providers.registry import change_log_class, connector_class
    from churnguard.resilience import (
        CircuitBreaker,
        Guard,
        RateLimiter,
        RetryPolicy,
        UnsharedBreakerStore,
    )

    connector_type = connector_class(config.provider_name)
    guard = Guard(
        retry=RetryPolicy.from_sync_config(config.sync_config),
        limiter=RateLimiter.from_sync_config(config.sync_config, connector_type.limits),
        breaker=CircuitBreaker(UnsharedBreakerStore(), config.organization_id, config.integration_id),
    )
    connector = connector_type(config, credentials, guard)
    return connector, change_log_class(config.provider_name)(connector, config.integration_id)
