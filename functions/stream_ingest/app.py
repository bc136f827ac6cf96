"""Stream ingest function: `POST /ingest/{stream_id}` on the public API (churnguard.streaming.ingest)."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger

from churnguard.streaming.ingest import StreamIngest

logger = Logger()


@cache
def ingest() -> StreamIngest:
    from churnguard.wiring.ingest import stream_ingest

    return stream_ingest()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return ingest().handle(event)
