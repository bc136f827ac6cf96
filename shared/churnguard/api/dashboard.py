"""The dashboard's routes. Readiness is public: it says whether the platform's dependencies
answer and nothing about any organisation. Every other route is the caller's organisation's."""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, cast

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from churnguard.api.http import caller_organization
from churnguard.api.integrations import integration_id_or_404
from churnguard.dashboard.alerts import Alert, AlertPage, AlertSettings, AlertSettingsUpdate, AlertState
from churnguard.dashboard.readiness import Readiness, ReadinessProbe
from churnguard.dashboard.service import DashboardMetrics, IntegrationDetail, IntegrationSummaries
from churnguard.errors import NotFoundError

if TYPE_CHECKING:
    from churnguard.wiring.dashboard import DashboardServices

router = Router()
_ALERT_ID = re.compile(r"^alt_[0-9a-f]{20}$")


@cache
def probe() -> ReadinessProbe:
    from churnguard.wiring.dashboard import readiness_probe

    return readiness_probe()


@cache
def services() -> DashboardServices:
    from churnguard.wiring.dashboard import dashboard_services

    return dashboard_services()


@router.get(
    "/api/dashboard/health",
    tags=["dashboard"],
    summary="Readiness: the table, the data lake and the webhook queue answer (no API key needed)",
    responses={
        200: {"description": "every dependency answers", "content": {"application/json": {"model": Readiness}}},
        503: {"description": "a dependency does not answer", "content": {"application/json": {"model": Readiness}}},
    },
)
def health() -> Response[str]:
    readiness = probe().check()
    return Response(
        status_code=200 if readiness.status == "ready" else 503,
        content_type=content_types.APPLICATION_JSON,
        body=readiness.model_dump_json(),
        headers={"Cache-Control": "no-store"},
    )


@router.get("/api/dashboard/metrics", tags=["dashboard"], summary="The organisation's totals and health score")
def metrics() -> DashboardMetrics:
    return services().dashboard.metrics(caller_organization(router))


@router.get(
    "/api/dashboard/integrations",
    tags=["dashboard"],
    summary="One summary per integration: health score and its components, freshness, last and next sync",
)
def integrations() -> IntegrationSummaries:
    return services().dashboard.summaries(caller_organization(router))


@router.get(
    "/api/dashboard/integration/<integration_id>",
    tags=["dashboard"],
    summary="One integration: its summary, running sync, recent runs, entities, days and webhook endpoint",
)
def integration(integration_id: str) -> IntegrationDetail:
    return services().dashboard.detail(caller_organization(router), integration_id_or_404(integration_id))


@router.get("/api/dashboard/alerts", tags=["dashboard"], summary="Alerts, newest first")
def alerts(
    state: Annotated[AlertState | None, Query(description="only alerts in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> AlertPage:
    documents, token = services().alerts.page(caller_organization(router), state, limit, next_token)
    return AlertPage(items=[Alert.model_validate(d) for d in documents], next_token=token)


@router.post(
    "/api/dashboard/alerts/<alert_id>/acknowledge",
    tags=["dashboard"],
    summary="Acknowledge an open alert (it resolves by itself when its condition clears)",
)
def acknowledge(alert_id: str) -> Alert:
    if not _ALERT_ID.match(alert_id):
        raise NotFoundError("alert not found", {"alert_id": alert_id[:64]})
    organization_id = caller_organization(router)
    document = services().alerts.acknowledge(
        organization_id, alert_id, services().dashboard.now().isoformat(), _caller_key()
    )
    return Alert.model_validate(document)


@router.get("/api/dashboard/alert-settings", tags=["dashboard"], summary="Alert rules, thresholds and channels")
def get_alert_settings() -> AlertSettings:
    return services().settings.get(caller_organization(router))


@router.put(
    "/api/dashboard/alert-settings",
    tags=["dashboard"],
    summary="Replace the alert settings (the chat webhook URL is write-only and stored encrypted)",
)
def put_alert_settings(body: Annotated[AlertSettingsUpdate, Body()]) -> AlertSettings:
    return services().settings.put(caller_organization(router), body, set(body.model_fields_set))


def _caller_key() -> str:
    event = cast(APIGatewayProxyEventV2, router.current_event).raw_event
    context: dict[str, Any] = ((event.get("requestContext") or {}).get("authorizer") or {}).get("lambda") or {}
    return str(context.get("key_id") or "")
