"""Stream lifecycle behind /api/streaming/streams: register, change, pause, delete, observe.

A stream is written with its integration (same id, `streaming`, `real_time`) in one transaction,
credentials sealed as an integration's. Kafka and Kinesis streams then get a Lambda event source
mapping on the stream processor; if that fails, the stream is removed again, so nothing is left
half-created. Redis Streams (and WebSocket feeds) get a continuous consumer workflow execution
instead, started on create and resume, stopped on pause and delete.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import ValidationError

from churnguard.crypto import CredentialCipher, encryption_context
from churnguard.errors import ConflictError, ServiceUnavailableError, ValidationFailedError
from churnguard.integrations import check_organization, validation_details
from churnguard.models import (
    DataSyncMode,
    IntegrationConfiguration,
    IntegrationCredentials,
    IntegrationStatus,
    IntegrationType,
    ProviderName,
    SyncConfiguration,
    utc_now,
)
from churnguard.netguard import BlockedAddressError, refusal_for_host
from churnguard.store.integrations import IntegrationStore
from churnguard.store.streams import StreamStore
from churnguard.stream_models import (
    QuarantinedMessage,
    QuarantinePage,
    ReplayResult,
    StreamConfiguration,
    StreamCreated,
    StreamCreateRequest,
    StreamList,
    StreamMetrics,
    StreamStatus,
    StreamType,
    StreamUpdateRequest,
    StreamView,
    new_ingest_key,
)
from churnguard.streaming.processor import StreamProcessor
from churnguard.streaming.sources import kafka_source_of

logger = logging.getLogger(__name__)

METRICS_WINDOW_SECONDS = 300
# What each source keeps before it drops unread messages (the defaults; buffer_utilization uses them).
RETENTION_SECONDS = {
    StreamType.KAFKA: 7 * 24 * 3600,
    StreamType.KINESIS: 24 * 3600,
    StreamType.CUSTOM: 24 * 3600,
}


class SourceMappings(Protocol):
    """Lambda event source mappings on the stream processor (LambdaSourceMappings)."""

    def create(self, config: StreamConfiguration, credentials: IntegrationCredentials | None) -> str: ...

    def set_enabled(self, mapping_id: str, enabled: bool) -> None: ...

    def set_batch_size(self, mapping_id: str, batch_size: int) -> None: ...

    def delete(self, mapping_id: str, stream_id: str) -> None: ...


class Consumers(Protocol):
    """Continuous consumer workflow executions (continuous.ConsumerWorkflow)."""

    def start(self, organization_id: str, consumer_id: str) -> str: ...

    def stop(self, execution: str) -> None: ...


class SourceCheck(Protocol):
    """Whether a stream's source answers, before anything is created (checks.SourceReachability)."""

    def __call__(self, config: StreamConfiguration, credentials: IntegrationCredentials | None) -> str | None: ...


CONSUMED = frozenset({StreamType.REDIS_STREAMS, StreamType.WEBSOCKET})


def hash_ingest_key(ingest_key: str) -> str:
    return hashlib.sha256(ingest_key.encode()).hexdigest()


def sources_of(config: StreamConfiguration) -> list[str]:
    """The lookup names by which the processor finds this stream from a Lambda event."""
    if config.stream_type is StreamType.KAFKA:
        connection = config.connection_config
        return [kafka_source_of(connection.bootstrap_servers, connection.msk_cluster_arn, t) for t in config.topics]
    if config.stream_type is StreamType.KINESIS:
        return [f"kinesis:{config.topics[0]}"]
    return []


class StreamService:
    def __init__(
        self,
        store: StreamStore,
        integrations: IntegrationStore,
        cipher: CredentialCipher,
        mappings: SourceMappings | None,
        processor: StreamProcessor,
        clock: Callable[[], float] = time.time,
        consumers: Consumers | None = None,
        source_check: SourceCheck | None = None,
    ) -> None:
        self._consumers = consumers
        self._source_check = source_check
        self._store = store
        self._integrations = integrations
        self._cipher = cipher
        self._mappings = mappings
        self._processor = processor
        self._clock = clock

    def create(self, organization_id: str, request: StreamCreateRequest) -> StreamCreated:
        check_organization(organization_id, request.organization_id)
        _check_addresses(request)
        config = StreamConfiguration(
            **request.model_dump(exclude={"organization_id", "credentials"}), organization_id=organization_id
        )
        ingest_key = new_ingest_key() if config.stream_type is StreamType.CUSTOM else None
        if ingest_key is not None:
            config.ingest_key_prefix = ingest_key[:8]
            config.ingest_key_hash = hash_ingest_key(ingest_key)
        if self._source_check is not None:
            problem = self._source_check(config, request.credentials)
            if problem is not None:
                raise ValidationFailedError(
                    f"the stream's source did not answer, so the stream was not created: {problem}",
                    {"fields": [{"field": "connection_config", "message": problem}]},
                )
        integration = self._integration(config)
        envelope = None
        if request.credentials is not None:
            config.credentials_summary = request.credentials.summary(updated_at=utc_now())
            integration.credentials_summary = config.credentials_summary
            envelope = self._cipher.encrypt(
                request.credentials.to_plaintext(), encryption_context(organization_id, config.stream_id)
            )
        also = self._store.items_for_create(config, config.ingest_key_hash, sources_of(config))
        try:
            self._integrations.create(integration, envelope, also)
        except ConflictError:
            raise
        except Exception as exc:
            if type(exc).__name__ == "TransactionCanceledException":
                raise ConflictError(
                    "another stream of this deployment already reads this source (topic or stream ARN)",
                    {"field": "topics"},
                ) from None
            raise
        if self._mappings is not None and config.stream_type in (StreamType.KAFKA, StreamType.KINESIS):
            config = self._attach_mapping(self._mappings, config, integration, request.credentials)
        if self._consumers is not None and config.stream_type in CONSUMED:
            config = self._start_consumer(self._consumers, config, integration)
        return StreamCreated(**StreamView.of(config).model_dump(), ingest_key=ingest_key)

    def _attach_mapping(
        self,
        mappings: SourceMappings,
        config: StreamConfiguration,
        integration: IntegrationConfiguration,
        credentials: IntegrationCredentials | None,
    ) -> StreamConfiguration:
        """Creates the event source mapping; on failure the stream is removed again."""
        try:
            mapping_id = mappings.create(config, credentials)
        except Exception as exc:
            self._integrations.delete(integration, self._lookups(config))
            reason = _aws_reason(exc)
            logger.warning("event source mapping refused", extra={"stream_id": config.stream_id, "reason": reason})
            if isinstance(exc, ValidationFailedError):
                raise
            if isinstance(exc, ValueError):  # the credentials do not fit the security protocol
                raise ValidationFailedError(
                    f"the stream was not created: {exc}", {"fields": [{"field": "credentials", "message": str(exc)}]}
                ) from None
            raise ValidationFailedError(
                f"the stream's source could not be attached, so the stream was not created: {reason}",
                {"fields": [{"field": "topics", "message": reason}]},
            ) from None
        after = config.model_copy(update={"source_mapping": mapping_id, "version": config.version + 1})
        self._store.put(config, after)
        return after

    def _start_consumer(
        self, consumers: Consumers, config: StreamConfiguration, integration: IntegrationConfiguration | None
    ) -> StreamConfiguration:
        """Starts the stream's consumer workflow; a new stream that cannot have one is removed."""
        try:
            execution = consumers.start(config.organization_id, config.stream_id)
        except Exception as exc:
            if integration is not None:
                self._integrations.delete(integration, self._lookups(config))
            raise ServiceUnavailableError(
                f"the stream's consumer could not be started: {_aws_reason(exc)}; retry"
            ) from None
        after = config.model_copy(update={"consumer_execution": execution, "version": config.version + 1})
        self._store.put(config, after)
        return after

    def _lookups(self, config: StreamConfiguration) -> list[dict[str, Any]]:
        """The transaction items that delete the stream with its ingest key and source lookups."""
        return self._store.items_for_delete(config, config.ingest_key_hash, sources_of(config))

    def get(self, organization_id: str, stream_id: str) -> StreamView:
        return StreamView.of(self._store.get(organization_id, stream_id))

    def list_streams(self, organization_id: str) -> StreamList:
        return StreamList(items=[StreamView.of(c) for c in self._store.for_organization(organization_id)])

    def update(self, organization_id: str, stream_id: str, patch: StreamUpdateRequest) -> StreamView:
        check_organization(organization_id, patch.organization_id)
        before = self._store.get(organization_id, stream_id)
        changes = patch.model_dump(exclude_unset=True, exclude={"organization_id"})
        if "topics" in changes and changes["topics"] != before.topics:
            raise ValidationFailedError(
                "a stream's topics cannot change; create another stream for other topics",
                {"fields": [{"field": "topics", "message": "fixed at creation"}]},
            )
        document = before.model_dump(mode="json") | changes | {"version": before.version + 1}
        document["updated_at"] = utc_now().isoformat()
        try:
            after = StreamConfiguration.model_validate(document)
        except ValidationError as exc:
            raise ValidationFailedError(
                "the stream would not be valid after this change", validation_details(exc)
            ) from None
        if after.connection_config != before.connection_config and before.source_mapping:
            raise ValidationFailedError(
                "the source's connection cannot change under a running mapping; create another stream",
                {"fields": [{"field": "connection_config", "message": "fixed while attached"}]},
            )
        integration = self._integrations.get(organization_id, stream_id)
        renamed = integration.model_copy(
            update={
                "integration_name": after.name,
                "version": integration.version + 1,
                "updated_at": utc_now(),
                "sync_config": integration.sync_config.model_copy(update={"batch_size": after.batch_size}),
            }
        )
        self._integrations.update(integration, renamed, also=self._store.items_for_update(before, after))
        if before.source_mapping and after.batch_size != before.batch_size and self._mappings is not None:
            self._unavailable_on_failure(
                lambda: self._mappings.set_batch_size(before.source_mapping or "", after.batch_size)  # type: ignore[union-attr]
            )
        return StreamView.of(after)

    def set_status(self, organization_id: str, stream_id: str, status: StreamStatus) -> StreamView:
        """Pause or resume: the mapping is disabled or enabled; a custom stream refuses events."""
        before = self._store.get(organization_id, stream_id)
        if before.status is status:
            return StreamView.of(before)
        if before.source_mapping and self._mappings is not None:
            mapping = before.source_mapping
            self._unavailable_on_failure(
                lambda: self._mappings.set_enabled(mapping, status is StreamStatus.ACTIVE)  # type: ignore[union-attr]
            )
        after = before.model_copy(update={"status": status, "version": before.version + 1, "updated_at": utc_now()})
        integration = self._integrations.get(organization_id, stream_id)
        shown = IntegrationStatus.ACTIVE if status is StreamStatus.ACTIVE else IntegrationStatus.PAUSED
        self._integrations.update(
            integration,
            integration.model_copy(
                update={"status": shown, "version": integration.version + 1, "updated_at": utc_now()}
            ),
            also=self._store.items_for_update(before, after),
        )
        if self._consumers is not None and before.stream_type in CONSUMED:
            # A paused stream's turns end by themselves; stopping its execution saves the wait.
            if status is StreamStatus.PAUSED and before.consumer_execution:
                self._consumers.stop(before.consumer_execution)
            if status is StreamStatus.ACTIVE:
                after = self._start_consumer(self._consumers, after, None)
        return StreamView.of(after)

    def delete(self, organization_id: str, stream_id: str) -> None:
        """Removes the mapping first (a mapping without its stream would only fail), then the
        stream with its integration and lookups, then its quarantine and counters."""
        config = self._store.get(organization_id, stream_id)
        if config.source_mapping and self._mappings is not None:
            mapping = config.source_mapping
            self._unavailable_on_failure(lambda: self._mappings.delete(mapping, stream_id))  # type: ignore[union-attr]
        integration = self._integrations.get(organization_id, stream_id)
        self._integrations.delete(integration, self._lookups(config))
        if config.consumer_execution and self._consumers is not None:
            self._consumers.stop(config.consumer_execution)
        self._store.forget(stream_id)

    def metrics(self, organization_id: str, stream_id: str) -> StreamMetrics:
        config = self._store.get(organization_id, stream_id)
        now = self._clock()
        minutes = self._store.stats(stream_id, now - METRICS_WINDOW_SECONDS)
        total = {
            name: sum(m.get(name, 0.0) for m in minutes)
            for name in ("messages", "errors", "processing_ms", "records", "rejects", "sequence_gaps", "duplicates")
        }
        messages = int(total["messages"])
        span = float(METRICS_WINDOW_SECONDS)
        if minutes:
            span = max(1.0, min(METRICS_WINDOW_SECONDS, now - minutes[0]["minute"] * 60))
        newest = max(minutes, key=lambda m: m["minute"]) if minutes else None
        lag_seconds = None
        if newest is not None and "newest_arrival" in newest:
            lag_seconds = max(0.0, newest["processed_at"] - newest["newest_arrival"])
        retention = RETENTION_SECONDS.get(config.stream_type)
        return StreamMetrics(
            stream_id=stream_id,
            status=config.status,
            window_seconds=METRICS_WINDOW_SECONDS,
            messages=messages,
            messages_per_second=round(messages / span, 3),
            avg_processing_time_ms=round(total["processing_ms"] / messages, 3) if messages else 0.0,
            error_rate=round(total["errors"] / messages, 4) if messages else 0.0,
            quarantined=len(self._store.quarantined(stream_id)),
            records_written=int(total["records"]),
            records_rejected=int(total["rejects"]),
            duplicates_skipped=int(total["duplicates"]),
            sequence_gaps=int(total["sequence_gaps"]),
            lag_messages=_latest_gauge(minutes, "lag_messages"),
            lag_seconds=None if lag_seconds is None else round(lag_seconds, 3),
            buffer_utilization=None if lag_seconds is None or not retention else round(lag_seconds / retention, 6),
            retention_seconds=retention,
            measured_at=utc_now(),
        )

    def quarantine(self, organization_id: str, stream_id: str) -> QuarantinePage:
        self._store.get(organization_id, stream_id)
        items = self._store.quarantined(stream_id, limit=500)
        return QuarantinePage(
            items=[
                QuarantinedMessage(
                    message_id=f"{item.partition}#{item.position}",
                    partition=item.partition,
                    position=item.position,
                    error=item.error,
                    attempts=item.attempts,
                    quarantined_at=_utc(item.quarantined_at),
                    payload_preview=item.payload[:512].decode("utf-8", "replace"),
                )
                for item in items
            ]
        )

    def replay(self, organization_id: str, stream_id: str, message_ids: list[str] | None) -> ReplayResult:
        """Lands quarantined messages with the stream's current settings; those that still fail stay."""
        config = self._store.get(organization_id, stream_id)
        items = self._store.quarantined(stream_id)
        if message_ids is not None:
            wanted = set(message_ids)
            items = [item for item in items if f"{item.partition}#{item.position}" in wanted]
        landed, errors = self._processor.replay(config, items)
        self._store.release(stream_id, landed)
        return ReplayResult(
            replayed=len(items), landed=len(landed), still_failing=len(items) - len(landed), errors=errors[:50]
        )

    @staticmethod
    def _integration(config: StreamConfiguration) -> IntegrationConfiguration:
        return IntegrationConfiguration(
            integration_id=config.stream_id,
            organization_id=config.organization_id,
            integration_name=config.name,
            integration_type=IntegrationType.STREAMING,
            provider_name=ProviderName.CUSTOM,
            status=IntegrationStatus.ACTIVE,
            sync_config=SyncConfiguration(sync_mode=DataSyncMode.REAL_TIME, batch_size=config.batch_size),
            tags=[f"stream:{config.stream_type.value}"],
        )

    @staticmethod
    def _unavailable_on_failure(call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception as exc:
            raise ServiceUnavailableError(
                f"the stream's event source mapping could not be changed: {_aws_reason(exc)}; retry"
            ) from None


def _check_addresses(request: StreamCreateRequest) -> None:
    """Refuses broker and feed addresses the address guard refuses, before connecting anywhere."""
    from urllib.parse import urlsplit

    hosts = [server.rsplit(":", 1)[0] for server in request.connection_config.bootstrap_servers]
    if request.connection_config.url:
        hosts.append(urlsplit(request.connection_config.url).hostname or "")
    for host in hosts:
        try:
            refusal = refusal_for_host(host)
        except BlockedAddressError as exc:
            refusal = str(exc)
        if refusal is not None:
            raise ValidationFailedError(
                f"the stream's source address is not allowed: {refusal}",
                {"fields": [{"field": "connection_config", "message": refusal}]},
            )


def _aws_reason(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', '')}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


def _utc(epoch: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC)


def _latest_gauge(minutes: list[dict[str, float]], name: str) -> int | None:
    """The newest minute's value of a gauge a consumer reports (the Redis group's lag)."""
    for minute in sorted(minutes, key=lambda m: m["minute"], reverse=True):
        if name in minute:
            return int(minute[name])
    return None
