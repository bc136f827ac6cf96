"""Webhook receiver function: the public WebhookApi's only handler.

Thin and quick to start: the logic is in churnguard.webhooks.receiver, AWS clients are created on
the first request, and nothing on this path imports pydantic, a provider SDK or the Tracer.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics

from churnguard.webhooks.receiver import WebhookReceiver

logger = Logger()
metrics = Metrics()


@cache
def receiver() -> WebhookReceiver:
    from churnguard import aws
    from churnguard.config import env_str, kms_key_id, platform_settings, table_name
    from churnguard.crypto import CredentialCipher
    from churnguard.store.activity import ActivityStore
    from churnguard.store.webhooks import WebhookStore
    from churnguard.webhooks.receiver import ReceiverSettings
    from churnguard.webhooks.secrets import SecretResolver

    settings = platform_settings()
    dynamodb = aws.client("dynamodb")
    return WebhookReceiver(
        store=WebhookStore(dynamodb, table_name()),
        activity=ActivityStore(dynamodb, table_name()),
        secrets=SecretResolver(CredentialCipher(aws.client("kms"), kms_key_id())),
        sqs=aws.client("sqs"),
        queue_url=env_str("WEBHOOK_QUEUE_URL"),
        metrics=metrics,
        settings=ReceiverSettings(
            max_payload_bytes=settings.webhook_max_payload_size,
            rate_limit_per_minute=settings.webhook_rate_limit_per_minute,
            unverified_per_source_per_minute=settings.webhook_unverified_per_source_per_minute,
            unverified_per_endpoint_per_minute=settings.webhook_unverified_per_endpoint_per_minute,
            signature_validation=settings.webhook_signature_validation,
        ),
    )


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("routeKey") == "GET /webhooks/health":
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps({"ok": True})}
    # The receiver logs what it accepted and why it refused a signature; the access log has every status.
    return receiver().handle(event)
