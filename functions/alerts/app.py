"""Alerts function: evaluates the alert rules of every organisation (churnguard.dashboard.alerts).

Invoked every minute by EventBridge. It evaluates when a new DASHBOARD_UPDATE_INTERVAL period has
begun since the previous minute; an interval under a minute is kept by evaluating every interval
until the minute is nearly over.
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from churnguard.config import env_int
from churnguard.dashboard.alerts import AlertEvaluator, evaluation_times

logger = Logger()
metrics = Metrics()


@cache
def evaluator() -> AlertEvaluator:
    from churnguard.wiring.dashboard import alert_evaluator

    return alert_evaluator()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    interval = env_int("DASHBOARD_UPDATE_INTERVAL", 60)
    totals = {"organizations": 0, "opened": 0, "resolved": 0, "evaluations": 0}
    for at in evaluation_times(time.time(), interval):
        time.sleep(max(0.0, at - time.time()))
        result = evaluator().evaluate_all()
        totals["evaluations"] += 1
        for name in ("organizations", "opened", "resolved"):
            totals[name] += result[name]
    metrics.add_metric(name="AlertsOpened", unit=MetricUnit.Count, value=totals["opened"])
    metrics.add_metric(name="AlertsResolved", unit=MetricUnit.Count, value=totals["resolved"])
    logger.info("alert rules evaluated", extra=totals)
    return totals
