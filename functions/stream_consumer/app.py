"""Continuous consumer function: one time-budgeted turn of a stream's consumer (Redis Streams,
WebSocket feeds; `kind` stream) or of a real-time database integration's change capture (`kind`
cdc), called in a loop by the consumer workflow (statemachines/stream_consumer.asl.json). Every
five minutes a schedule also calls it with `action` cdc_guardian: the guardian measures what each
database holds for us, whether or not its consumer runs, and reports it as metrics.

The turn stops reading well before the invocation's own deadline, so a slow last write still
finishes inside it; the logic is in churnguard.streaming.consumers and churnguard.cdc.capture.
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

if TYPE_CHECKING:
    from churnguard.cdc.capture import ChangeCapture
    from churnguard.streaming.consumers import ConsumerTurns

MAX_TURN_SECONDS = float(os.environ.get("STREAM_CONSUMER_TURN_SECONDS", "120"))
DEADLINE_MARGIN_SECONDS = 15.0
GUARDIAN_ACTION = "cdc_guardian"

logger = Logger()
metrics = Metrics()


@cache
def turns() -> ConsumerTurns:
    from churnguard.wiring.ingest import consumer_turns

    return consumer_turns()


@cache
def capture() -> ChangeCapture:
    from churnguard.wiring.capture import change_capture

    return change_capture()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") == GUARDIAN_ACTION:
        return _guardian()
    budget = max(1.0, min(MAX_TURN_SECONDS, context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS))
    arguments = (event["organization_id"], event["stream_id"], event["execution"], int(event.get("iteration", 0)))
    if event.get("kind") == "cdc":
        outcome = capture().turn(*arguments, budget)
        metrics.add_metric(name="ChangesLanded", unit=MetricUnit.Count, value=outcome.forwarded)
    else:
        outcome = turns().turn(*arguments, budget)
        metrics.add_metric(name="StreamEntriesForwarded", unit=MetricUnit.Count, value=outcome.forwarded)
        metrics.add_metric(name="StreamEntriesQuarantined", unit=MetricUnit.Count, value=outcome.quarantined)
    if not outcome.keep_going:
        logger.info("consumer workflow ends", extra={"consumer_id": event["stream_id"], "reason": outcome.reason})
    return outcome.as_dict()


def _guardian() -> dict[str, Any]:
    """The guardian's readings as metrics per integration, which CloudWatch alarms can watch."""
    from churnguard import aws
    from churnguard.config import table_name
    from churnguard.store.organizations import OrganizationStore

    readings = capture().guard_all(OrganizationStore(aws.client("dynamodb"), table_name()).all())
    for config, reading in readings:
        dimensions = {"IntegrationId": config.integration_id}
        if reading.retained_bytes is not None:
            _metric("ChangeLogRetainedBytes", MetricUnit.Bytes, reading.retained_bytes, dimensions)
        if reading.seconds_left is not None:
            _metric("ChangeLogSecondsLeft", MetricUnit.Seconds, reading.seconds_left, dimensions)
    at_risk = sum(1 for _, reading in readings if reading.risk.value != "ok")
    metrics.add_metric(name="ChangeLogsAtRisk", unit=MetricUnit.Count, value=at_risk)
    return {"measured": len(readings), "at_risk": at_risk}


def _metric(name: str, unit: MetricUnit, value: float, dimensions: dict[str, str]) -> None:
    from aws_lambda_powertools.metrics import single_metric

    with single_metric(name=name, unit=unit, value=value, default_dimensions=dimensions):
        pass  # written as the block ends, with its own dimensions
