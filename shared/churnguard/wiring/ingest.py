"""The custom streams' HTTPS ingest, as this function's environment configures it: no sinks,
no KMS, nothing but the table and the ingest stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from churnguard import aws
from churnguard.config import env_str, platform_settings, table_name

if TYPE_CHECKING:
    from churnguard.streaming.ingest import StreamIngest


def stream_ingest() -> StreamIngest:
    from churnguard.store.streams import StreamStore
    from churnguard.store.webhooks import WebhookStore
    from churnguard.streaming.ingest import StreamIngest
    from churnguard.streaming.sources import IngestWriter

    dynamodb = aws.client("dynamodb")
    return StreamIngest(
        StreamStore(dynamodb, table_name()),
        WebhookStore(dynamodb, table_name()),
        IngestWriter(aws.client("kinesis"), env_str("INGEST_STREAM_NAME")),
        requests_per_minute=platform_settings().webhook_rate_limit_per_minute,
    )
