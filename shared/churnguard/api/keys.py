"""Routes for API keys."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.metrics import MetricUnit

from churnguard import aws
from churnguard.api.http import caller_organization
from churnguard.api_keys import ApiKeyService
from churnguard.config import table_name
from churnguard.errors import NotFoundError
from churnguard.integrations import check_organization
from churnguard.models import ApiKeyCreated, ApiKeyCreateRequest, ApiKeyList, ApiKeyView
from churnguard.store.api_keys import ApiKeyStore

router = Router()
metrics = Metrics()
_KEY_ID = re.compile(r"^key_[0-9a-f]{12}$")


@lru_cache(maxsize=1)
def service() -> ApiKeyService:
    return ApiKeyService(ApiKeyStore(aws.client("dynamodb"), table_name()))


@router.post("/api/keys", status_code=201, tags=["api keys"], summary="Issue an API key (shown once)")
def create_key(body: Annotated[ApiKeyCreateRequest, Body()]) -> ApiKeyCreated:
    organization_id = caller_organization(router)
    check_organization(organization_id, body.organization_id)
    created = service().create(organization_id, body.name)
    metrics.add_metric(name="ApiKeysCreated", unit=MetricUnit.Count, value=1)
    return created


@router.get("/api/keys", tags=["api keys"], summary="List the organisation's API keys")
def list_keys() -> ApiKeyList:
    return service().list(caller_organization(router))


@router.delete("/api/keys/<key_id>", tags=["api keys"], summary="Revoke an API key at once")
def revoke_key(key_id: str) -> ApiKeyView:
    organization_id = caller_organization(router)
    if not _KEY_ID.match(key_id):
        raise NotFoundError("API key not found", {"key_id": key_id[:64]})
    revoked = service().revoke(organization_id, key_id)
    metrics.add_metric(name="ApiKeysRevoked", unit=MetricUnit.Count, value=1)
    return revoked
