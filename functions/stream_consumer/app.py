"""Stream consumer function: one time-budgeted turn of a stream's continuous consumer (Redis
Streams), called in a loop by the consumer workflow (statemachines/stream_consumer.asl.json).

The turn stops reading well before the invocation's own deadline, so a slow last write still
finishes inside it; the logic is in churnguard.streaming.consumers.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from churnguard.streaming.consumers import ConsumerTurns

MAX_TURN_SECONDS = float(os.environ.get("STREAM_CONSUMER_TURN_SECONDS", "120"))
DEADLINE_MARGIN_SECONDS = 15.0

logger = Logger()
metrics = Metrics()


@cache
def turns() -> ConsumerTurns:
    from churnguard.wiring.ingest import consumer_turns

    return consumer_turns()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    budget = min(MAX_TURN_SECONDS, context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS)
    outcome = turns().turn(
        event["organization_id"],
        event["stream_id"],
        event["execution"],
        int(event.get("iteration", 0)),
        max(1.0, budget),
    )
    metrics.add_metric(name="StreamEntriesForwarded", unit=MetricUnit.Count, value=outcome.forwarded)
    metrics.add_metric(name="StreamEntriesQuarantined", unit=MetricUnit.Count, value=outcome.quarantined)
    if not outcome.keep_going:
        logger.info("consumer workflow ends", extra={"stream_id": event["stream_id"], "reason": outcome.reason})
    return outcome.as_dict()
