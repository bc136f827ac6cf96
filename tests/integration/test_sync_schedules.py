"""Per-integration sync schedules against moto's EventBridge Scheduler, and scheduled starts."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from churnguard.errors import ConflictError, NotFoundError
from churnguard.models import IntegrationConfiguration
from churnguard.runs import wants_schedule
from churnguard.sync.schedules import SyncScheduler, rate_expression, schedule_name
from churnguard.sync.tasks import run_task

TARGET = "arn:aws:lambda:us-east-1:123456789012:function:churnguard-sync-task"
ROLE = "arn:aws:iam::123456789012:role/scheduler"


@pytest.fixture
def scheduler(aws: dict[str, Any]) -> tuple[SyncScheduler, Any]:
    client = boto3.client("scheduler")
    client.create_schedule_group(Name="syncs")
    return SyncScheduler(client, group="syncs", target_arn=TARGET, role_arn=ROLE), client


def _config(**changes: Any) -> IntegrationConfiguration:
    document: dict[str, Any] = {
        "organization_id": "org_a",
        "integration_name": "Warehouse",
        "provider_name": "postgresql",
        "status": "active",
        "sync_config": {"sync_frequency": 3600},
    }
    document.update(changes)
    return IntegrationConfiguration.model_validate(document)


@pytest.mark.parametrize(
    ("seconds", "expression"),
    [(60, "rate(1 minute)"), (61, "rate(2 minutes)"), (900, "rate(15 minutes)"), (86_400, "rate(1440 minutes)")],
)
def test_frequencies_become_rate_expressions(seconds: int, expression: str) -> None:
    assert rate_expression(seconds) == expression


def test_only_batch_syncable_integrations_want_a_schedule() -> None:
    assert wants_schedule(_config())
    assert not wants_schedule(_config(sync_config={"sync_mode": "real_time"}))
    assert wants_schedule(_config(provider_name="salesforce", base_url=""))


def test_schedule_follows_the_configuration(scheduler: tuple[SyncScheduler, Any]) -> None:
    sync_scheduler, client = scheduler
    config = _config()
    sync_scheduler.apply(config)
    created = client.get_schedule(Name=schedule_name(config.integration_id), GroupName="syncs")
    assert created["ScheduleExpression"] == "rate(60 minutes)"
    assert created["State"] == "ENABLED"
    assert created["Target"]["Arn"] == TARGET
    assert created["Target"]["RoleArn"] == ROLE
    assert json.loads(created["Target"]["Input"]) == {
        "action": "scheduled_sync",
        "organization_id": "org_a",
        "integration_id": config.integration_id,
    }

    sync_scheduler.apply(config.model_copy(update={"status": "paused"}))
    assert client.get_schedule(Name=schedule_name(config.integration_id), GroupName="syncs")["State"] == "DISABLED"

    sync_scheduler.apply(_config(integration_id=config.integration_id, sync_config={"sync_frequency": 120}))
    updated = client.get_schedule(Name=schedule_name(config.integration_id), GroupName="syncs")
    assert updated["ScheduleExpression"] == "rate(2 minutes)"

    sync_scheduler.remove(config.integration_id)
    assert sync_scheduler.describe(config.integration_id) is None
    sync_scheduler.remove(config.integration_id)


class _Launcher:
    """Records scheduled starts; raises what the real launcher would in each situation."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.started: list[tuple[str, str, str]] = []

    def start(self, organization_id: str, integration_id: str, *, trigger: str) -> Any:
        if self.error is not None:
            raise self.error
        self.started.append((organization_id, integration_id, trigger))

        class _Started:
            def model_dump(self, mode: str) -> dict[str, Any]:
                return {"sync_id": "syn_1", "status": "started"}

        return _Started()


def _scheduled_event() -> dict[str, Any]:
    return {"action": "scheduled_sync", "organization_id": "org_a", "integration_id": "int_1"}


def test_a_scheduled_start_uses_the_schedule_trigger() -> None:
    launcher = _Launcher()
    result = run_task(_scheduled_event(), lambda: 900_000, lambda: launcher, lambda _: None)  # type: ignore[arg-type,return-value]
    assert result == {"sync_id": "syn_1", "status": "started"}
    assert launcher.started == [("org_a", "int_1", "schedule")]


def test_a_scheduled_start_skips_a_running_sync() -> None:
    launcher = _Launcher(ConflictError("a sync of this integration is already running"))
    result = run_task(_scheduled_event(), lambda: 900_000, lambda: launcher, lambda _: None)  # type: ignore[arg-type,return-value]
    assert result == {"skipped": "a sync of this integration is already running"}


def test_a_schedule_of_a_deleted_integration_removes_itself() -> None:
    removed: list[str] = []
    launcher = _Launcher(NotFoundError("integration not found"))
    result = run_task(_scheduled_event(), lambda: 900_000, lambda: launcher, removed.append)  # type: ignore[arg-type,return-value]
    assert "removed" in result["skipped"]
    assert removed == ["int_1"]


def test_malformed_task_events_are_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        run_task({"action": "drop_tables"}, lambda: 1, _Launcher, lambda _: None)  # type: ignore[arg-type,return-value]


class _BrokenScheduler:
    def apply(self, config: IntegrationConfiguration) -> None:
        raise RuntimeError("scheduler unavailable")

    def remove(self, integration_id: str) -> None:
        raise RuntimeError("scheduler unavailable")


def test_a_schedule_that_cannot_be_created_undoes_the_registration(aws: dict[str, Any]) -> None:
    from churnguard.crypto import CredentialCipher
    from churnguard.errors import ServiceUnavailableError
    from churnguard.integrations import IntegrationService
    from churnguard.models import IntegrationCreateRequest
    from churnguard.store.integrations import IntegrationStore

    service = IntegrationService(
        IntegrationStore(aws["dynamodb"], aws["table"]),
        CredentialCipher(aws["kms"], aws["key_arn"]),
        _BrokenScheduler(),  # type: ignore[arg-type]
    )
    request = IntegrationCreateRequest.model_validate(
        {
            "integration_name": "Warehouse",
            "provider_name": "postgresql",
            "credentials": {"credential_type": "basic_auth", "username": "u", "password": "p"},
        }
    )
    with pytest.raises(ServiceUnavailableError):
        service.create("org_a", request)
    assert aws["dynamodb"].scan(TableName=aws["table"])["Items"] == [], "nothing half-written"
