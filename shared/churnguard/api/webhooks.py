"""Routes for webhook endpoints (secrets encrypted, never returned) and the dead-letter queue."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.metrics import MetricUnit

from churnguard.api.http import caller_organization
from churnguard.webhooks.models import (
    DeadLetterPage,
    RedriveResult,
    RotateSecretRequest,
    WebhookEndpointCreateRequest,
    WebhookEndpointList,
    WebhookEndpointUpdateRequest,
    WebhookEndpointView,
)
from churnguard.webhooks.service import (
    DeadLetterService,
    WebhookEndpointService,
)
from churnguard.wiring import services as wiring

router = Router()
metrics = Metrics()


@lru_cache(maxsize=1)
def endpoints() -> WebhookEndpointService:
    return wiring.endpoint_service()


@lru_cache(maxsize=1)
def deadletters() -> DeadLetterService:
    return wiring.deadletter_service()


@router.post(
    "/api/webhooks/endpoints", status_code=201, tags=["webhooks"], summary="Create a webhook endpoint for a provider"
)
def create_endpoint(body: Annotated[WebhookEndpointCreateRequest, Body()]) -> WebhookEndpointView:
    view = endpoints().create(caller_organization(router), body)
    metrics.add_metric(name="WebhookEndpointsCreated", unit=MetricUnit.Count, value=1)
    return view


@router.get("/api/webhooks/endpoints", tags=["webhooks"], summary="List the organisation's webhook endpoints")
def list_endpoints() -> WebhookEndpointList:
    return WebhookEndpointList(items=endpoints().list_endpoints(caller_organization(router)))


@router.get("/api/webhooks/endpoints/<endpoint_id>", tags=["webhooks"], summary="Get a webhook endpoint")
def get_endpoint(endpoint_id: str) -> WebhookEndpointView:
    return endpoints().get(caller_organization(router), endpoint_id)


@router.patch("/api/webhooks/endpoints/<endpoint_id>", tags=["webhooks"], summary="Change a webhook endpoint")
def update_endpoint(endpoint_id: str, body: Annotated[WebhookEndpointUpdateRequest, Body()]) -> WebhookEndpointView:
    return endpoints().update(caller_organization(router), endpoint_id, body)


@router.delete(
    "/api/webhooks/endpoints/<endpoint_id>", status_code=204, tags=["webhooks"], summary="Delete a webhook endpoint"
)
def delete_endpoint(endpoint_id: str) -> Response[None]:
    endpoints().delete(caller_organization(router), endpoint_id)
    return Response(status_code=204, body=None)


@router.post(
    "/api/webhooks/endpoints/<endpoint_id>/rotate-secret",
    tags=["webhooks"],
    summary="Rotate the signing secret; the old one verifies during the grace period",
)
def rotate_secret(endpoint_id: str, body: Annotated[RotateSecretRequest, Body()]) -> WebhookEndpointView:
    view = endpoints().rotate_secret(caller_organization(router), endpoint_id, body)
    metrics.add_metric(name="WebhookSecretsRotated", unit=MetricUnit.Count, value=1)
    return view


@router.get("/api/dlq", tags=["webhooks"], summary="Webhook events that exhausted their retries, with the error")
def list_dead_letters(
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next_token: Annotated[str | None, Query(max_length=512)] = None,
) -> DeadLetterPage:
    return deadletters().page(caller_organization(router), limit, next_token)


@router.post("/api/dlq/redrive", tags=["webhooks"], summary="Replay the organisation's dead letters")
def redrive_dead_letters() -> RedriveResult:
    result = deadletters().redrive(caller_organization(router))
    metrics.add_metric(name="WebhookDeadLettersRedriven", unit=MetricUnit.Count, value=result.redriven)
    return result
