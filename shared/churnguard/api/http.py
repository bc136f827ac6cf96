"""The management API's resolver: one error shape, authentication, body limits, OpenAPI.

Every error leaves as `{"error": {"code", "message", "details"}}`. Pydantic's own messages are
passed on without the offending input, which may be a secret.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, cast

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as RouteNotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from churnguard import __version__
from churnguard.config import platform_settings
from churnguard.errors import (
    BadRequestError,
    ChurnGuardError,
    PayloadTooLargeError,
    UnauthorizedError,
)

logger = Logger(child=True)

PUBLIC_ROUTES = frozenset({"/api/docs", "/api/openapi.json"})
OPENAPI_INFO: dict[str, Any] = {
    "title": "ChurnGuard Integrations management API",
    "version": __version__,
    "description": "Integrations, credentials and API keys. Authenticate with `Authorization: Bearer cg_...`.",
    "security_schemes": {"apiKey": HTTPBearer(description="A ChurnGuard API key, cg_...")},
    "security": [{"apiKey": []}],
}
_AUTH_MESSAGES = {
    "missing_api_key": "an API key is required: send Authorization: Bearer <key>",
    "invalid_api_key": "the API key is invalid or has been revoked",
}


def error_response(status: int, code: str, message: str, details: Any = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps({"error": {"code": code, "message": message, "details": details or {}}}),
    )


def caller_organization(app: BaseRouter) -> str:
    """The organisation of the API key that made this request, as the authorizer proved it."""
    event = cast(APIGatewayProxyEventV2, app.current_event)
    context = event.request_context.authorizer.get_lambda or {}
    organization_id = context.get("organization_id")
    if not organization_id:
        reason = context.get("auth_error", "missing_api_key")
        raise UnauthorizedError(_AUTH_MESSAGES.get(reason, _AUTH_MESSAGES["invalid_api_key"]))
    return str(organization_id)


def _raw_body(app: BaseRouter) -> bytes:
    event = app.current_event
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()


def _precheck(app: BaseRouter) -> None:
    """Authentication, body size and JSON syntax, which outrank field validation."""
    if app.current_event.path not in PUBLIC_ROUTES:
        caller_organization(app)
    body = _raw_body(app)
    limit = platform_settings().management_max_body_bytes
    if len(body) > limit:
        raise PayloadTooLargeError(f"request body is {len(body)} bytes; the limit is {limit}", {"limit_bytes": limit})
    if body.strip():
        try:
            json.loads(body)
        except ValueError as exc:
            raise BadRequestError("request body is not valid JSON", {"position": getattr(exc, "pos", None)}) from None


def _guard(app: APIGatewayHttpResolver, next_middleware: Callable[..., Response[str]]) -> Response[str]:
    _precheck(app)
    return next_middleware(app)


def build_app(*routers: Any) -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)
    app.use(middlewares=[_guard])
    for router in routers:
        app.include_router(router)

    app.configure_openapi(**OPENAPI_INFO)
    app.enable_swagger(path="/api/docs", **OPENAPI_INFO)

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi_document() -> Response[str]:
        return Response(
            status_code=200,
            content_type=content_types.APPLICATION_JSON,
            body=app.get_openapi_json_schema(**OPENAPI_INFO),
        )

    @app.exception_handler(ChurnGuardError)
    def domain_error(exc: ChurnGuardError) -> Response[str]:
        if exc.status_code >= 500:
            logger.error("request failed", extra={"error_code": exc.code})
        return error_response(exc.status_code, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    def invalid_request(exc: RequestValidationError) -> Response[str]:
        # Powertools validates before any middleware runs; the prechecks still take precedence.
        try:
            _precheck(app)
        except ChurnGuardError as precheck_error:
            return error_response(
                precheck_error.status_code, precheck_error.code, precheck_error.message, precheck_error.details
            )
        fields = [
            {
                "field": ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body",
                "message": error.get("msg", "invalid value"),
                "type": error.get("type", "value_error"),
            }
            for error in exc.errors()
        ]
        return error_response(422, "validation_error", "the request is not valid", {"fields": fields})

    @app.not_found
    def route_not_found(_: RouteNotFoundError) -> Response[str]:
        return error_response(404, "not_found", "no such route")

    @app.exception_handler(Exception)
    def unexpected(exc: Exception) -> Response[str]:
        logger.exception("unhandled error", extra={"error_type": type(exc).__name__})
        return error_response(500, "internal_error", "an internal error occurred; it has been logged")

    return app
