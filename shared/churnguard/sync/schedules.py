"""One EventBridge Scheduler schedule per integration, kept in step with its configuration.

The schedule invokes the sync task function, which starts a sync like the API does (taking the
lock, so a scheduled sync never overlaps a running one). It exists only for integrations a
connector can sync and whose mode is batch (full, incremental or scheduled); pausing or
deactivating an integration disables it, and real-time integrations have none. The task
re-reads the configuration when it fires, so a schedule that missed a change corrects itself.
"""

from __future__ import annotations

import json
import math
from typing import Any

from churnguard.models import IntegrationConfiguration, IntegrationStatus
from churnguard.runs import wants_schedule

SCHEDULED_SYNC_ACTION = "scheduled_sync"


def schedule_name(integration_id: str) -> str:
    return f"sync-{integration_id}"


def rate_expression(sync_frequency_seconds: int) -> str:
    minutes = max(1, math.ceil(sync_frequency_seconds / 60))
    return "rate(1 minute)" if minutes == 1 else f"rate({minutes} minutes)"


class SyncScheduler:
    def __init__(self, scheduler: Any, *, group: str, target_arn: str, role_arn: str) -> None:
        self._scheduler = scheduler
        self._group = group
        self._target_arn = target_arn
        self._role_arn = role_arn

    def apply(self, config: IntegrationConfiguration) -> None:
        """Creates, updates or removes the integration's schedule to match its configuration."""
        if not wants_schedule(config):
            self.remove(config.integration_id)
            return
        request = {
            "Name": schedule_name(config.integration_id),
            "GroupName": self._group,
            "ScheduleExpression": rate_expression(config.sync_config.sync_frequency),
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED" if config.status is IntegrationStatus.ACTIVE else "DISABLED",
            "Description": f"Syncs integration {config.integration_id} of {config.organization_id}",
            "Target": {
                "Arn": self._target_arn,
                "RoleArn": self._role_arn,
                "Input": json.dumps(
                    {
                        "action": SCHEDULED_SYNC_ACTION,
                        "organization_id": config.organization_id,
                        "integration_id": config.integration_id,
                    }
                ),
                "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600},
            },
        }
        try:
            self._scheduler.update_schedule(**request)
        except self._scheduler.exceptions.ResourceNotFoundException:
            self._scheduler.create_schedule(**request)

    def remove(self, integration_id: str) -> None:
        remove_schedule(self._scheduler, self._group, integration_id)

    def describe(self, integration_id: str) -> dict[str, Any] | None:
        try:
            schedule: dict[str, Any] = self._scheduler.get_schedule(
                Name=schedule_name(integration_id), GroupName=self._group
            )
        except self._scheduler.exceptions.ResourceNotFoundException:
            return None
        return schedule


def remove_schedule(scheduler: Any, group: str, integration_id: str) -> None:
    """Deletes an integration's schedule if it has one."""
    try:
        scheduler.delete_schedule(Name=schedule_name(integration_id), GroupName=group)
    except scheduler.exceptions.ResourceNotFoundException:
        return
