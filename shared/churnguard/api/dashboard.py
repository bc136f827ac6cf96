"""The dashboard's routes. Readiness is public: it says whether the platform's dependencies
answer and nothing about any organisation."""

from __future__ import annotations

from functools import cache

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

from churnguard.dashboard.readiness import Readiness, ReadinessProbe

router = Router()


@cache
def probe() -> ReadinessProbe:
    from churnguard.wiring.dashboard import readiness_probe

    return readiness_probe()


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
