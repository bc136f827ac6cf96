"""Routes for integrations and their credentials."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.metrics import MetricUnit

from churnguard.api.http import caller_organization
from churnguard.errors import NotFoundError
from churnguard.integrations import IntegrationService
from churnguard.models import (
    IntegrationCreated,
    IntegrationCreateRequest,
    IntegrationCredentials,
    IntegrationPage,
    IntegrationStatus,
    IntegrationType,
    IntegrationUpdateRequest,
    IntegrationView,
    ProviderName,
)
from churnguard.store.integrations import IntegrationFilter
from churnguard.wiring import services as wiring

router = Router()
metrics = Metrics()
_INTEGRATION_ID = re.compile(r"^int_[0-9a-f]{20}$")


@lru_cache(maxsize=1)
def service() -> IntegrationService:
    """Integrations as the API changes them: real-time databases' change capture kept in step."""
    from churnguard.wiring.cdc import capture_lifecycle

    return wiring.integration_service(realtime=capture_lifecycle())


def integration_id_or_404(value: str) -> str:
    """Malformed ids are simply not found, like another organisation's."""
    if not _INTEGRATION_ID.match(value):
        raise NotFoundError("integration not found", {"integration_id": value[:64]})
    return value


@router.post("/api/integrations", status_code=201, tags=["integrations"], summary="Register an integration")
def create_integration(body: Annotated[IntegrationCreateRequest, Body()]) -> IntegrationCreated:
    view = service().create(caller_organization(router), body)
    metrics.add_metric(name="IntegrationsCreated", unit=MetricUnit.Count, value=1)
    return IntegrationCreated(integration_id=view.integration_id, integration=view)


@router.get("/api/integrations", tags=["integrations"], summary="List integrations, newest id order, paginated")
def list_integrations(
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next_token: Annotated[str | None, Query(max_length=512)] = None,
    integration_type: Annotated[IntegrationType | None, Query()] = None,
    status: Annotated[IntegrationStatus | None, Query()] = None,
    provider_name: Annotated[ProviderName | None, Query()] = None,
) -> IntegrationPage:
    filters = IntegrationFilter(integration_type=integration_type, status=status, provider_name=provider_name)
    return service().list(caller_organization(router), filters, limit, next_token)


@router.get("/api/integrations/<integration_id>", tags=["integrations"], summary="Get an integration")
def get_integration(integration_id: str) -> IntegrationView:
    return service().get(caller_organization(router), integration_id_or_404(integration_id))


@router.patch("/api/integrations/<integration_id>", tags=["integrations"], summary="Change an integration's settings")
def update_integration(integration_id: str, body: Annotated[IntegrationUpdateRequest, Body()]) -> IntegrationView:
    return service().update(caller_organization(router), integration_id_or_404(integration_id), body)


@router.delete(
    "/api/integrations/<integration_id>", status_code=204, tags=["integrations"], summary="Delete an integration"
)
def delete_integration(integration_id: str) -> Response[None]:
    service().delete(caller_organization(router), integration_id_or_404(integration_id))
    metrics.add_metric(name="IntegrationsDeleted", unit=MetricUnit.Count, value=1)
    return Response(status_code=204, body=None)


@router.put(
    "/api/integrations/<integration_id>/credentials",
    tags=["integrations"],
    summary="Replace an integration's credentials (encrypted; never returned)",
)
def replace_credentials(integration_id: str, body: Annotated[IntegrationCredentials, Body()]) -> IntegrationView:
    view = service().replace_credentials(caller_organization(router), integration_id_or_404(integration_id), body)
    metrics.add_metric(name="CredentialsReplaced", unit=MetricUnit.Count, value=1)
    return view
