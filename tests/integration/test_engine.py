"""The seed's async IntegrationEngine façade over the same stores the API uses."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from churnguard.errors import ConflictError, NotFoundError
from churnguard.integrations import IntegrationEngine
from churnguard.models import (
    DataSyncMode,
    IntegrationConfiguration,
    IntegrationCredentials,
    IntegrationType,
    IntegrationUpdateRequest,
    SyncConfiguration,
)
from churnguard.store.integrations import IntegrationFilter


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
