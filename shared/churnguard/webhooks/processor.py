"""The event processor: queued webhook events → canonical records in the data lake.

Exactly once in the lake: each canonical change of an event is written as its own part, named
after the event (`whk_<hash of endpoint and event id>`, sequence = the change's index), so a
redelivered message overwrites what an earlier attempt wrote instead of adding a copy.

In order per record: once the pipeline has accepted a change, an explicit ordering step records
its event time (ties broken by event key) as the record's newest with a conditional write; a
change older than what was already applied is not a record but a reject with the reason
"superseded", so the records area only ever moves a record forward while the rejects area still
holds every event.

One pipeline per endpoint, entity and mapping is built and kept (its field mapping and checks
compiled once); each event only rebinds it to its own batch.

An event whose object is incomplete (a Stripe subscription's discounts are ids in events; a
HubSpot event names one changed property) is completed by re-reading the object through the
integration's source, when the endpoint's integration has credentials; otherwise, or when the
source does not answer, it lands as it came.

A message that fails is reported as a batch item failure and retried by SQS; on its last
receive the failure is recorded as a dead letter (with the error) for the DLQ API, and SQS moves
the message to the dead-letter queue.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import lru_cache
from hashlib import blake2b
from typing import Any, Protocol, TypeVar

from churnguard.canonical import ENTITIES as CANONICAL_ENTITIES
from churnguard.connectors.base import ReReadUnavailable
from churnguard.inbound.changes import Change, include_raw
from churnguard.inbound.queued import QueuedEvent
from churnguard.pipeline.core import Batch, StreamContext, StreamPipeline
from churnguard.pipeline.mapping import FieldMapper, scoped
from churnguard.pipeline.sinks import Part, PartKey, Sink
from churnguard.pipeline.validation import CANONICAL_SCHEMAS, compile_check, schema_for
from churnguard.providers.registry import event_changes
from churnguard.store.activity import ActivityStore
from churnguard.store.webhooks import StoredEndpoint, WebhookStore

logger = logging.getLogger(__name__)

RECORD_STATE_TTL_SECONDS = 90 * 24 * 3600
ENDPOINT_CACHE_SECONDS = 30.0
MAX_CACHED_PIPELINES = 256
MAX_RECENT_READS = 1024
# How much later than an event a re-read must be to be trusted to show it (clocks differ).
READ_CLOCK_MARGIN_SECONDS = 1.0
UNAVAILABLE_RETRY_SECONDS = 60.0
SUPERSEDED = "superseded by a newer event for this record"
ENTITIES = frozenset({*CANONICAL_SCHEMAS, *CANONICAL_ENTITIES})


@lru_cache(maxsize=64)
def _schema_check(entity: str) -> Callable[[Mapping[str, Any]], str | None] | None:
    schema = schema_for(entity)
    return compile_check(schema) if schema is not None else None


CANONICAL_DATA = "data"


def _canonical_data(row: Mapping[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = row[CANONICAL_DATA]
    return data


class CurrentEntity(Protocol):
    """One object as the integration's source has it now, as canonical data (SyncEngine.current_entity)."""

    def __call__(
        self, organization_id: str, integration_id: str, entity: str, object_id: str, *, raw: bool
    ) -> dict[str, Any] | None: ...


K = TypeVar("K")
V = TypeVar("V")


def _keep(cache: dict[K, V], key: K, value: V, limit: int) -> None:
    """Stores `value` as the newest entry, dropping the oldest when `cache` holds `limit`."""
    cache.pop(key, None)
    if len(cache) >= limit:
        cache.pop(next(iter(cache)))
    cache[key] = value


STOPPED_ON_FINAL_ATTEMPT = "the processor stopped (crashed or timed out) during the event's final attempt"


class EventProcessor:
    def __init__(
        self,
        store: WebhookStore,
        sinks: list[Sink],
        *,
        max_receive_count: int,
        current_entity: CurrentEntity | None = None,
        clock: Callable[[], float] = time.time,
        activity: ActivityStore | None = None,
    ) -> None:
        self._store = store
        self._activity = activity
        # Records landed per (organisation, integration) since the last flush_activity().
        self._tally: dict[tuple[str, str], Counter[str]] = {}
        self._current_entity = current_entity
        self._sinks = sinks
        self._max_receive_count = max_receive_count
        self._clock = clock
        self._endpoints: dict[tuple[str, str], tuple[float, StoredEndpoint | None]] = {}
        self._pipelines: dict[tuple[Any, ...], StreamPipeline] = {}
        self._reads: dict[tuple[str, str, str, str, bool], tuple[float, dict[str, Any]]] = {}
        # Sources that said they cannot re-read (no credentials): not asked again for a while.
        self._unavailable: dict[tuple[str, str, str], float] = {}

    def handle_record(self, message_id: str, body: str, receive_count: int) -> None:
        """Processes one SQS message; on its last attempt a failure is kept as a dead letter.

        The last attempt records its dead letter before it starts and removes it when it
        succeeds: an invocation that crashes or times out cannot record anything afterwards,
        and its message goes to the DLQ all the same, so the record written first is what makes
        it visible in GET /api/dlq."""
        try:
            queued = QueuedEvent.from_body(body)
        except (ValueError, KeyError, TypeError):
            logger.error("unreadable webhook message", extra={"message_id": message_id})
            raise
        final = receive_count >= self._max_receive_count
        if final:
            self._dead_letter(queued, STOPPED_ON_FINAL_ATTEMPT, receive_count)
        tally = self._tally.setdefault((queued.organization_id, queued.integration_id), Counter())
        accepted = {"webhook_accepted": 1, f"wh#{queued.event.provider}#accepted": 1}
        try:
            landed = self.process(queued)
        except Exception as exc:
            if final:
                self._dead_letter(queued, f"{type(exc).__name__}: {str(exc)[:500]}", receive_count)
                tally.update({**accepted, "deadletters": 1})
            raise
        if final:
            self._store.delete_deadletter(queued.organization_id, queued.event_key)
        tally.update(landed)
        tally.update(accepted)

    def flush_activity(self) -> None:
        """Adds what this batch landed to the dashboard's counters: one write per organisation
        hour and integration day, not one per event."""
        tally, self._tally = self._tally, {}
        if self._activity is None:
            return
        now = self._clock()
        for (organization_id, integration_id), counts in tally.items():
            self._activity.add(self._activity.hour_update(organization_id, counts, now))
            if integration_id:
                self._activity.add(self._activity.day_update(organization_id, integration_id, counts, now))

    def process(self, queued: QueuedEvent) -> Counter[str]:
        """Lands the event's changes; returns the records written and rejected."""
        stored = self._endpoint(queued.organization_id, queued.event.provider)
        options = stored.doc if stored is not None else {}
        changes = event_changes(queued.event.provider)(queued.event, options)
        landed: Counter[str] = Counter()
        for index, change in enumerate(changes):
            complete = self._completed(queued, change, include_raw(options)) if change.incomplete else change
            landed.update(self._land(queued, complete, index, options.get("field_mappings") or {}))
        return landed

    def _land(
        self, queued: QueuedEvent, change: Change, index: int, field_mappings: Mapping[str, str]
    ) -> dict[str, int]:
        event = queued.event
        batch_id = "whk_" + blake2b(queued.event_key.encode(), digest_size=12).hexdigest()
        pipeline = self._pipeline(queued, change, field_mappings).for_batch(batch_id, f"webhook:{event.event_type}")
        envelope = {
            "id": change.record_id or None,
            "event_id": event.event_id,
            "event_type": event.event_type,
            "occurred_at": change.occurred_at.isoformat(),
        }
        # A canonical entity's data is exactly what its provider's mapping built, as from a sync.
        row = {**envelope, CANONICAL_DATA: change.data} if change.canonical else {**change.data, **envelope}
        batch = Batch()
        pipeline.process([row], batch, change.operation)
        if batch.accepted and not self._advance(queued, change, index):
            batch = Batch()
            pipeline.reject(batch, row, change.record_id or None, SUPERSEDED)
        part = Part(
            key=PartKey(
                organization_id=queued.organization_id,
                provider=event.provider,
                entity=change.entity,
                day=change.occurred_at.date().isoformat(),
                batch_id=batch_id,
                seq=index,
            ),
            records=batch.payload(),
            record_count=batch.accepted,
            rejects=batch.rejects_payload(),
            reject_count=batch.rejected,
        )
        for sink in self._sinks:
            sink.write(part)
        return {
            "records_written": batch.accepted,
            "records_rejected": batch.rejected,
            "webhook_records": batch.accepted,
        }

    def _completed(self, queued: QueuedEvent, change: Change, raw: bool) -> Change:
        """The change as the whole canonical entity the source has now, when the source can say.

        A read made after the event happened already shows it: a burst of events for one object
        (HubSpot sends one per changed property) costs one read, not one each."""
        if self._current_entity is None:
            return change
        source = (queued.organization_id, queued.integration_id, change.entity)
        said_no = self._unavailable.get(source)
        if said_no is not None and time.monotonic() - said_no < UNAVAILABLE_RETRY_SECONDS:
            return change
        key = (queued.organization_id, queued.integration_id, change.entity, change.record_id, raw)
        recent = self._reads.get(key)
        if recent is not None and recent[0] - READ_CLOCK_MARGIN_SECONDS >= change.occurred_at.timestamp():
            current: dict[str, Any] | None = recent[1]
        else:
            read_at = self._clock()
            try:
                current = self._current_entity(
                    queued.organization_id, queued.integration_id, change.entity, change.record_id, raw=raw
                )
            except ReReadUnavailable:
                self._unavailable[source] = time.monotonic()
                return change
            self._unavailable.pop(source, None)
            if current is not None:
                _keep(self._reads, key, (read_at, current), MAX_RECENT_READS)
        if current is None:
            return change
        return replace(change, data=current, canonical=True, ordering_key=None, incomplete=False)

    def _advance(self, queued: QueuedEvent, change: Change, index: int) -> bool:
        """The ordering step: whether this change is now the newest applied to its record."""
        return self._store.advance_record(
            queued.organization_id,
            queued.integration_id,
            change.entity,
            change.ordering_key or change.record_id,
            event_time_ms=int(change.occurred_at.timestamp() * 1000),
            event_key=f"{queued.event_key}#{index}",
            expires_at=int(self._clock()) + RECORD_STATE_TTL_SECONDS,
        )

    def _pipeline(self, queued: QueuedEvent, change: Change, field_mappings: Mapping[str, str]) -> StreamPipeline:
        """The endpoint's pipeline for the change's entity, built on first use and kept."""
        mappings = scoped(field_mappings, change.entity, ENTITIES)
        key = (
            queued.organization_id,
            queued.integration_id,
            queued.event.provider,
            change.entity,
            change.canonical,
            tuple(sorted(mappings.items())),
        )
        pipeline = self._pipelines.get(key)
        if pipeline is None:
            pipeline = StreamPipeline(
                StreamContext(
                    organization_id=queued.organization_id,
                    integration_id=queued.integration_id,
                    provider=queued.event.provider,
                    entity=change.entity,
                    source="webhook",
                    batch_id="",
                    primary_key=("id",),
                    cursor_field="event_id",
                    event_time_field="occurred_at",
                ),
                mapper=FieldMapper(mappings) if mappings else None,
                check=None if change.canonical else _schema_check(change.entity),
                canonicalize=_canonical_data if change.canonical else None,
            )
            _keep(self._pipelines, key, pipeline, MAX_CACHED_PIPELINES)
        return pipeline

    def _endpoint(self, organization_id: str, provider: str) -> StoredEndpoint | None:
        """The endpoint's mappings and options, re-read at most every ENDPOINT_CACHE_SECONDS."""
        now = time.monotonic()
        cached = self._endpoints.get((organization_id, provider))
        if cached is not None and now - cached[0] < ENDPOINT_CACHE_SECONDS:
            return cached[1]
        stored = self._store.endpoint(organization_id, provider)
        self._endpoints[(organization_id, provider)] = (now, stored)
        return stored

    def _dead_letter(self, queued: QueuedEvent, error: str, receive_count: int) -> None:
        try:
            self._store.put_deadletter(
                queued.organization_id,
                queued.event_key,
                {
                    "message_key": queued.event_key,
                    "endpoint_id": queued.endpoint_id,
                    "integration_id": queued.integration_id,
                    "provider": queued.event.provider,
                    "event_id": queued.event.event_id,
                    "event_type": queued.event.event_type,
                    "error": error,
                    "receive_count": receive_count,
                    "failed_at": self._clock(),
                },
            )
        except Exception:
            logger.exception("could not record a dead letter", extra={"endpoint_id": queued.endpoint_id})
