"""The webhook queue's consumer, as this function's environment configures it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from churnguard import aws
from churnguard.config import env_int, platform_settings, table_name
from churnguard.resilience import RetryPolicy
from churnguard.wiring.sinks import sinks

if TYPE_CHECKING:
    from churnguard.webhooks.processor import EventProcessor


def event_processor() -> EventProcessor:
    from churnguard.store.webhooks import WebhookStore
    from churnguard.webhooks.processor import EventProcessor

    # Short: a message that still fails is retried by SQS, not by this invocation.
    retry = RetryPolicy(attempts=platform_settings().default_retry_attempts, base_delay=0.2, max_delay=2.0)
    return EventProcessor(
        WebhookStore(aws.client("dynamodb"), table_name()),
        sinks(retry),
        max_receive_count=env_int("WEBHOOK_MAX_RECEIVE_COUNT", 5),
    )
