"""Routes for syncs and connection tests."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.metrics import MetricUnit

from churnguard.api.http import caller_organization
from churnguard.api.integrations import integration_id_or_404
from churnguard.api.integrations import service as integration_service
from churnguard.connectors.base import ConnectionCheck
from churnguard.errors import NotFoundError
from churnguard.models import DataSyncMode, IntegrationCreateRequest, IntegrationStatus, Model, StrictModel
from churnguard.runs import SyncHistoryPage, SyncRunView
from churnguard.store.integrations import IntegrationFilter
from churnguard.sync.views import SyncStarted, SyncStatusView
from churnguard.wiring.cdc import capture_view

if TYPE_CHECKING:
    from churnguard.sync.launcher import SyncLauncher

router = Router()
metrics = Metrics()
_SYSTEM_PAGE = 100


class SyncRequest(StrictModel):
    """Optional body of POST .../sync: a mode for this run only."""

    mode: DataSyncMode | None = None


class ConnectionTestResult(Model):
    integration_id: str
    integration_name: str
    provider_name: str
    check: ConnectionCheck | None
    message: str


class SystemConnectionTests(Model):
    items: list[ConnectionTestResult]
    ok: int
    failed: int
    not_testable: int


@lru_cache(maxsize=1)
def launcher() -> SyncLauncher:
    from churnguard.wiring.services import sync_launcher

    return sync_launcher()


@router.post(
    "/api/integrations/<integration_id>/sync", status_code=202, tags=["syncs"], summary="Start a sync (one at a time)"
)
def start_sync(integration_id: str, body: Annotated[SyncRequest | None, Body()] = None) -> SyncStarted:
    started = launcher().start(
        caller_organization(router), integration_id_or_404(integration_id), mode=body.mode if body else None
    )
    metrics.add_metric(name="SyncsStarted", unit=MetricUnit.Count, value=1)
    return started


@router.get("/api/integrations/<integration_id>/sync/status", tags=["syncs"], summary="The latest sync's progress")
def sync_status(integration_id: str) -> SyncStatusView:
    organization_id = caller_organization(router)
    integration_id = integration_id_or_404(integration_id)
    capture = capture_view(organization_id, integration_id)
    try:
        latest = launcher().status(organization_id, integration_id)
    except NotFoundError:
        if capture is None:
            raise
        return SyncStatusView.capture_only(integration_id, capture)
    return latest.model_copy(update={"change_capture": capture})


@router.get("/api/integrations/<integration_id>/syncs", tags=["syncs"], summary="Sync history, newest first")
def sync_history(
    integration_id: str,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(max_length=512)] = None,
) -> SyncHistoryPage:
    organization_id = caller_organization(router)
    integration_service().get(organization_id, integration_id_or_404(integration_id))
    return launcher().engine.history(organization_id, integration_id, limit=limit, next_token=next_token)


@router.post("/api/integrations/<integration_id>/sync/cancel", tags=["syncs"], summary="Cancel the running sync")
def cancel_sync(integration_id: str) -> SyncRunView:
    return launcher().cancel(caller_organization(router), integration_id_or_404(integration_id))


@router.post(
    "/api/integrations/<integration_id>/test-connection", tags=["syncs"], summary="Test an integration's connection"
)
def test_connection(integration_id: str) -> ConnectionTestResult:
    organization_id = caller_organization(router)
    return _test(organization_id, integration_service().get(organization_id, integration_id_or_404(integration_id)))


@router.post(
    "/api/integrations/test-connection",
    tags=["syncs"],
    summary="Test a connection before registering it: the body of POST /api/integrations; nothing is saved",
)
def test_draft_connection(body: Annotated[IntegrationCreateRequest, Body()]) -> ConnectionCheck:
    config, credentials = integration_service().draft(caller_organization(router), body)
    return launcher().engine.test_draft(config, credentials)


@router.post("/api/system/test-connections", tags=["syncs"], summary="Test every integration of the organisation")
def test_all_connections() -> SystemConnectionTests:
    organization_id = caller_organization(router)
    results: list[ConnectionTestResult] = []
    token: str | None = None
    while True:
        page = integration_service().list(organization_id, IntegrationFilter(), _SYSTEM_PAGE, token)
        results.extend(_test(organization_id, view) for view in page.items)
        token = page.next_token
        if token is None:
            break
    return SystemConnectionTests(
        items=results,
        ok=sum(1 for r in results if r.check is not None and r.check.ok),
        failed=sum(1 for r in results if r.check is not None and not r.check.ok),
        not_testable=sum(1 for r in results if r.check is None),
    )


def _test(organization_id: str, view: Any) -> ConnectionTestResult:
    """Tests one integration; an authentication failure marks it auth_failed, a pass clears that."""
    from churnguard.connectors.base import CheckStatus
    from churnguard.providers.registry import supported_providers

    common = {
        "integration_id": view.integration_id,
        "integration_name": view.integration_name,
        "provider_name": view.provider_name.value,
    }
    if view.provider_name not in supported_providers():
        return ConnectionTestResult(**common, check=None, message="no connector can test this provider yet")
    if not integration_service().has_credentials(organization_id, view.integration_id):
        # A webhook endpoint's integration receives; it has nothing to connect with.
        return ConnectionTestResult(
            **common, check=None, message="nothing to test: the integration has no credentials to connect with"
        )
    check = launcher().engine.test_connection(organization_id, view.integration_id)
    failed_auth = check.status is CheckStatus.AUTHENTICATION_FAILED
    if failed_auth != (view.status is IntegrationStatus.AUTHENTICATION_FAILED):
        status = IntegrationStatus.AUTHENTICATION_FAILED if failed_auth else IntegrationStatus.ACTIVE
        integration_service().set_status(organization_id, view.integration_id, status)
    return ConnectionTestResult(**common, check=check, message=check.message)
