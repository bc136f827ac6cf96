"""Routes for REST API ingestion rules (integrations of provider `custom` with a REST source)."""

from __future__ import annotations

import re
from typing import Annotated

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.metrics import MetricUnit

from churnguard.api import integrations
from churnguard.api.http import caller_organization
from churnguard.errors import NotFoundError
from churnguard.ingestion import (
    APIIngestionRule,
    APIIngestionRuleCreated,
    APIIngestionRulePage,
    APIIngestionRulePatch,
    APIIngestionRuleView,
    IngestionRuleService,
)

router = Router()
metrics = Metrics()
_RULE_ID = re.compile(r"^int_[0-9a-f]{20}$")


def rules() -> IngestionRuleService:
    """The rule service over the integration service this function already holds."""
    return IngestionRuleService.wrapping(integrations.service())


def rule_id_or_404(value: str) -> str:
    if not _RULE_ID.match(value):
        raise NotFoundError("ingestion rule not found", {"rule_id": value[:64]})
    return value


@router.post(
    "/api/ingestion-rules", status_code=201, tags=["ingestion rules"], summary="Create a REST API ingestion rule"
)
def create_rule(body: Annotated[APIIngestionRule, Body()]) -> APIIngestionRuleCreated:
    view = rules().create_rule(caller_organization(router), body)
    metrics.add_metric(name="IngestionRulesCreated", unit=MetricUnit.Count, value=1)
    return APIIngestionRuleCreated(rule_id=view.rule_id, rule=view)


@router.get("/api/ingestion-rules", tags=["ingestion rules"], summary="List ingestion rules, paginated")
def list_rules(
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next_token: Annotated[str | None, Query(max_length=512)] = None,
) -> APIIngestionRulePage:
    return rules().list_rules(caller_organization(router), limit, next_token)


@router.get("/api/ingestion-rules/<rule_id>", tags=["ingestion rules"], summary="Get an ingestion rule")
def get_rule(rule_id: str) -> APIIngestionRuleView:
    return rules().get_rule(caller_organization(router), rule_id_or_404(rule_id))


@router.patch("/api/ingestion-rules/<rule_id>", tags=["ingestion rules"], summary="Change an ingestion rule")
def update_rule(rule_id: str, body: Annotated[APIIngestionRulePatch, Body()]) -> APIIngestionRuleView:
    return rules().update_rule(caller_organization(router), rule_id_or_404(rule_id), body)


@router.delete(
    "/api/ingestion-rules/<rule_id>",
    status_code=204,
    tags=["ingestion rules"],
    summary="Delete an ingestion rule and its poll schedule",
)
def delete_rule(rule_id: str) -> Response[None]:
    rules().delete_rule(caller_organization(router), rule_id_or_404(rule_id))
    metrics.add_metric(name="IngestionRulesDeleted", unit=MetricUnit.Count, value=1)
    return Response(status_code=204, body=None)
