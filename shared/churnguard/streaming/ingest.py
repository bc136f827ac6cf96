"""`POST /ingest/{stream_id}`: a custom stream's events, over HTTPS, onto the ingest stream.

The caller presents the stream's ingest key (`Authorization: Bearer cgi_…`); only its SHA-256 is
stored. A body is a JSON array of up to 500 event objects and at most 1 MB. Each event is
answered on its own: accepted (now on the ingest stream, to land exactly once by its
`event_id_field`, else by its content) or rejected with the reason. Requests count against the
stream's per-minute allowance; a caller with a wrong key counts against its address, and past
that allowance is answered 429 before any lookup.
"""

from __future__ import annotations

import base64
import hmac
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from churnguard.errors import NotFoundError
from churnguard.inbound.answers import error, rate_window, response
from churnguard.pipeline.mapping import value_getter
from churnguard.store.streams import StreamStore, ingest_key_key
from churnguard.store.webhooks import WebhookStore
from churnguard.stream_models import (
    MAX_INGEST_BYTES,
    MAX_INGEST_EVENTS,
    StreamConfiguration,
    StreamStatus,
    StreamType,
)
from churnguard.streaming.messages import ingest_identity
from churnguard.streaming.service import hash_ingest_key
from churnguard.streaming.sources import IngestEvent, IngestWriter

logger = logging.getLogger(__name__)

INGEST_KEY_SHAPE = re.compile(r"^cgi_[A-Za-z0-9_-]{43}$")
STREAM_ID_SHAPE = re.compile(r"^str_[0-9a-f]{16}$")
FAILED_KEYS_PER_SOURCE_PER_MINUTE = 60


class StreamIngest:
    def __init__(
        self,
        streams: StreamStore,
        limits: WebhookStore,
        writer: IngestWriter,
        *,
        requests_per_minute: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._streams = streams
        self._limits = limits
        self._writer = writer
        self._requests_per_minute = requests_per_minute
        self._clock = clock

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        now = self._clock()
        window, expires = rate_window(now)
        address = (event.get("requestContext") or {}).get("http", {}).get("sourceIp") or "unknown"
        source = f"ingest#source#{str(address)[:64]}"
        if self._limits.rate_spent(source, window, FAILED_KEYS_PER_SOURCE_PER_MINUTE):
            return error(429, "rate_limited", "too many refused requests from this address", {"Retry-After": "60"})
        stream_id = str((event.get("pathParameters") or {}).get("stream_id", ""))
        config = self._authenticated(event, stream_id)
        if config is None:
            self._limits.take_rate(source, window, FAILED_KEYS_PER_SOURCE_PER_MINUTE, expires)
            return error(401, "unauthorized", "a valid ingest key for this stream is required")
        if config.status is not StreamStatus.ACTIVE:
            return error(409, "stream_paused", "the stream is paused; resume it to ingest events")
        events = _events(event)
        if isinstance(events, dict):
            return events
        if not self._limits.take_rate(f"ingest#{stream_id}", window, self._requests_per_minute, expires):
            retry_after = str(max(1, expires - 60 - int(now)))
            return error(429, "rate_limited", "too many requests for this stream", {"Retry-After": retry_after})
        return self._buffer(config, events, now)

    def _authenticated(self, event: Mapping[str, Any], stream_id: str) -> StreamConfiguration | None:
        """The custom stream the presented ingest key opens, or None (one answer for every reason)."""
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        scheme, _, presented = headers.get("authorization", "").partition(" ")
        presented = presented.strip()
        if not (STREAM_ID_SHAPE.match(stream_id) and scheme.lower() == "bearer" and INGEST_KEY_SHAPE.match(presented)):
            return None
        key_hash = hash_ingest_key(presented)
        found = self._streams.find(ingest_key_key(key_hash))
        if found is None or found[1] != stream_id:
            return None
        try:
            config = self._streams.get(found[0], stream_id)  # read each time: a pause takes effect at once
        except NotFoundError:
            return None
        if config.stream_type is not StreamType.CUSTOM:
            return None
        return config if hmac.compare_digest(config.ingest_key_hash or "", key_hash) else None

    def _buffer(self, config: StreamConfiguration, events: list[Any], now: float) -> dict[str, Any]:
        event_id = value_getter(config.event_id_field) if config.event_id_field else None
        results: list[dict[str, Any]] = []
        accepted: list[tuple[int, IngestEvent]] = []
        for index, item in enumerate(events):
            if not isinstance(item, dict):
                results.append({"index": index, "status": "rejected", "error": "an event must be a JSON object"})
                continue
            payload = orjson.dumps(item)
            identity = ingest_identity(payload, event_id(item) if event_id is not None else None)
            accepted.append((index, IngestEvent(config.organization_id, config.stream_id, identity, payload, now)))
            results.append({"index": index, "status": "accepted", "event_id": identity})
        if accepted:
            try:
                outcomes = self._writer.put([ingest for _, ingest in accepted])
            except Exception:
                logger.exception("ingest stream refused the request", extra={"stream_id": config.stream_id})
                return error(
                    503, "unavailable", "the events could not be buffered; retry the request", {"Retry-After": "5"}
                )
            for (index, _), failure in zip(accepted, outcomes, strict=True):
                if failure is not None:
                    results[index] = {"index": index, "status": "rejected", "error": "not buffered; retry this event"}
        count = sum(1 for result in results if result["status"] == "accepted")
        return response(202, {"accepted": count, "rejected": len(results) - count, "results": results})


def _events(event: Mapping[str, Any]) -> list[Any] | dict[str, Any]:
    """The request's events, or the answer that refuses the body."""
    body = _body(event)
    if len(body) > MAX_INGEST_BYTES:
        return error(413, "payload_too_large", f"a request carries at most {MAX_INGEST_BYTES} bytes")
    try:
        events = orjson.loads(body)
    except orjson.JSONDecodeError:
        return error(400, "bad_request", "the body must be a JSON array of event objects")
    if not isinstance(events, list) or not events:
        return error(400, "bad_request", "the body must be a non-empty JSON array of event objects")
    if len(events) > MAX_INGEST_EVENTS:
        return error(413, "too_many_events", f"a request carries at most {MAX_INGEST_EVENTS} events")
    return events


def _body(event: Mapping[str, Any]) -> bytes:
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(raw)
    return raw.encode() if isinstance(raw, str) else bytes(raw)
