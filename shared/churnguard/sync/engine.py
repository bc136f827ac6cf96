"""The sync engine behind the Step Functions tasks: start → prepare → extract (loop) → finalize.

- `start_sync` (API) takes the integration's lock and stores a run; a second start while one
  runs raises ConflictError. The lock is a lease renewed by every checkpoint, so a run whose
  tasks all died frees the integration when the lease runs out.
- `prepare` (task) discovers the streams, picks each one's start (incremental: the previous
  successful sync's final cursor) and estimates row counts for progress.
- `extract_step` (task, looped) reads pages and writes them through the pipeline until its time
  or record budget is spent, then checkpoints and returns a small StepResult. Parts are written
  to every sink before the checkpoint that covers them, and part keys are deterministic per
  (sync, entity, sequence): a task that crashes anywhere is re-run from the last checkpoint and
  overwrites what it had written since, so every row lands exactly once per sync.
- `finalize` (task, also the Catch target) records the outcome, stores the final cursor of a
  successful sync and releases the lock.
- Cancellation is a flag the extract loop reads at page boundaries (at most every
  `cancel_poll_seconds`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from churnguard.connectors.base import (
    CheckStatus,
    ConnectionCheck,
    Connector,
    Page,
    Position,
    ReReadUnavailable,
    SourceError,
    SourcePausedError,
    Stream,
)
from churnguard.errors import (
    ChurnGuardError,
    ConflictError,
    NotFoundError,
    OrganizationBusyError,
    ValidationFailedError,
)
from churnguard.models import (
    DataSyncMode,
    IntegrationConfiguration,
    IntegrationCredentials,
    IntegrationStatus,
    ProviderName,
)
from churnguard.pipeline.core import Batch, StreamPipeline, build_pipeline
from churnguard.pipeline.records import Operation
from churnguard.pipeline.sinks import Part, PartKey, Sink
from churnguard.providers.registry import connector_class, supported_providers
from churnguard.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    Guard,
    RateLimiter,
    RetryPolicy,
    UnsharedBreakerStore,
)
from churnguard.runs import (
    MAX_ERRORS,
    TERMINAL_STATUSES,
    QuotaUsage,
    StepResult,
    StreamProgress,
    SyncError,
    SyncHistoryPage,
    SyncNote,
    SyncRef,
    SyncRun,
    SyncRunView,
    SyncStatus,
)
from churnguard.store.activity import ActivityStore
from churnguard.store.circuit_breakers import CircuitBreakerStore
from churnguard.store.integrations import IntegrationStore
from churnguard.store.run_history import RunHistoryStore
from churnguard.store.syncs import SyncStore

FLUSH_RECORDS = 50_000
FLUSH_BYTES = 32 * 1024 * 1024
LOCK_LEASE_SECONDS = 900.0
CANCEL_POLL_SECONDS = 2.0
# The state machine's Retry interval for SourcePausedError (statemachines/sync.asl.json).
PAUSE_SECONDS = 3600.0
_METADATA_ATTEMPTS = 3

logger = logging.getLogger(__name__)


def new_sync_id(now: float) -> str:
    """Sorts by start time (fixed-width hex milliseconds), unique by its random tail."""
    return f"syn_{int(now * 1000):012x}{secrets.token_hex(6)}"


class SyncEngine:
    def __init__(
        self,
        *,
        syncs: SyncStore,
        integrations: IntegrationStore,
        credentials: Callable[[str, str], IntegrationCredentials],
        breakers: CircuitBreakerStore,
        save_credentials: Callable[[str, str, IntegrationCredentials], object] | None = None,
        sinks: Sequence[Sink],
        connectors: Callable[[ProviderName], type[Connector]] = connector_class,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        flush_records: int = FLUSH_RECORDS,
        flush_bytes: int = FLUSH_BYTES,
        lock_lease_seconds: float = LOCK_LEASE_SECONDS,
        cancel_poll_seconds: float = CANCEL_POLL_SECONDS,
        source_encoding: bool = True,
        max_concurrent_syncs: int | None = None,
        activity: ActivityStore | None = None,
        histories: RunHistoryStore | None = None,
    ) -> None:
        """`source_encoding=False` makes every row take the Python encoding path, even where the
        source could encode it (tests compare the two)."""
        self._syncs = syncs
        self._integrations = integrations
        self._credentials = credentials
        self._save_credentials = save_credentials
        self._breakers = breakers
        self._sinks = list(sinks)
        self._connectors = connectors
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._flush_records = flush_records
        self._flush_bytes = flush_bytes
        self._lease = lock_lease_seconds
        self._cancel_poll = cancel_poll_seconds
        self._source_encoding = source_encoding
        self._max_concurrent = max_concurrent_syncs
        self._activity = activity
        self._histories = histories

    # ------------------------------------------------------------ API operations

    def start_sync(
        self,
        organization_id: str,
        integration_id: str,
        *,
        mode: DataSyncMode | None = None,
        trigger: str = "manual",
    ) -> SyncRun:
        """Stores a new run and takes the lock; the caller then starts the state machine with
        `SyncRef` of the run. Raises ConflictError while another sync of the integration runs."""
        config = self._integrations.get(organization_id, integration_id)
        if config.provider_name not in supported_providers():
            raise ValidationFailedError(
                f"provider {config.provider_name.value!r} cannot be synced yet",
                {"fields": [{"field": "provider_name", "message": "no sync connector for this provider"}]},
            )
        if config.status is IntegrationStatus.PAUSED:
            raise ConflictError("the integration is paused; set it active to sync", {"status": "paused"})
        if self._integrations.get_credentials_envelope(organization_id, integration_id) is None:
            raise ValidationFailedError(
                "the integration has no credentials to connect with",
                {"fields": [{"field": "credentials", "message": "set credentials before syncing"}]},
            )
        requested = mode or config.sync_config.sync_mode
        now = self._clock()
        run = SyncRun(
            sync_id=new_sync_id(now),
            organization_id=organization_id,
            integration_id=integration_id,
            provider=config.provider_name,
            mode=DataSyncMode.FULL_SYNC if requested is DataSyncMode.FULL_SYNC else DataSyncMode.INCREMENTAL,
            trigger=trigger,
            sync_config=config.sync_config,
            started_at=_utc(now),
            updated_at=_utc(now),
        )
        self._check_capacity(organization_id, now, before_start=True)
        self._syncs.create(run, lease_until=now + self._lease, replacing=self._stale_holder(config, now))
        try:
            self._check_capacity(organization_id, now, before_start=False)
        except OrganizationBusyError:
            # Another start won the last slot in the same instant: this one is withdrawn unseen.
            self._syncs.withdraw(run)
            raise
        return run

    def _check_capacity(self, organization_id: str, now: float, *, before_start: bool) -> None:
        """OrganizationBusyError when the organisation's syncs would exceed its cap: checked
        before a run is created, and again after (counting it), so two starts racing for the last
        slot cannot both keep it."""
        if self._max_concurrent is None:
            return
        running = len(self._syncs.running(organization_id, now))
        if running + (1 if before_start else 0) > self._max_concurrent:
            raise OrganizationBusyError(
                f"the organisation already runs {self._max_concurrent} syncs, the most it may run at once; "
                "start this one when one of them has finished",
                {"running": min(running, self._max_concurrent), "limit": self._max_concurrent},
            )

    def _stale_holder(self, config: IntegrationConfiguration, now: float) -> str | None:
        """The holder of the lock if its run finished or its lease ran out (it is then marked
        failed); None when the lock is free. A live holder is left alone: create() refuses."""
        holder = self._syncs.lock_holder(config.organization_id, config.integration_id)
        if holder is None:
            return None
        sync_id, expires_at = holder
        try:
            previous = self._syncs.get(config.organization_id, config.integration_id, sync_id)
        except NotFoundError:
            return sync_id
        if previous.status in TERMINAL_STATUSES:
            return sync_id
        if expires_at > now:
            return None
        self._record_error(previous, "abandoned: no checkpoint within the lock's lease")
        previous.status, previous.finished_at = SyncStatus.FAILED, _utc(now)
        # If its task came back to life and wrote first, the lock's condition decides.
        with contextlib.suppress(ConflictError):
            self._syncs.finish(previous, cursor_states=None)
        return sync_id

    def get_sync_status(self, organization_id: str, integration_id: str, sync_id: str) -> SyncRunView:
        return SyncRunView.of(self._syncs.get(organization_id, integration_id, sync_id), _utc(self._clock()))

    def history(
        self, organization_id: str, integration_id: str, *, limit: int = 20, next_token: str | None = None
    ) -> SyncHistoryPage:
        runs, token = self._syncs.history(organization_id, integration_id, limit, next_token)
        now = _utc(self._clock())
        return SyncHistoryPage(items=[SyncRunView.of(run, now) for run in runs], next_token=token)

    def cancel(self, organization_id: str, integration_id: str, sync_id: str) -> SyncRunView:
        """Asks the run to stop at its next page boundary. Raises ConflictError if it finished."""
        self._syncs.request_cancel(organization_id, integration_id, sync_id)
        run = self._syncs.get(organization_id, integration_id, sync_id)
        if run.status in {SyncStatus.STARTED, SyncStatus.PAUSED}:  # no task is working on it: nothing to wait for
            try:
                self._finish(run, SyncStatus.CANCELLED)
            except ConflictError:
                run = self._syncs.get(organization_id, integration_id, sync_id)
        return SyncRunView.of(run, _utc(self._clock()))

    def test_connection(self, organization_id: str, integration_id: str) -> ConnectionCheck:
        connector = self._connector(self._integrations.get(organization_id, integration_id))
        try:
            return connector.check()
        finally:
            connector.close()

    def test_draft(self, config: IntegrationConfiguration, credentials: IntegrationCredentials) -> ConnectionCheck:
        """Tests an integration before it is saved: nothing is stored (no breaker state, and a
        source that renews credentials has nowhere to keep them)."""
        if config.provider_name not in supported_providers():
            raise ValidationFailedError(
                f"provider {config.provider_name.value!r} cannot be tested yet",
                {"fields": [{"field": "provider_name", "message": "no connector for this provider"}]},
            )
        connector_class = self._connectors(config.provider_name)
        guard = Guard(
            retry=RetryPolicy.from_sync_config(config.sync_config, sleep=self._sleep, clock=self._monotonic),
            limiter=RateLimiter.from_sync_config(
                config.sync_config, connector_class.limits, clock=self._monotonic, sleep=self._sleep
            ),
            breaker=CircuitBreaker(
                UnsharedBreakerStore(), config.organization_id, config.integration_id, clock=self._clock
            ),
        )
        connector = connector_class(config, credentials, guard)
        try:
            return connector.check()
        finally:
            connector.close()

    def current_entity(
        self, organization_id: str, integration_id: str, entity: str, object_id: str, *, raw: bool
    ) -> dict[str, Any] | None:
        """One object as the integration's source has it now, as its canonical entity: what a
        webhook event with an incomplete object is completed from. Raises ReReadUnavailable when
        the integration cannot be asked (no credentials, a source that cannot re-read one
        object); None when the source fails to answer or the object is gone: the event then
        lands as it came, and is never held back or dead-lettered because the source is down."""
        try:
            config = self._integrations.get(organization_id, integration_id)
            if config.provider_name not in supported_providers():
                raise ReReadUnavailable(f"{config.provider_name.value} has no source")
            # Loading the credentials is the check that there are any (NotFoundError otherwise).
            connector = self._connector(config)
        except NotFoundError:
            raise ReReadUnavailable("the integration is gone or has no credentials") from None
        try:
            return connector.current_entity(entity, object_id, raw=raw)
        except (SourceError, CircuitOpenError) as exc:
            logger.warning(
                "could not re-read an object from its source",
                extra={"integration_id": integration_id, "entity": entity, "error": type(exc).__name__},
            )
            return None
        finally:
            connector.close()

    # ------------------------------------------------------------ state machine tasks

    def prepare(self, ref: SyncRef) -> StepResult:
        run = _resumed(self._syncs.get(ref.organization_id, ref.integration_id, ref.sync_id))
        if run.status is not SyncStatus.STARTED:
            return self._result(run)  # done already: a retried task
        if run.cancel_requested:
            return self._result(self._finish(run, SyncStatus.CANCELLED))
        config = self._integrations.get(ref.organization_id, ref.integration_id)
        connector = self._connector(config)
        try:
            # One attempt: a source that does not answer fails the step, and Step Functions retries
            # it after its backoff, so an unreachable host costs a connect timeout per attempt,
            # not minutes of retry sleeps inside the Lambda.
            connector.connect(deadline=self._monotonic())
            previous = (
                self._syncs.last_cursor(ref.organization_id, ref.integration_id)
                if run.mode is DataSyncMode.INCREMENTAL
                else {}
            )
            for stream in connector.streams():
                mode, position = DataSyncMode.FULL_SYNC, Position()
                if run.mode is DataSyncMode.INCREMENTAL and DataSyncMode.INCREMENTAL in stream.sync_modes:
                    mode = DataSyncMode.INCREMENTAL
                    if stream.entity in previous:
                        # None: the cursor or key changed since; only a full read is safe.
                        last = connector.position_of(stream, previous[stream.entity])
                        position = Position() if last is None else connector.next_read_start(stream, last)
                    elif run.sync_config.last_sync_timestamp is not None:
                        position = Position(cursor=run.sync_config.last_sync_timestamp)
                run.streams.append(
                    StreamProgress(
                        stream=stream,
                        mode=mode,
                        state=connector.state_of(stream, position) if position != Position() else {},
                        estimated_total=connector.estimate(stream, position),
                    )
                )
        except ChurnGuardError as exc:
            # Recorded on the run as stored, without the streams this attempt had gathered.
            stored = _resumed(self._syncs.get(ref.organization_id, ref.integration_id, ref.sync_id))
            self._step_failed(stored, exc, None)
            raise
        finally:
            connector.close()
        now = self._clock()
        run.status, run.prepared_at, run.updated_at = SyncStatus.RUNNING, _utc(now), _utc(now)
        self._syncs.save(run, lease_until=now + self._lease)
        return self._result(run)

    def extract_step(self, ref: SyncRef, budget_seconds: float, record_budget: int) -> StepResult:
        """Reads and writes until the time or record budget is spent (finishing the page in
        hand), checkpoints, and says whether the run is done."""
        deadline = self._monotonic() + budget_seconds
        run = _resumed(self._syncs.get(ref.organization_id, ref.integration_id, ref.sync_id))
        if run.status is SyncStatus.STARTED:
            self.prepare(ref)
            run = self._syncs.get(ref.organization_id, ref.integration_id, ref.sync_id)
        if run.status in TERMINAL_STATUSES:
            return self._result(run)
        if run.cancel_requested:
            return self._result(self._finish(run, SyncStatus.CANCELLED))
        config = self._integrations.get(ref.organization_id, ref.integration_id)
        connector = self._connector(config)
        step = _Step(deadline=deadline, record_budget=record_budget, next_poll=self._monotonic() + self._cancel_poll)
        run.steps += 1
        try:
            connector.open_session(deadline=self._monotonic())  # one attempt, as in prepare
            with _cyclic_gc_paused():
                for index, progress in enumerate(run.streams):
                    if progress.done:
                        continue
                    step.entity = progress.stream.entity
                    self._extract_stream(run, index, config, connector, step)
                    if step.stop is not None:
                        break
        except ChurnGuardError as exc:
            self._step_failed(run, exc, step.entity)
            raise
        finally:
            connector.close()
        if step.stop == "cancel":
            run = self._finish(run, SyncStatus.CANCELLED)
        return self._result(run, records_this_step=step.records)

    def finalize(self, ref: SyncRef, error: str | None = None) -> SyncRun:
        """Ends the run: failed when `error` is given (the state machine's Catch), cancelled
        when asked to, else succeeded; idempotent for a finished run."""
        run = self._syncs.get(ref.organization_id, ref.integration_id, ref.sync_id)
        if run.status in TERMINAL_STATUSES:
            self._remember(run)  # a retried finalize: the first may have stopped before this
            return run
        if error is not None:
            self._record_error(run, error)
            return self._finish(run, SyncStatus.FAILED)
        if run.cancel_requested and not (run.streams and run.all_streams_done):
            return self._finish(run, SyncStatus.CANCELLED)
        if run.status is not SyncStatus.RUNNING or not run.all_streams_done:
            raise ConflictError(
                "the sync has streams left to extract; run extract_step until it reports done",
                {"sync_id": run.sync_id},
            )
        return self._finish(run, SyncStatus.SUCCEEDED)

    # ------------------------------------------------------------ internals

    def _connector(self, config: IntegrationConfiguration) -> Connector:
        credentials = self._credentials(config.organization_id, config.integration_id)
        sync = config.sync_config
        connector_class = self._connectors(config.provider_name)
        guard = Guard(
            retry=RetryPolicy.from_sync_config(sync, sleep=self._sleep, clock=self._monotonic),
            limiter=RateLimiter.from_sync_config(
                sync, connector_class.limits, clock=self._monotonic, sleep=self._sleep
            ),
            breaker=CircuitBreaker(self._breakers, config.organization_id, config.integration_id, clock=self._clock),
        )
        saver = None
        if self._save_credentials is not None:
            save = self._save_credentials
            saver = partial(save, config.organization_id, config.integration_id)
        return connector_class(config, credentials, guard, save_credentials=saver)

    def _extract_stream(
        self,
        run: SyncRun,
        index: int,
        config: IntegrationConfiguration,
        connector: Connector,
        step: _Step,
    ) -> None:
        progress = run.streams[index]
        stream = progress.stream
        position = connector.position_of(stream, progress.state)
        if position is None:  # a state this run wrote itself always matches its stream
            raise ConflictError("the sync's checkpoint does not match its stream", {"entity": stream.entity})
        pipeline = build_pipeline(
            config.model_copy(update={"sync_config": run.sync_config}),
            entity=stream.entity,
            record_entity=stream.record_entity,
            source=stream.source,
            batch_id=run.sync_id,
            primary_key=stream.primary_key,
            cursor_field=stream.cursor_field,
            entities=connector.entity_names(),
            column_kinds=stream.column_kinds,
            encodable=stream.encodable and self._source_encoding,
            canonicalize=connector.canonical_mapper(stream),
        )
        batch, read, exhausted = Batch(), 0, True
        pages = _Prefetch(
            connector.read(
                stream, position, run.sync_config.batch_size, deadline=step.deadline, encoded=pipeline.encoded
            )
        )
        in_flight: _Flush | None = None
        # One part uploads (and compresses, outside the GIL) while the next pages are read; its
        # checkpoint is written once it has landed, before the next part is sent.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="churnguard-sink") as uploads:
            try:
                for page in pages:
                    for note in page.notes:
                        self._record_note(run, note, stream.entity)
                    position, read = self._take(pipeline, page, batch, step, read)
                    if batch.accepted + batch.rejected >= self._flush_records or batch.size >= self._flush_bytes:
                        self._land(run, in_flight)
                        in_flight = self._send(run, index, connector, batch, position, read, False, uploads)
                        batch, read = Batch(), 0
                    if self._should_stop(run, step):
                        exhausted = False
                        break
            except (SourceError, CircuitOpenError):
                # Keeps what was read before the source failed: the retried step (an outage, a
                # quota pause) resumes after it instead of reading it again.
                pages.close()
                self._land(run, in_flight)
                self._land(run, self._send(run, index, connector, batch, position, read, False, uploads))
                raise
            finally:
                pages.close()
            self._land(run, in_flight)
            self._land(run, self._send(run, index, connector, batch, position, read, exhausted, uploads))

    @staticmethod
    def _take(pipeline: StreamPipeline, page: Page, batch: Batch, step: _Step, read: int) -> tuple[Position, int]:
        pipeline.process(page.rows, batch)
        if page.deleted:
            pipeline.process(page.deleted, batch, Operation.DELETE)
        count = len(page.rows) + len(page.deleted)
        step.records += count
        return page.position, read + count

    def _should_stop(self, run: SyncRun, step: _Step) -> bool:
        now = self._monotonic()
        if now >= step.deadline or step.records >= step.record_budget:
            step.stop = "budget"
        elif now >= step.next_poll:
            step.next_poll = now + self._cancel_poll
            if self._syncs.cancel_requested(run.organization_id, run.integration_id, run.sync_id):
                step.stop = "cancel"
        return step.stop is not None

    def _send(
        self,
        run: SyncRun,
        index: int,
        connector: Connector,
        batch: Batch,
        position: Position,
        read: int,
        done: bool,
        uploads: ThreadPoolExecutor,
    ) -> _Flush | None:
        """Starts writing `batch` as the stream's next part; None when there is nothing to record."""
        reading = connector.quota()
        if reading is not None:
            run.quota = QuotaUsage(
                used=reading.used, limit=reading.limit, what=reading.what, observed_at=_utc(self._clock())
            )
        progress = run.streams[index]
        state = connector.state_of(progress.stream, position) if position != Position() else progress.state
        if not read and not done and state == progress.state:
            return None
        upload = None
        if batch.accepted or batch.rejected:
            part = Part(
                key=self._part_key(run, progress.stream, progress.parts),
                records=batch.payload(),
                record_count=batch.accepted,
                rejects=batch.rejects_payload(),
                reject_count=batch.rejected,
            )
            upload = uploads.submit(self._write, part)
        return _Flush(index, upload, state, done, read, batch.accepted, batch.rejected, batch.filtered)

    def _write(self, part: Part) -> None:
        for sink in self._sinks:
            sink.write(part)

    def _land(self, run: SyncRun, flush: _Flush | None) -> None:
        """Waits until the part is in every sink, then writes the checkpoint that covers it."""
        if flush is None:
            return
        progress = run.streams[flush.index]
        if flush.upload is not None:
            flush.upload.result()
            progress.parts += 1
        if flush.done:
            # A crashed attempt may have written one part past the last checkpoint.
            for sink in self._sinks:
                sink.discard(self._part_key(run, progress.stream, progress.parts))
        progress.state, progress.done = flush.state, flush.done
        progress.records_read += flush.read
        progress.records_written += flush.accepted
        progress.records_rejected += flush.rejected
        progress.records_filtered += flush.filtered
        now = self._clock()
        run.updated_at = _utc(now)
        self._syncs.save(run, lease_until=now + self._lease)

    @staticmethod
    def _part_key(run: SyncRun, stream: Stream, seq: int) -> PartKey:
        return PartKey(
            organization_id=run.organization_id,
            provider=run.provider.value,
            entity=stream.record_entity,
            day=run.started_at.date().isoformat(),
            batch_id=run.sync_id,
            seq=seq,
            stream=stream.entity if stream.record_entity != stream.entity else None,
        )

    def _finish(self, run: SyncRun, status: SyncStatus) -> SyncRun:
        now = self._clock()
        run.status, run.finished_at, run.updated_at = status, _utc(now), _utc(now)
        cursor_states = None
        if status is SyncStatus.SUCCEEDED:
            cursor_states = self._syncs.last_cursor(run.organization_id, run.integration_id)
            cursor_states.update({p.stream.entity: p.state for p in run.streams if p.state})
        self._syncs.finish(run, cursor_states=cursor_states, counters=self._counters(run, now))
        self._update_integration(run)
        self._remember(run)
        return run

    def _counters(self, run: SyncRun, now: float) -> list[dict[str, Any]]:
        """The dashboard's counters of a finished run, written with it (store.activity)."""
        if self._activity is None:
            return []
        duration = ((run.finished_at or run.updated_at) - run.started_at).total_seconds()
        counts = {
            f"syncs_{run.status.value}": 1,
            "records_written": run.records_written,
            "records_rejected": run.records_rejected,
        }
        per_day = {**counts, "sync_seconds": round(duration)}
        return [
            self._activity.hour_update(run.organization_id, counts, now),
            self._activity.day_update(run.organization_id, run.integration_id, per_day, now),
        ]

    def _remember(self, run: SyncRun) -> None:
        """Adds the finished run to its integration's history; the run itself is already final,
        so a failure here is logged, not raised."""
        if self._histories is None:
            return
        try:
            self._histories.record(run)
        except Exception:
            logger.exception("could not record the run in its integration's history", extra={"sync_id": run.sync_id})

    def _update_integration(self, run: SyncRun) -> None:
        """Mirrors the outcome onto the integration (last_sync_at, totals, last_error), retrying
        a version conflict with a concurrent edit a few times; the run itself is already final."""
        for _ in range(_METADATA_ATTEMPTS):
            try:
                before = self._integrations.get(run.organization_id, run.integration_id)
            except NotFoundError:
                return  # deleted meanwhile
            after = before.model_copy(
                update={
                    "last_sync_at": run.finished_at,
                    "total_records_synced": before.total_records_synced + run.records_written,
                    "last_error": run.errors[-1].message if run.status is SyncStatus.FAILED and run.errors else "",
                    "sync_metrics": {
                        "last_sync_id": run.sync_id,
                        "last_sync_status": run.status.value,
                        "last_sync_mode": run.mode.value,
                        "records_read": run.records_read,
                        "records_written": run.records_written,
                        "records_rejected": run.records_rejected,
                        "records_filtered": run.records_filtered,
                    },
                    "version": before.version + 1,
                    "updated_at": run.finished_at,
                }
            )
            try:
                self._integrations.update(before, after)
            except ConflictError:
                continue
            return

    def _mark_authentication_failed(self, run: SyncRun) -> None:
        """Shows on the integration that its credentials stopped working, so its owner knows to
        replace them; a successful connection test or new credentials set it active again."""
        for _ in range(_METADATA_ATTEMPTS):
            try:
                before = self._integrations.get(run.organization_id, run.integration_id)
            except NotFoundError:
                return
            if before.status is IntegrationStatus.AUTHENTICATION_FAILED:
                return
            after = before.model_copy(
                update={
                    "status": IntegrationStatus.AUTHENTICATION_FAILED,
                    "version": before.version + 1,
                    "updated_at": _utc(self._clock()),
                }
            )
            try:
                self._integrations.update(before, after)
            except ConflictError:
                continue
            return

    def _record_error(self, run: SyncRun, message: str, stream: str | None = None) -> None:
        run.errors.append(SyncError(at=_utc(self._clock()), message=message[:2000], stream=stream))
        del run.errors[:-MAX_ERRORS]

    def _record_note(self, run: SyncRun, message: str, stream: str | None) -> None:
        """Kept with the next checkpoint, so a note never outlives the pages it describes."""
        run.notes.append(SyncNote(at=_utc(self._clock()), message=message[:2000], stream=stream))
        del run.notes[:-MAX_ERRORS]

    def _step_failed(self, run: SyncRun, exc: ChurnGuardError, entity: str | None) -> None:
        """What a failing prepare or extract step leaves: the error on the run (unless another
        task holds it), and `auth_failed` on the integration when the credentials were refused."""
        if isinstance(exc, SourcePausedError):
            # Said as a pause, not a failure: why, and when the workflow tries again.
            pause = exc.retry_after or PAUSE_SECONDS
            run.status = SyncStatus.PAUSED
            run.paused_until, run.pause_reason = _utc(self._clock() + pause), exc.message
            self._note_failure(run, exc.message, entity, hold=pause)
            if self._histories is not None:
                self._histories.record_quota(run)
        elif not isinstance(exc, ConflictError):
            self._note_failure(run, exc.message, entity)
        if isinstance(exc, SourceError) and exc.kind is CheckStatus.AUTHENTICATION_FAILED:
            self._mark_authentication_failed(run)

    def _note_failure(self, run: SyncRun, message: str, entity: str | None, *, hold: float = 0.0) -> None:
        """Shows why a step failed in the run's status; the task itself is retried or caught.
        `hold`: seconds the source asked to pause, for which the lock is kept as well."""
        self._record_error(run, message, entity)
        with contextlib.suppress(ConflictError):
            self._syncs.save(run, lease_until=self._clock() + hold + self._lease)

    @staticmethod
    def _result(run: SyncRun, records_this_step: int = 0) -> StepResult:
        return StepResult(
            organization_id=run.organization_id,
            integration_id=run.integration_id,
            sync_id=run.sync_id,
            status=run.status,
            done=run.status in TERMINAL_STATUSES or (run.status is SyncStatus.RUNNING and run.all_streams_done),
            records_read=run.records_read,
            records_written=run.records_written,
            records_this_step=records_this_step,
            estimated_total=run.estimated_total,
        )


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pauses the cyclic garbage collector around the extract loop. The loop allocates millions
    of short-lived rows and records and creates no reference cycles, but each allocation burst
    makes the collector walk the page in hand again: about 15% of throughput. Reference counting
    still frees everything at once; the collector runs again when the loop ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True)
class _Flush:
    """A part on its way to the sinks, and the checkpoint to write once it has landed."""

    index: int
    upload: Future[None] | None
    state: dict[str, Any]
    done: bool
    read: int
    accepted: int
    rejected: int
    filtered: int


_END = object()


class _Prefetch:
    """Reads the next page in a thread while the current one goes through the pipeline: the
    database produces rows (and the driver waits for them, outside the GIL) meanwhile. At most
    one page waits; closing stops the thread and then the read."""

    def __init__(self, pages: Generator[Page, None, None]) -> None:
        self._pages = pages
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="churnguard-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for page in self._pages:
                if not self._offer(page):
                    return
            self._offer(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._offer(exc)

    def _offer(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
            except queue.Full:
                continue
            return True
        return False

    def __iter__(self) -> Iterator[Page]:
        while (item := self._queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            self._queue.get_nowait()
        self._thread.join()
        self._pages.close()


class _Step:
    """The budget and stop reason of one extract step."""

    __slots__ = ("deadline", "entity", "next_poll", "record_budget", "records", "stop")

    def __init__(self, *, deadline: float, record_budget: int, next_poll: float) -> None:
        self.deadline = deadline
        self.record_budget = record_budget
        self.next_poll = next_poll
        self.records = 0
        self.stop: str | None = None
        self.entity: str | None = None  # the stream being extracted


def _resumed(run: SyncRun) -> SyncRun:
    """A paused run that a task picks up again: started or running as before the pause (the
    status is stored with the step's first checkpoint)."""
    if run.status is SyncStatus.PAUSED:
        run.status = SyncStatus.RUNNING if run.prepared_at is not None else SyncStatus.STARTED
        run.paused_until = run.pause_reason = None
    return run


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
