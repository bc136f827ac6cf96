"""Sync task function: every state of the sync state machine, and scheduled sync starts.

Thin: churnguard.sync.tasks does the work; this wires it to the function's environment.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from churnguard import aws
from churnguard.config import env_str
from churnguard.sync.launcher import SyncLauncher
from churnguard.sync.schedules import remove_schedule
from churnguard.sync.tasks import run_task
from churnguard.tracing import traced

logger = Logger()
metrics = Metrics()
FINISHING_ACTIONS = ("finalize", "fail")


@lru_cache(maxsize=1)
def launcher() -> SyncLauncher:
    from churnguard.wiring.services import sync_launcher

    return sync_launcher()


def remove_integration_schedule(integration_id: str) -> None:
    remove_schedule(aws.client("scheduler"), env_str("SYNC_SCHEDULE_GROUP"), integration_id)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ref = event.get("ref") if isinstance(event.get("ref"), dict) else {}
    annotations = {name: str(ref[name]) for name in ("organization_id", "integration_id", "sync_id") if name in ref}
    with traced(f"sync_{event.get('action', 'task')}", **annotations):
        result = run_task(event, context.get_remaining_time_in_millis, launcher, remove_integration_schedule)
    if event.get("action") in FINISHING_ACTIONS:
        # Counted once per run, when it ends: the dashboard's records written and rejected.
        metrics.add_metric(name="RecordsWritten", unit=MetricUnit.Count, value=result["records_written"])
        metrics.add_metric(name="RecordsRejected", unit=MetricUnit.Count, value=result["records_rejected"])
    return result
