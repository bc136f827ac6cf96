"""What writes to the ingest stream, as each function's environment configures it: the custom
streams' HTTPS ingest and the continuous consumers' turns. No sinks: the stream processor lands
what they buffer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from churnguard import aws
from churnguard.config import env_str, kms_key_id, platform_settings, table_name

if TYPE_CHECKING:
    from churnguard.streaming.consumers import ConsumerTurns
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


def consumer_turns() -> ConsumerTurns:
    from churnguard.continuous import ConsumerWorkflow
    from churnguard.crypto import CredentialCipher
    from churnguard.integrations import IntegrationService
    from churnguard.store.activity import ActivityStore
    from churnguard.store.integrations import IntegrationStore
    from churnguard.store.streams import StreamStore
    from churnguard.streaming.consumers import ConsumerTurns
    from churnguard.streaming.sources import IngestWriter

    dynamodb = aws.client("dynamodb")
    return ConsumerTurns(
        StreamStore(dynamodb, table_name()),
        # The stream's credentials are its integration's, decrypted the one way integrations are.
        IntegrationService(IntegrationStore(dynamodb, table_name()), CredentialCipher(aws.client("kms"), kms_key_id())),
        IngestWriter(aws.client("kinesis"), env_str("INGEST_STREAM_NAME")),
        ConsumerWorkflow(aws.client("stepfunctions"), env_str("STREAM_CONSUMER_STATE_MACHINE_ARN")),
        activity=ActivityStore(dynamodb, table_name()),
    )
