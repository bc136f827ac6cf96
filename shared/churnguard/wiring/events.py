"""The webhook queue's consumer, as this function's environment configures it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from churnguard import aws
from churnguard.config import env_int, platform_settings, table_name
from churnguard.resilience import RetryPolicy
from churnguard.wiring.sinks import sinks

if TYPE_CHECKING:
    from churnguard.sync.engine import SyncEngine
    from churnguard.webhooks.processor import EventProcessor


def event_processor() -> EventProcessor:
    from churnguard.store.activity import ActivityStore
    from churnguard.store.webhooks import WebhookStore
    from churnguard.webhooks.processor import EventProcessor

    # Short: a message that still fails is retried by SQS, not by this invocation.
    retry = RetryPolicy(attempts=platform_settings().default_retry_attempts, base_delay=0.2, max_delay=2.0)
    dynamodb = aws.client("dynamodb")
    return EventProcessor(
        WebhookStore(dynamodb, table_name()),
        sinks(retry),
        max_receive_count=env_int("WEBHOOK_MAX_RECEIVE_COUNT", 5),
        current_entity=_SourceRereads(),
        activity=ActivityStore(dynamodb, table_name()),
    )


class _SourceRereads:
    """Re-reads through the sync engine, built on the first event that needs it (most never
    do), once per processor: the engine reads this function's environment when it is built."""

    def __init__(self) -> None:
        self._engine: SyncEngine | None = None

    def __call__(
        self, organization_id: str, integration_id: str, entity: str, object_id: str, *, raw: bool
    ) -> dict[str, Any] | None:
        if self._engine is None:
            from churnguard.wiring.engine import sync_engine

            self._engine = sync_engine()
        return self._engine.current_entity(organization_id, integration_id, entity, object_id, raw=raw)
