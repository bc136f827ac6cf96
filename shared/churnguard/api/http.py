"""The management API's resolver: one error shape, authentication, body limits, OpenAPI.

Every error leaves as `{"error": {"code", "message", "details"}}`. Pydantic's own messages are
passed on without the offending input, which may be a secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from functools import lru_cache
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
    UnsupportedMediaTypeError,
)
from churnguard.jsontext import JsonTextError, loads_strict

logger = Logger(child=True)

PUBLIC_ROUTES = frozenset({"/api/docs", "/api/openapi.json", "/api/dashboard/health", "/dashboard"})
# The dashboard page's static assets (churnguard.api.page): no data, no key.
PUBLIC_PREFIXES = ("/dashboard/assets/",)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
OPENAPI_INFO: dict[str, Any] = {
    "title": "ChurnGuard Integrations management API",
    "version": __version__,
    "description": "Integrations, credentials and API keys. Authenticate with `Authorization: Bearer cg_...`.",
    "security_schemes": {"apiKey": HTTPBearer(description="A ChurnGuard API key, cg_...")},
    "security": [{"apiKey": []}],
}
ERROR_RESPONSE_REF = "#/components/schemas/ErrorResponse"
ERROR_RESPONSE_SCHEMA: dict[str, Any] = {
    "title": "ErrorResponse",
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "description": "stable, machine-readable: bad_request, not_found, ..."},
                "message": {"type": "string", "description": "what went wrong, for people"},
                "details": {
                    "description": "what it concerns; a 422 lists each invalid field under `fields`",
                    "type": ["object", "array"],
                },
            },
        }
    },
}
ERROR_DESCRIPTIONS = {
    400: "The body is not JSON text in UTF-8, or a query value (such as next_token) was not issued by this API",
    401: "No API key, or one that is invalid or revoked",
    403: "The body names an organisation other than the key's",
    404: "Nothing with that id in the key's organisation",
    409: "The change conflicts with the current state (a name in use, a sync already running, ...)",
    413: "The body is larger than the API accepts",
    415: "The body is not application/json",
    422: "A field is invalid; details.fields names each",
    429: "The organisation already runs as many syncs as it may at once; retry when one has finished",
    503: "An AWS dependency did not answer; nothing was changed and the request may be retried",
}
_AUTH_MESSAGES = {
    "missing_api_key": "an API key is required: send Authorization: Bearer <key>",
    "invalid_api_key": "the API key is invalid or has been revoked",
}


def error_body(code: str, message: str, details: Any = None) -> str:
    return json.dumps({"error": {"code": code, "message": message, "details": details or {}}})


def error_response(status: int, code: str, message: str, details: Any = None) -> Response[str]:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=error_body(code, message, details)
    )


def caller_organization(app: BaseRouter) -> str:
    """The organisation of the API key that made this request, as the authorizer proved it."""
    return _organization(cast(APIGatewayProxyEventV2, app.current_event).raw_event)


def _organization(event: Mapping[str, Any]) -> str:
    """The organisation the authorizer proved for this request, or UnauthorizedError."""
    context = ((event.get("requestContext") or {}).get("authorizer") or {}).get("lambda") or {}
    organization_id = context.get("organization_id")
    if not organization_id:
        reason = context.get("auth_error", "missing_api_key")
        raise UnauthorizedError(_AUTH_MESSAGES.get(reason, _AUTH_MESSAGES["invalid_api_key"]))
    return str(organization_id)


def _raw_body(event: Mapping[str, Any]) -> bytes:
    body = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return str(body).encode("utf-8", "surrogatepass")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError("request body is not valid base64") from None


def _media_type(event: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """The request's media type and charset, or None when it sent no Content-Type."""
    headers = {str(name).lower(): str(value) for name, value in (event.get("headers") or {}).items()}
    if "content-type" not in headers:
        return None
    media_type, *parameters = headers["content-type"].split(";")
    charset = None
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return media_type.strip().lower(), charset


def precheck(event: Mapping[str, Any]) -> None:
    """Authentication, then body size, media type and JSON text: what outranks field validation.

    Runs before routing and validation, so a stranger learns nothing about a route's fields and no
    malformed body reaches a parser that would fail with anything but the API's own errors.
    """
    http = (event.get("requestContext") or {}).get("http") or {}
    path = http.get("path") or event.get("rawPath") or ""
    if path not in PUBLIC_ROUTES and not path.startswith(PUBLIC_PREFIXES):
        _organization(event)
    body = _raw_body(event)
    limit = platform_settings().management_max_body_bytes
    if len(body) > limit:
        raise PayloadTooLargeError(f"request body is {len(body)} bytes; the limit is {limit}", {"limit_bytes": limit})
    method = str(http.get("method") or "").upper()
    media = _media_type(event)
    if media is not None and (body or method in BODY_METHODS):
        media_type, charset = media
        if media_type != content_types.APPLICATION_JSON or charset not in (None, "utf-8", "utf8"):
            raise UnsupportedMediaTypeError(
                "request bodies must be application/json in UTF-8", {"content_type": media_type[:100]}
            )
    if body.strip():
        try:
            loads_strict(body)
        except JsonTextError as exc:
            raise BadRequestError(f"request body {exc}") from None
        except RecursionError:
            raise BadRequestError("request body nests too deeply") from None


class ManagementResolver(APIGatewayHttpResolver):
    """Powertools' HTTP API resolver with the prechecks run first: its own request validation
    would otherwise meet an undecodable body or a foreign content type before the key check."""

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        try:
            precheck(event)
        except ChurnGuardError as refusal:
            return {
                "statusCode": refusal.status_code,
                "headers": {"Content-Type": content_types.APPLICATION_JSON},
                "body": error_body(refusal.code, refusal.message, refusal.details),
                "isBase64Encoded": False,
                "cookies": [],
            }
        return super().resolve(event, context)


def document_errors(document: dict[str, Any]) -> dict[str, Any]:
    """Adds to every operation the error statuses it can answer, in the API's one error shape.

    Powertools documents only the success status and its own 422 shape. Which errors an
    operation can meet follows from what it is: every one checks the key and the body (401, 400,
    413, 415), validates (422) and may find AWS unavailable (503); one with a path parameter may
    find nothing there (404); one that changes state may conflict with the state it finds (409);
    one whose body can name an organisation refuses any but the caller's (403); starting a sync
    meets the organisation's cap on concurrent syncs (429). A 204 has no body.
    """
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["ErrorResponse"] = ERROR_RESPONSE_SCHEMA
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if path in PUBLIC_ROUTES:  # no key, no parameters: only the body checks apply
                operation["security"] = []
                statuses = {400, 413, 415}
            else:
                statuses = {400, 401, 413, 415, 422, 503}
            if "{" in path:
                statuses.add(404)
            if method in {"post", "put", "patch", "delete"}:
                statuses.add(409)
            if "organization_id" in _body_properties(operation, schemas):
                statuses.add(403)
            if method == "post" and path.endswith("/sync"):
                statuses.add(429)
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses):
                responses[str(status)] = {
                    "description": ERROR_DESCRIPTIONS[status],
                    "content": {content_types.APPLICATION_JSON: {"schema": {"$ref": ERROR_RESPONSE_REF}}},
                }
            if "204" in responses:
                responses["204"].pop("content", None)
    return document


def _body_properties(operation: dict[str, Any], schemas: dict[str, Any]) -> set[str]:
    schema = operation.get("requestBody", {}).get("content", {}).get(content_types.APPLICATION_JSON, {}).get("schema")
    candidates = [schema] if schema else []
    names: set[str] = set()
    while candidates:
        candidate = candidates.pop()
        if "$ref" in candidate:
            candidate = schemas.get(candidate["$ref"].rsplit("/", 1)[-1], {})
        names.update(candidate.get("properties", {}))
        candidates.extend(candidate.get("anyOf", []) + candidate.get("allOf", []) + candidate.get("oneOf", []))
    return names


def build_app(*routers: Any) -> APIGatewayHttpResolver:
    app = ManagementResolver(enable_validation=True)
    for router in routers:
        app.include_router(router)

    app.configure_openapi(**OPENAPI_INFO)
    app.enable_swagger(path="/api/docs", **OPENAPI_INFO)

    @lru_cache(maxsize=1)
    def described() -> dict[str, Any]:
        """The OpenAPI document with its error responses, built once per container."""
        return document_errors(json.loads(app.get_openapi_json_schema(**OPENAPI_INFO)))

    @lru_cache(maxsize=1)
    def described_json() -> str:
        return json.dumps(described())

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi_document() -> Response[str]:
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=described_json())

    @app.exception_handler(ChurnGuardError)
    def domain_error(exc: ChurnGuardError) -> Response[str]:
        if exc.status_code >= 500:
            logger.error("request failed", extra={"error_code": exc.code})
        return error_response(exc.status_code, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    def invalid_request(exc: RequestValidationError) -> Response[str]:
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
        event = app.current_event
        allowed = served_methods(event.path)
        if not allowed:
            return error_response(404, "not_found", "no such route")
        response = error_response(
            405, "method_not_allowed", f"{event.http_method} is not allowed here", {"allowed": allowed}
        )
        response.headers["Allow"] = ", ".join(allowed)
        return response

    @lru_cache(maxsize=1)
    def route_patterns() -> list[tuple[re.Pattern[str], str]]:
        document = described()
        return [
            (re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(path)) + "$"), method.upper())
            for path, item in document.get("paths", {}).items()
            for method in item
            if method in {"get", "put", "post", "delete", "patch", "head", "options"}
        ]

    def served_methods(path: str) -> list[str]:
        """The methods some route serves at `path` (for 405 and its Allow header)."""
        return sorted({method for pattern, method in route_patterns() if pattern.match(path)})

    @app.exception_handler(Exception)
    def unexpected(exc: Exception) -> Response[str]:
        logger.exception("unhandled error", extra={"error_type": type(exc).__name__})
        return error_response(500, "internal_error", "an internal error occurred; it has been logged")

    return app
