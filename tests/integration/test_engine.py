"""The seed's async IntegrationEngine façade over the same stores the API uses."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from churnguard.errors import ConflictError, NotFoundError
from churnguard.models import (
    DataSyncMode,
    IntegrationConfiguration,
    IntegrationCredentials,
    IntegrationType,
    IntegrationUpdateRequest,
    SyncConfiguration,
)
from churnguard.store.integrations import IntegrationFilter
from churnguard.wiring.services import IntegrationEngine


def test_seed_usage(aws: dict[str, Any]) -> None:
    async def scenario() -> None:
        engine = IntegrationEngine()
        config = IntegrationConfiguration(
            organization_id="org_123",
            integration_name="Salesforce CRM",
            integration_type=IntegrationType.CRM,
            provider_name="salesforce",  # type: ignore[arg-type]
            credentials=IntegrationCredentials(
                credential_type="oauth2",  # type: ignore[arg-type]
                access_token="your_access_token",  # type: ignore[arg-type]
                refresh_token="your_refresh_token",  # type: ignore[arg-type]
            ),
            sync_config=SyncConfiguration(sync_mode=DataSyncMode.INCREMENTAL, sync_frequency=3600, batch_size=1000),
        )
        integration_id = await engine.register_integration(config)
        view = await engine.get_integration("org_123", integration_id)
        assert view.credentials is not None and view.credentials.credential_type == "oauth2"

        with pytest.raises(ConflictError):
            await engine.register_integration(config.model_copy(update={"integration_id": "int_" + "0" * 20}))

        page = await engine.list_integrations("org_123", IntegrationFilter(integration_type=IntegrationType.CRM))
        assert [i.integration_id for i in page.items] == [integration_id]

        updated = await engine.update_integration(
            "org_123",
            integration_id,
            IntegrationUpdateRequest(status="active"),  # type: ignore[arg-type]
        )
        assert updated.status == "active"

        await engine.delete_integration("org_123", integration_id)
        with pytest.raises(NotFoundError):
            await engine.get_integration("org_123", integration_id)

    asyncio.run(scenario())


def test_seed_sync_calls_start_the_workflow_and_report_status(
    aws: dict[str, Any], lake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(
        name="sync",
        definition='{"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": true}}}',
        roleArn="arn:aws:iam::123456789012:role/sfn",
    )["stateMachineArn"]
    monkeypatch.setenv("SYNC_STATE_MACHINE_ARN", machine)

    async def scenario() -> None:
        engine = IntegrationEngine()
        integration_id = await engine.register_integration(
            IntegrationConfiguration(
                organization_id="org_123",
                integration_name="Warehouse",
                provider_name="postgresql",  # type: ignore[arg-type]
                base_url="127.0.0.1:5432",
                credentials=IntegrationCredentials(
                    credential_type="basic_auth",  # type: ignore[arg-type]
                    username="reader",  # type: ignore[arg-type]
                    password="secret",  # type: ignore[arg-type]
                ),
            )
        )
        sync_id = await engine.start_sync("org_123", integration_id)
        executions = sfn.list_executions(stateMachineArn=machine)["executions"]
        assert [e["name"] for e in executions] == [sync_id]
        status = await engine.get_sync_status("org_123", integration_id)
        assert status.sync_id == sync_id
        assert status.status == "started"
        assert status.records_processed == 0
        with pytest.raises(ConflictError):
            await engine.start_sync("org_123", integration_id)

    asyncio.run(scenario())


def test_a_workflow_that_cannot_start_closes_the_run_and_frees_the_lock(
    aws: dict[str, Any], lake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from churnguard.errors import ServiceUnavailableError
    from churnguard.sync.launcher import SyncLauncher
    from churnguard.wiring.services import sync_engine

    sfn = boto3.client("stepfunctions")
    engine = sync_engine()
    missing = "arn:aws:states:us-east-1:123456789012:stateMachine:does-not-exist"

    async def register() -> str:
        return await IntegrationEngine().register_integration(
            IntegrationConfiguration(
                organization_id="org_123",
                integration_name="Warehouse",
                provider_name="postgresql",  # type: ignore[arg-type]
                credentials=IntegrationCredentials(
                    credential_type="basic_auth",  # type: ignore[arg-type]
                    username="reader",  # type: ignore[arg-type]
                    password="secret",  # type: ignore[arg-type]
                ),
            )
        )

    integration_id = asyncio.run(register())
    with pytest.raises(ServiceUnavailableError) as exc:
        SyncLauncher(engine, sfn, missing).start("org_123", integration_id)
    failed = engine.get_sync_status("org_123", integration_id, exc.value.details["sync_id"])
    assert failed.status == "failed"
    assert "could not be started" in failed.errors[0].message

    machine = sfn.create_state_machine(
        name="sync",
        definition='{"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": true}}}',
        roleArn="arn:aws:iam::123456789012:role/sfn",
    )["stateMachineArn"]
    started = SyncLauncher(engine, sfn, machine).start("org_123", integration_id)
    assert started.status == "started", "the lock was released"
