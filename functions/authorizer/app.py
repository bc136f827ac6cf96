"""Lambda authorizer for the management API: resolves a Bearer API key to its organisation.

It never denies at the gateway. An HTTP API denial is a fixed `403 {"message":"Forbidden"}` that
cannot carry the platform's error shape, so a request without a valid key passes with an empty
organisation and the reason, and the management function answers 401. The function trusts only
this context, which API Gateway alone can set. Imports stay minimal for a fast cold start.
"""

from __future__ import annotations

import os
from typing import Any

from churnguard import aws
from churnguard.auth import authenticate, bearer_token

_dynamodb = aws.client("dynamodb")
_TABLE_NAME = os.environ["TABLE_NAME"]


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    authorization = headers.get("authorization")
    token = bearer_token(authorization)
    if token is None:
        reason = "missing_api_key" if not authorization else "invalid_api_key"
        return _anonymous(reason)
    principal = authenticate(_dynamodb, _TABLE_NAME, token)
    if principal is None:
        return _anonymous("invalid_api_key")
    return {
        "isAuthorized": True,
        "context": {"organization_id": principal.organization_id, "key_id": principal.key_id},
    }


def _anonymous(reason: str) -> dict[str, Any]:
    return {"isAuthorized": True, "context": {"organization_id": "", "auth_error": reason}}
