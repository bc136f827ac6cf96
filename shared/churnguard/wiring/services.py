"""The services, engine and launcher, as this function's environment configures them, and the
Python façade over them."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from churnguard import aws
from churnguard.config import env_str, kms_key_id, table_name
from churnguard.crypto import CredentialCipher
from churnguard.integrations import IntegrationService, RealtimeHook
from churnguard.models import (
    DataSyncMode,
    IntegrationConfiguration,
    IntegrationCredentials,
    IntegrationPage,
    IntegrationUpdateRequest,
    IntegrationView,
)
from churnguard.store.integrations import IntegrationFilter, IntegrationStore
from churnguard.wiring.engine import sync_engine

if TYPE_CHECKING:
    from churnguard.sync.launcher import SyncLauncher
    from churnguard.sync.views import SyncStatusView
    from churnguard.webhooks.service import DeadLetterService, WebhookEndpointService


def integration_service(realtime: RealtimeHook | None = None) -> IntegrationService:
    """Integrations on this function's table and key, scheduling syncs where a group is set;
    `realtime` keeps real-time databases' change capture in step (the management API's)."""
    scheduler = None
    if os.environ.get("SYNC_SCHEDULE_GROUP"):
        from churnguard.sync.schedules import SyncScheduler

        scheduler = SyncScheduler(
            aws.client("scheduler"),
            group=env_str("SYNC_SCHEDULE_GROUP"),
            target_arn=env_str("SYNC_TASK_FUNCTION_ARN"),
            role_arn=env_str("SYNC_SCHEDULER_ROLE_ARN"),
        )
    return IntegrationService(
        IntegrationStore(aws.client("dynamodb"), table_name()),
        CredentialCipher(aws.client("kms"), kms_key_id()),
        scheduler,
        realtime,
    )


def sync_launcher() -> SyncLauncher:
    """Starts syncs on this function's state machine (SYNC_STATE_MACHINE_ARN)."""
    from churnguard.sync.launcher import SyncLauncher

    return SyncLauncher(sync_engine(), aws.client("stepfunctions"), env_str("SYNC_STATE_MACHINE_ARN"))


def endpoint_service() -> WebhookEndpointService:
    from churnguard.store.webhooks import WebhookStore
    from churnguard.webhooks.service import WebhookEndpointService

    return WebhookEndpointService(
        WebhookStore(aws.client("dynamodb"), table_name()),
        CredentialCipher(aws.client("kms"), kms_key_id()),
        integration_service(),
    )


def deadletter_service() -> DeadLetterService:
    from churnguard.store.webhooks import WebhookStore
    from churnguard.webhooks.service import DeadLetterService

    return DeadLetterService(
        WebhookStore(aws.client("dynamodb"), table_name()),
        aws.client("sqs"),
        env_str("WEBHOOK_QUEUE_URL"),
        env_str("WEBHOOK_DLQ_URL"),
    )


class IntegrationEngine:
    """The async Python façade over the platform, for code that runs outside the API."""

    def __init__(self, service: IntegrationService | None = None, launcher: SyncLauncher | None = None) -> None:
        self._service = service or integration_service()
        self._launcher = launcher

    async def start_sync(self, organization_id: str, integration_id: str, mode: DataSyncMode | None = None) -> str:
        """Starts a sync through the state machine and returns its sync id (409 if one runs)."""
        return self._sync_launcher().start(organization_id, integration_id, mode=mode).sync_id

    async def get_sync_status(self, organization_id: str, integration_id: str) -> SyncStatusView:
        return self._sync_launcher().status(organization_id, integration_id)

    def _sync_launcher(self) -> SyncLauncher:
        if self._launcher is None:
            self._launcher = sync_launcher()
        return self._launcher

    async def register_integration(self, config: IntegrationConfiguration) -> str:
        return self._service.register(config).integration_id

    async def get_integration(self, organization_id: str, integration_id: str) -> IntegrationView:
        return self._service.get(organization_id, integration_id)

    async def list_integrations(
        self,
        organization_id: str,
        filters: IntegrationFilter | None = None,
        limit: int = 50,
        next_token: str | None = None,
    ) -> IntegrationPage:
        return self._service.list(organization_id, filters or IntegrationFilter(), limit, next_token)

    async def update_integration(
        self, organization_id: str, integration_id: str, patch: IntegrationUpdateRequest
    ) -> IntegrationView:
        return self._service.update(organization_id, integration_id, patch)

    async def update_credentials(
        self, organization_id: str, integration_id: str, credentials: IntegrationCredentials
    ) -> IntegrationView:
        return self._service.replace_credentials(organization_id, integration_id, credentials)

    async def delete_integration(self, organization_id: str, integration_id: str) -> None:
        self._service.delete(organization_id, integration_id)
