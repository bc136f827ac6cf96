"""The public API's answers (webhook deliveries, stream ingest), in the platform's error shape,
and the fixed minute their per-minute allowances count in. Standard library only: these paths
keep their cold start small."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body),
    }


def error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    return response(status, {"error": {"code": code, "message": message, "details": {}}}, headers)


def rate_window(now: float) -> tuple[int, int]:
    """The fixed minute every allowance counts in, and when its counter item may expire."""
    window = int(now // 60)
    return window, (window + 2) * 60
