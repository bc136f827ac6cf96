"""Event processor function: the webhook queue's consumer.

Powertools batch processing reports each failed message as a batch item failure, so SQS retries
only those (and moves them to the dead-letter queue after maxReceiveCount); the logic is in
churnguard.webhooks.processor.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from churnguard.tracing import traced
from churnguard.webhooks.processor import EventProcessor

logger = Logger()
metrics = Metrics()
batch = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@cache
def processor() -> EventProcessor:
    """Writes to the data lake, and to the Analytics API when it is configured, as syncs do."""
    from churnguard.wiring.events import event_processor

    return event_processor()


def record_handler(record: SQSRecord) -> None:
    with traced("webhook_event", message_id=record.message_id):
        processor().handle_record(record.message_id, record.body, int(record.attributes.approximate_receive_count or 1))


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        result = process_partial_response(event=event, record_handler=record_handler, processor=batch, context=context)
    finally:
        processor().flush_activity()
    failed = len(result.get("batchItemFailures", []))
    metrics.add_metric(name="WebhookEventsProcessed", unit=MetricUnit.Count, value=len(event["Records"]) - failed)
    metrics.add_metric(name="WebhookEventsFailed", unit=MetricUnit.Count, value=failed)
    if failed:
        logger.warning("webhook events failed", extra={"failed": failed, "received": len(event["Records"])})
    return dict(result)
