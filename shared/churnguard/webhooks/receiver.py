"""The webhook receiver: authenticate, limit, dedupe, enqueue, answer.

An event is either acknowledged and durably queued, or not acknowledged: each event id is
claimed in DynamoDB (a conditional write with a lease and a TTL), the claimed events are sent to
SQS, and only then does the provider get its 2xx. If sending fails the claims are released and
the provider gets a 5xx, so its retry is accepted; a receiver that dies between claim and send
leaves a pending claim whose lease runs out, after which a retry takes it over. A repeated
delivery of a queued event is acknowledged and not enqueued again.

Unknown providers, organisations and endpoints all answer the same 404, so the API does not
reveal which organisations exist. Nothing secret is logged or answered.

Only verified deliveries count against an organisation's allowance. A delivery that fails (no
endpoint, a bad signature or token) counts against its source address and its endpoint instead;
a source address past its allowance is answered 429 before the endpoint is even read, so a flood
of forgeries costs one read each and never delays the organisation's real deliveries.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from churnguard.inbound.answers import error, rate_window, response
from churnguard.inbound.parsing import InboundEvent, ParseError
from churnguard.inbound.queued import ProviderEvent, QueuedEvent
from churnguard.inbound.scheme import Delivery, WebhookScheme
from churnguard.inbound.signatures import SignatureError
from churnguard.providers.registry import WEBHOOK_PROVIDERS, webhook_scheme
from churnguard.store.activity import ActivityStore
from churnguard.store.webhooks import Claim, StoredEndpoint, WebhookStore

logger = logging.getLogger(__name__)

ORGANIZATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_HEADER_BYTES = 16_384
DEDUPE_TTL_SECONDS = 7 * 24 * 3600  # longer than any provider retries (Stripe: 3 days)
CLAIM_LEASE_SECONDS = 60  # longer than the receiver's timeout
SQS_EVENT_BYTES = 250_000  # an SQS message is at most 256 KiB, envelope included


@dataclass(frozen=True)
class ReceiverSettings:
    max_payload_bytes: int
    rate_limit_per_minute: int
    signature_validation: bool
    # Deliveries to one organisation that fail verification, per minute: from one source address
    # (past this the address is answered 429 before any work) and to one endpoint (past this
    # refusals are answered 429 and no longer logged one by one).
    unverified_per_source_per_minute: int = 60
    unverified_per_endpoint_per_minute: int = 600


@dataclass(frozen=True)
class Outcome:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    ignored: int = 0


NOT_FOUND = ("not_found", "no such webhook endpoint")

# What a refusal counts as, by status: one CloudWatch metric each, so an alarm can watch forged
# deliveries (401) or a flood (429) without reading logs.
REFUSAL_METRICS = {
    400: "WebhookDeliveriesMalformed",
    401: "WebhookSignaturesRejected",
    404: "WebhookDeliveriesUnrouted",
    413: "WebhookPayloadsTooLarge",
    429: "WebhookDeliveriesRateLimited",
    431: "WebhookDeliveriesMalformed",
    503: "WebhookEnqueueFailures",
}


# What a refusal of a delivery to an existing endpoint counts as on the dashboard.
REFUSAL_REASONS = {
    400: "malformed",
    401: "signature",
    413: "too_large",
    429: "rate_limited",
    431: "malformed",
    503: "unavailable",
}


class MetricSink(Protocol):
    """Powertools Metrics, or anything that counts the same way."""

    def add_dimension(self, name: str, value: str) -> None: ...

    def add_metric(self, name: str, unit: str, value: float) -> None: ...


class WebhookReceiver:
    def __init__(
        self,
        store: WebhookStore,
        secrets: Callable[[StoredEndpoint], list[str]],
        sqs: Any,
        queue_url: str,
        settings: ReceiverSettings,
        clock: Callable[[], float] = time.time,
        metrics: MetricSink | None = None,
        activity: ActivityStore | None = None,
    ) -> None:
        self._store = store
        self._activity = activity
        self._routed: StoredEndpoint | None = None
        self._secrets = secrets
        self._sqs = sqs
        self._queue_url = queue_url
        self._settings = settings
        self._clock = clock
        self._metrics = metrics
        self._outcome: Outcome | None = None

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Answers one delivery and counts what happened to it."""
        self._outcome = None
        answer = self._answer(event)
        if self._activity is not None and self._routed is not None:
            self._count_activity(self._activity, self._routed, answer["statusCode"])
        if self._metrics is not None:
            provider = ((event.get("pathParameters") or {}).get("provider")) or ""
            count(
                self._metrics,
                provider if provider in WEBHOOK_PROVIDERS else "unknown",
                answer["statusCode"],
                self._outcome,
            )
        return answer

    def _answer(self, event: Mapping[str, Any]) -> dict[str, Any]:  # noqa: PLR0911 - each check answers at once
        self._routed = None  # the active endpoint the delivery reached, once it is known
        method = event.get("requestContext", {}).get("http", {}).get("method", "")
        params = event.get("pathParameters") or {}
        provider, organization_id = params.get("provider", ""), params.get("organization_id", "")
        if provider not in WEBHOOK_PROVIDERS or not ORGANIZATION_ID.match(organization_id):
            return error(404, *NOT_FOUND)
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        if sum(len(k) + len(v) for k, v in headers.items()) > MAX_HEADER_BYTES:
            return error(431, "headers_too_large", "request headers are too large")
        try:
            body = _raw_body(event)
        except (binascii.Error, ValueError):
            return error(400, "bad_request", "the body is not valid base64")
        limit = self._settings.max_payload_bytes
        if len(body) > limit:
            return error(413, "payload_too_large", f"the body is larger than {limit} bytes")
        now = self._clock()
        source = f"{organization_id}#source#{_source_address(event)}"
        if self._store.rate_spent(source, rate_window(now)[0], self._settings.unverified_per_source_per_minute):
            return self._too_many(now, "too many unverified webhook deliveries from this address")
        stored = self._store.endpoint(organization_id, provider)
        if stored is None or stored.doc.get("status", "active") != "active":
            return self._unverified(source, None, now, error(404, *NOT_FOUND))
        self._routed = stored
        delivery = Delivery(
            body=body,
            headers=headers,
            query=event.get("queryStringParameters") or {},
            method=method,
            uri=_request_uri(event, headers),
            now=now,
            endpoint=stored.doc,
            secrets=lambda: self._secrets(stored),
        )
        scheme = webhook_scheme(provider)
        if method == "GET":
            return self._validation_request(stored, scheme, delivery, source)
        return self._deliver(stored, scheme, delivery, source)

    def _deliver(  # noqa: PLR0911 - each check answers at once
        self, stored: StoredEndpoint, scheme: WebhookScheme, delivery: Delivery, source: str
    ) -> dict[str, Any]:
        """Verifies, parses, counts and enqueues a POST to an active endpoint."""
        provider, organization_id, now = stored.doc["provider"], stored.doc["organization_id"], delivery.now
        try:
            if self._settings.signature_validation:
                scheme.verify(delivery)
            inbound = scheme.parse(delivery)
        except SignatureError as exc:
            refusal = error(401, "invalid_signature", "the delivery's signature does not verify")
            return self._unverified(source, stored, now, refusal, reason=str(exc))
        except ParseError as exc:
            return error(400, "bad_request", str(exc))
        if any(len(item.event_id) + len(json.dumps(item.payload)) > SQS_EVENT_BYTES for item in inbound):
            return error(413, "payload_too_large", f"an event is larger than {SQS_EVENT_BYTES} bytes")
        window, expires_at = rate_window(now)
        if not self._store.take_rate(organization_id, window, self._settings.rate_limit_per_minute, expires_at):
            return self._too_many(now, "too many webhook deliveries")
        outcome = self._accept(stored, inbound, now)
        if outcome is None:
            return error(503, "unavailable", "the delivery could not be queued; retry it", {"Retry-After": "5"})
        self._outcome = outcome
        logger.info(
            "webhook accepted",
            extra={"provider": provider, "organization_id": organization_id, **outcome.__dict__},
        )
        ack = scheme.acknowledgement
        if ack is not None:
            return {"statusCode": 200, "headers": {"Content-Type": ack.content_type}, "body": ack.body}
        return response(200, outcome.__dict__)

    def _count_activity(self, activity: ActivityStore, stored: StoredEndpoint, status: int) -> None:
        """Counts on the dashboard what only the receiver sees: duplicates, ignored events and
        refusals (only for an existing endpoint, so a stranger cannot make counters). Accepted
        events are counted by the processor, a batch at a time: a delivery that is simply
        accepted costs no extra write here."""
        provider = stored.doc["provider"]
        counts: dict[str, int] = {}
        if self._outcome is not None:
            for name, value in (("duplicate", self._outcome.duplicates), ("ignored", self._outcome.ignored)):
                if value:
                    counts[f"webhook_{name}"] = counts[f"wh#{provider}#{name}"] = value
        elif status in REFUSAL_REASONS:
            reason = REFUSAL_REASONS[status]
            counts[f"refused_{reason}"] = counts[f"wh#{provider}#refused_{reason}"] = 1
        if counts:
            activity.add(activity.hour_update(stored.doc["organization_id"], counts, self._clock()))

    def _validation_request(
        self, stored: StoredEndpoint, scheme: WebhookScheme, delivery: Delivery, source: str
    ) -> dict[str, Any]:
        """Some providers (Mailchimp) check a webhook URL with a GET before saving it."""
        if not scheme.answers_validation_get:
            return self._unverified(source, stored, delivery.now, error(404, *NOT_FOUND))
        if self._settings.signature_validation:
            try:
                scheme.verify(delivery)
            except SignatureError:
                refusal = error(401, "invalid_signature", "the delivery's token does not match")
                return self._unverified(source, stored, delivery.now, refusal)
        return response(200, {"status": "ok"})

    def _too_many(self, now: float, message: str) -> dict[str, Any]:
        retry_after = str(max(1, (rate_window(now)[0] + 1) * 60 - int(now)))
        return error(429, "rate_limited", message, {"Retry-After": retry_after})

    def _unverified(
        self,
        source: str,
        stored: StoredEndpoint | None,
        now: float,
        refusal: dict[str, Any],
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Counts a delivery that failed verification against its source address and endpoint,
        never against the organisation's allowance; past the endpoint's allowance it is a 429."""
        window, expires_at = rate_window(now)
        self._store.take_rate(source, window, self._settings.unverified_per_source_per_minute, expires_at)
        if stored is None:
            return refusal
        endpoint = f"{stored.doc['organization_id']}#endpoint#{stored.doc['endpoint_id']}"
        if not self._store.take_rate(endpoint, window, self._settings.unverified_per_endpoint_per_minute, expires_at):
            return self._too_many(now, "too many unverified webhook deliveries to this endpoint")
        if reason is not None:
            logger.info("webhook refused", extra={"provider": stored.doc["provider"], "reason": reason})
        return refusal

    def _accept(self, stored: StoredEndpoint, inbound: list[InboundEvent], now: float) -> Outcome | None:
        """Claims and enqueues the allowed events; None when they could not all be queued."""
        doc = stored.doc
        organization_id, endpoint_id = doc["organization_id"], doc["endpoint_id"]
        allowed = set(doc.get("allowed_events") or ())
        ignored = [e for e in inbound if allowed and e.event_type not in allowed]
        if ignored:
            self._store.count_ignored(organization_id, doc["provider"], len(ignored))
        claimed: dict[str, str] = {}
        duplicates = 0
        for item in inbound:
            if allowed and item.event_type not in allowed:
                continue
            if item.event_id in claimed:
                duplicates += 1
                continue
            outcome = self._store.claim_event(
                organization_id,
                endpoint_id,
                item.event_id,
                now=int(now),
                lease_seconds=CLAIM_LEASE_SECONDS,
                ttl_seconds=DEDUPE_TTL_SECONDS,
            )
            if outcome is Claim.DUPLICATE:
                duplicates += 1
            else:
                claimed[item.event_id] = queue_message(doc, item, now)
        failed = self._enqueue(endpoint_id, list(claimed.items()))
        for event_id in failed:
            self._release(organization_id, endpoint_id, event_id)
        if failed:
            return None
        for event_id in claimed:
            try:
                self._store.mark_queued(organization_id, endpoint_id, event_id)
            except Exception:
                # Queued already; an unmarked claim only lets a retry after the lease enqueue a
                # copy, which the processor writes to the same place.
                logger.exception("could not mark a webhook event queued", extra={"endpoint_id": endpoint_id})
        return Outcome(len(inbound), len(claimed), duplicates, len(ignored))

    def _enqueue(self, endpoint_id: str, entries: list[tuple[str, str]]) -> list[str]:
        """Sends (event id, message) pairs to SQS in batches of ten; returns the ids not queued."""
        failed: list[str] = []
        for start in range(0, len(entries), 10):
            chunk = entries[start : start + 10]
            try:
                result = self._sqs.send_message_batch(
                    QueueUrl=self._queue_url,
                    Entries=[{"Id": str(index), "MessageBody": body} for index, (_, body) in enumerate(chunk)],
                )
            except Exception:
                logger.exception("webhook enqueue failed", extra={"endpoint_id": endpoint_id})
                failed.extend(event_id for event_id, _ in chunk)
                continue
            failed.extend(chunk[int(entry["Id"])][0] for entry in result.get("Failed", []))
        return failed

    def _release(self, organization_id: str, endpoint_id: str, event_id: str) -> None:
        try:
            self._store.release_event(organization_id, endpoint_id, event_id)
        except Exception:
            # The lease still runs out, after which the provider's retry takes the claim over.
            logger.exception("could not release a webhook claim", extra={"endpoint_id": endpoint_id})


def count(metrics: MetricSink, provider: str, status: int, outcome: Outcome | None) -> None:
    metrics.add_dimension("Provider", provider)
    if outcome is not None:
        metrics.add_metric("WebhookEventsAccepted", "Count", outcome.accepted)
        metrics.add_metric("WebhookEventsDuplicate", "Count", outcome.duplicates)
        metrics.add_metric("WebhookEventsIgnored", "Count", outcome.ignored)
    elif status in REFUSAL_METRICS:
        metrics.add_metric(REFUSAL_METRICS[status], "Count", 1)


def queue_message(doc: Mapping[str, Any], item: InboundEvent, received_at: float) -> str:
    """The SQS message of one event (the processor reads it back with QueuedEvent.from_body)."""
    event = ProviderEvent(doc["provider"], item.event_id, item.event_type, received_at, item.payload)
    return QueuedEvent(doc["organization_id"], doc["integration_id"], doc["endpoint_id"], event).to_body()


def _raw_body(event: Mapping[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body, validate=True)
    return str(body).encode("utf-8", "surrogatepass")


def _source_address(event: Mapping[str, Any]) -> str:
    """The caller's address as API Gateway saw it (not X-Forwarded-For, which the caller writes)."""
    return str(event.get("requestContext", {}).get("http", {}).get("sourceIp") or "unknown")[:64]


def _request_uri(event: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    """The URI the provider called, as HubSpot signs it: scheme, host, path and query."""
    scheme = headers.get("x-forwarded-proto", "https").split(",")[0].strip()
    host = headers.get("host") or event.get("requestContext", {}).get("domainName", "")
    query = event.get("rawQueryString") or ""
    return f"{scheme}://{host}{event.get('rawPath', '')}" + (f"?{query}" if query else "")
