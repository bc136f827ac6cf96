"""Streams: the documented `StreamConfiguration` and the API's request and answer bodies.

A stream is also an integration of its organisation (`integration_type` streaming, `sync_mode`
real_time, the same id), so it is listed with the others, its credentials are sealed exactly as an
integration's, and the dashboard scores it. What only a stream has is kept here.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, StringConstraints, model_validator

from churnguard.models import (
    CredentialsSummary,
    FieldPath,
    IntegrationCredentials,
    Model,
    Name,
    OrganizationId,
    StrictModel,
    utc_now,
)

INGEST_KEY_PREFIX = "cgi_"
MAX_INGEST_EVENTS = 500
MAX_INGEST_BYTES = 1_048_576


class StreamType(StrEnum):
    KAFKA = "kafka"
    KINESIS = "kinesis"
    REDIS_STREAMS = "redis_streams"
    WEBSOCKET = "websocket"
    CUSTOM = "custom"


class DataFormat(StrEnum):
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"
    TEXT = "text"


class ProcessingMode(StrEnum):
    AT_LEAST_ONCE = "at_least_once"
    EXACTLY_ONCE = "exactly_once"


class StreamStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


Topic = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]
HostPort = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9.-]{1,253}:[0-9]{1,5}$")]
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,64}$")]
KINESIS_STREAM_ARN = r"^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:[0-9]{12}:stream/[A-Za-z0-9_.-]{1,128}$"
MSK_CLUSTER_ARN = r"^arn:aws[a-z-]*:kafka:[a-z0-9-]+:[0-9]{12}:cluster/.+$"
CONSUMER_GROUP = r"^[A-Za-z0-9._-]{1,200}$"


class StreamConnection(StrictModel):
    """Where the stream's source is and how to read it; secrets go in `credentials` (Kafka
    SASL/SCRAM: username and password; mTLS: custom_fields client_certificate and private_key)."""

    bootstrap_servers: list[HostPort] = Field(default_factory=list, max_length=20, description="Kafka brokers")
    msk_cluster_arn: Annotated[str, StringConstraints(pattern=MSK_CLUSTER_ARN)] | None = None
    url: Annotated[str, StringConstraints(max_length=2048)] | None = Field(
        default=None, description="redis://… or rediss:// (Redis Streams), wss:// or ws:// (WebSocket)"
    )
    headers: dict[HeaderName, Annotated[str, StringConstraints(max_length=1024)]] = Field(
        default_factory=dict,
        max_length=50,
        description="WebSocket handshake headers; secret ones go in credentials.custom_fields as header.<Name>",
    )
    subscribe_messages: list[Any] = Field(
        default_factory=list, max_length=50, description="messages sent after connecting (the feed's protocol)"
    )
    consumer_group: Annotated[str, StringConstraints(pattern=CONSUMER_GROUP)] | None = Field(
        default=None, description="Kafka and Redis; default: the stream id"
    )
    starting_position: Literal["LATEST", "TRIM_HORIZON"] = "LATEST"
    max_deliveries: int = Field(
        default=5, ge=1, le=100, description="attempts before a message is set aside in quarantine"
    )
    claim_idle_seconds: int = Field(
        default=60,
        ge=1,
        le=86_400,
        description="Redis: how long another consumer's entry may stay pending before it is taken over",
    )
    security_protocol: Literal["PLAINTEXT", "SASL_SCRAM_256", "SASL_SCRAM_512", "MTLS"] = "PLAINTEXT"
    sequence_field: FieldPath | None = Field(
        default=None, description="WebSocket: the field holding the feed's sequence number (gaps are detected)"
    )
    resume_message: Any = Field(
        default=None,
        description='WebSocket: sent after reconnecting; "{last_sequence}" in it becomes the last sequence landed',
    )
    heartbeat_message: Any = Field(default=None, description="WebSocket: sent every heartbeat_seconds")
    heartbeat_seconds: int = Field(default=30, ge=1, le=3600)


class StreamSettings(StrictModel):
    """The client-editable part of a stream, with the rules that join its fields."""

    name: Name
    stream_type: StreamType
    topics: list[Topic] = Field(default_factory=list, max_length=20)
    data_format: DataFormat = DataFormat.JSON
    processing_mode: ProcessingMode = ProcessingMode.EXACTLY_ONCE
    batch_size: int = Field(default=100, ge=1, le=10_000)
    connection_config: StreamConnection = Field(default_factory=StreamConnection)
    field_mappings: dict[FieldPath, FieldPath] = Field(default_factory=dict, max_length=500)
    entity: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")] = Field(
        default="event", description="the canonical entity (or own entity name) the messages become"
    )
    record_id_field: FieldPath | None = None
    event_time_field: FieldPath | None = None
    event_id_field: FieldPath | None = None
    filters: dict[FieldPath, Any] = Field(default_factory=dict, max_length=50)
    include_raw: bool = True

    @model_validator(mode="after")
    def _type_rules(self) -> StreamSettings:
        connection = self.connection_config
        kind = self.stream_type
        if kind is StreamType.KAFKA:
            if len(self.topics) != 1:
                raise ValueError("a kafka stream reads one topic (Lambda's Kafka event source reads one)")
            if bool(connection.bootstrap_servers) == bool(connection.msk_cluster_arn):
                raise ValueError("a kafka stream needs exactly one of bootstrap_servers and msk_cluster_arn")
        elif kind is StreamType.KINESIS:
            if len(self.topics) != 1 or not re.match(KINESIS_STREAM_ARN, self.topics[0]):
                raise ValueError("a kinesis stream's topics are its one stream ARN (arn:aws:kinesis:…:stream/…)")
        elif kind is StreamType.REDIS_STREAMS:
            if not self.topics:
                raise ValueError("a redis_streams stream needs topics (the stream keys)")
            _check_url(connection.url, ("redis", "rediss"), "redis_streams")
        elif kind is StreamType.WEBSOCKET:
            _check_url(connection.url, ("ws", "wss"), "websocket")
        elif self.topics:
            raise ValueError("a custom stream has no topics: events are posted to /ingest/{stream_id}")
        return self


def _check_url(url: str | None, schemes: tuple[str, ...], kind: str) -> None:
    if not url:
        raise ValueError(f"a {kind} stream needs connection_config.url")
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"connection_config.url of a {kind} stream must be {' or '.join(s + '://' for s in schemes)}")


class StreamCreateRequest(StreamSettings):
    """POST /api/streaming/streams."""

    organization_id: OrganizationId | None = None
    credentials: IntegrationCredentials | None = None


class StreamUpdateRequest(StrictModel):
    """PATCH body: any subset of the settings; the stream type and credentials stay."""

    organization_id: OrganizationId | None = None
    name: Name | None = None
    topics: list[Topic] | None = None
    data_format: DataFormat | None = None
    processing_mode: ProcessingMode | None = None
    batch_size: int | None = Field(default=None, ge=1, le=10_000)
    connection_config: StreamConnection | None = None
    field_mappings: dict[FieldPath, FieldPath] | None = None
    entity: str | None = None
    record_id_field: FieldPath | None = None
    event_time_field: FieldPath | None = None
    event_id_field: FieldPath | None = None
    filters: dict[FieldPath, Any] | None = None
    include_raw: bool | None = None


def new_stream_id() -> str:
    return f"str_{secrets.token_hex(8)}"


def new_ingest_key() -> str:
    return INGEST_KEY_PREFIX + secrets.token_urlsafe(32)


class StreamConfiguration(StreamSettings):
    """A stream as stored. `source_mapping` is the Lambda event source mapping (Kafka, Kinesis)."""

    stream_id: str = Field(default_factory=new_stream_id)
    organization_id: OrganizationId
    status: StreamStatus = StreamStatus.ACTIVE
    source_mapping: str | None = None
    consumer_execution: str | None = None
    credentials_summary: CredentialsSummary | None = None
    ingest_key_prefix: str | None = None
    ingest_key_hash: str | None = None
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    version: int = 1

    @property
    def consumer_group(self) -> str:
        return self.connection_config.consumer_group or self.stream_id


class StreamView(Model):
    stream_id: str
    organization_id: str
    name: str
    stream_type: StreamType
    topics: list[str]
    data_format: DataFormat
    processing_mode: ProcessingMode
    batch_size: int
    connection_config: StreamConnection
    field_mappings: dict[str, str]
    entity: str
    record_id_field: str | None
    event_time_field: str | None
    event_id_field: str | None
    filters: dict[str, Any]
    include_raw: bool
    status: StreamStatus
    credentials: CredentialsSummary | None
    ingest_key_prefix: str | None
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, config: StreamConfiguration) -> StreamView:
        data = config.model_dump(
            exclude={"credentials_summary", "source_mapping", "consumer_execution", "ingest_key_hash"}
        )
        return cls(**data, credentials=config.credentials_summary)


class StreamCreated(StreamView):
    ingest_key: str | None = Field(
        default=None, description="custom streams: the key for POST /ingest/{stream_id}, shown once"
    )


class StreamList(Model):
    items: list[StreamView]


class StreamMetrics(Model):
    stream_id: str
    status: StreamStatus
    window_seconds: int
    messages: int
    messages_per_second: float
    avg_processing_time_ms: float
    error_rate: float
    quarantined: int
    records_written: int
    records_rejected: int
    duplicates_skipped: int
    sequence_gaps: int = Field(description="WebSocket: sequence numbers the feed skipped")
    lag_messages: int | None
    lag_seconds: float | None
    buffer_utilization: float | None = Field(description="share of the source's retention the lag has used")
    retention_seconds: int | None
    measured_at: datetime


class QuarantinedMessage(Model):
    message_id: str
    partition: str
    position: str
    error: str
    attempts: int
    quarantined_at: datetime
    payload_preview: str = Field(description="the message's first 512 characters")


class QuarantinePage(Model):
    items: list[QuarantinedMessage]
    next_token: str | None = None


class ReplayRequest(StrictModel):
    message_ids: list[Annotated[str, StringConstraints(max_length=256)]] | None = Field(
        default=None, max_length=500, description="which messages; all of them when omitted"
    )


class ReplayResult(Model):
    replayed: int
    landed: int
    still_failing: int
    errors: list[str]


class IngestEventResult(Model):
    index: int
    status: Literal["accepted", "rejected"]
    event_id: str | None = None
    error: str | None = None


class IngestResult(Model):
    accepted: int
    rejected: int
    results: list[IngestEventResult]
