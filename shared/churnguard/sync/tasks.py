"""The sync task function's logic: every state of the sync state machine, and scheduled starts.

Errors propagate with their class name as the Lambda error type, which is what the state
machine's Retry (transient: TransientSourceError, SinkError, CircuitOpenError, …) and Catch
(everything else: recorded on the run, then the execution fails) match on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from churnguard.errors import ConflictError, NotFoundError, ValidationFailedError
from churnguard.models import Model, StrictModel
from churnguard.runs import SyncRef
from churnguard.sync.launcher import SyncLauncher
from churnguard.sync.schedules import SCHEDULED_SYNC_ACTION

logger = logging.getLogger(__name__)

# An extract task spends this share of the time Lambda gives it, keeping the rest for the page
# in hand, the checkpoint and a safety margin.
BUDGET_FRACTION = 0.75
MIN_BUDGET_SECONDS = 5.0
DEFAULT_RECORD_BUDGET = 5_000_000
_CAUSE_LIMIT = 500


class TaskEvent(StrictModel):
    action: Literal["prepare", "extract", "finalize", "fail", "scheduled_sync"]
    ref: SyncRef | None = None
    record_budget: int = Field(default=DEFAULT_RECORD_BUDGET, ge=1)
    error: dict[str, Any] | None = None
    organization_id: str | None = None
    integration_id: str | None = None


class TaskSummary(Model):
    """What a finished run reports to the workflow, and to the platform's metrics."""

    sync_id: str
    status: str
    records_read: int
    records_written: int
    records_rejected: int = 0


def run_task(
    event: dict[str, Any],
    remaining_ms: Callable[[], int],
    launcher: Callable[[], SyncLauncher],
    remove_schedule: Callable[[str], None],
) -> dict[str, Any]:
    task = TaskEvent.model_validate(event)
    if task.action == SCHEDULED_SYNC_ACTION:
        return _scheduled(task, launcher(), remove_schedule)
    if task.ref is None:
        raise ValidationFailedError("a workflow task needs `ref`", {"fields": [{"field": "ref"}]})
    engine = launcher().engine
    if task.action == "prepare":
        return engine.prepare(task.ref).model_dump(mode="json")
    if task.action == "extract":
        budget = max(MIN_BUDGET_SECONDS, remaining_ms() / 1000 * BUDGET_FRACTION)
        return engine.extract_step(task.ref, budget, task.record_budget).model_dump(mode="json")
    error = None
    if task.action == "fail":
        caught = task.error or {}
        error = f"{caught.get('Error', 'Error')}: {_cause(caught.get('Cause'))[:_CAUSE_LIMIT]}"
    run = engine.finalize(task.ref, error=error)
    return TaskSummary(
        sync_id=run.sync_id,
        status=run.status.value,
        records_read=run.records_read,
        records_written=run.records_written,
        records_rejected=run.records_rejected,
    ).model_dump()


def _cause(cause: Any) -> str:
    """The message of a caught Lambda error. Step Functions passes the function's error as JSON
    (errorMessage, errorType, requestId, stackTrace): only the message is for the run's owner;
    the stack trace names our files and lines, and is in the function's log already."""
    text = str(cause or "")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if isinstance(parsed, dict) and isinstance(parsed.get("errorMessage"), str):
        return str(parsed["errorMessage"])
    return text


def _scheduled(task: TaskEvent, launcher: SyncLauncher, remove_schedule: Callable[[str], None]) -> dict[str, Any]:
    """Starts a scheduled sync; a running one, a paused or a deleted integration skip it."""
    if not task.organization_id or not task.integration_id:
        raise ValidationFailedError("a scheduled sync needs organization_id and integration_id")
    try:
        started = launcher.start(task.organization_id, task.integration_id, trigger="schedule")
    except ConflictError as exc:
        logger.info("scheduled sync skipped", extra={"reason": exc.message})
        return {"skipped": exc.message}
    except NotFoundError:
        remove_schedule(task.integration_id)
        return {"skipped": "the integration no longer exists; its schedule was removed"}
    return started.model_dump(mode="json")
