"""Management API function: integrations, credentials and API keys.

Thin by design: routing, validation and error mapping live in churnguard.api, the logic in
churnguard's services.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from churnguard.api import dashboard, ingestion_rules, integrations, keys, page, schemas, streams, syncs, webhooks
from churnguard.api.http import build_app

logger = Logger()
metrics = Metrics()
app = build_app(
    integrations.router,
    keys.router,
    syncs.router,
    webhooks.router,
    ingestion_rules.router,
    schemas.router,
    dashboard.router,
    page.router,
    streams.router,
)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = app.resolve(event, context)
    authorizer = event.get("requestContext", {}).get("authorizer", {}).get("lambda") or {}
    logger.info(
        "request handled",
        extra={
            "route": event.get("routeKey"),
            "status": response["statusCode"],
            "organization_id": authorizer.get("organization_id") or None,
        },
    )
    return response
