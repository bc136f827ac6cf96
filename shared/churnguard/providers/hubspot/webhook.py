"""HubSpot's webhook scheme: v3 signatures (v1/v2 only where the endpoint opts in), a JSON array
of up to 100 events per delivery, each with its `eventId`."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence

from churnguard.inbound import parsing
from churnguard.inbound.parsing import InboundEvent
from churnguard.inbound.scheme import Delivery, WebhookScheme
from churnguard.inbound.signatures import (
    TOLERANCE_SECONDS,
    SignatureError,
    fresh,
    hmac_sha256,
    matches_any,
)

# HubSpot v3 signs the URI with these percent-escapes decoded.
_URI_DECODES = (
    ("%3A", ":"),
    ("%2F", "/"),
    ("%3F", "?"),
    ("%40", "@"),
    ("%21", "!"),
    ("%24", "$"),
    ("%27", "'"),
    ("%28", "("),
    ("%29", ")"),
    ("%2A", "*"),
    ("%2C", ","),
    ("%3B", ";"),
)


def signed_uri(uri: str) -> str:
    for encoded, decoded in _URI_DECODES:
        uri = uri.replace(encoded, decoded).replace(encoded.lower(), decoded)
    return uri


def verify_signature(
    body: bytes,
    headers: Mapping[str, str],
    *,
    method: str,
    uri: str,
    secrets: Sequence[str],
    now: float,
    allow_legacy: bool,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """v3: base64 HMAC-SHA256 of method + URI + body + timestamp (ms, within 5 minutes).
    v1/v2 (SHA-256 of secret + body, or + method + URI + body) only when the endpoint opts in."""
    v3 = headers.get("x-hubspot-signature-v3")
    if v3 is not None:
        timestamp = headers.get("x-hubspot-request-timestamp")
        t = fresh(timestamp, now, tolerance, scale=1000)
        message = method.upper().encode() + signed_uri(uri).encode() + body + str(t).encode()
        expected = [base64.b64encode(hmac_sha256(secret.encode(), message)) for secret in secrets]
        if not matches_any(expected, [v3.strip().encode()]):
            raise SignatureError("no HubSpot v3 signature matches")
        return
    legacy = headers.get("x-hubspot-signature")
    if legacy is None:
        raise SignatureError("the X-HubSpot-Signature-v3 header is missing")
    if not allow_legacy:
        raise SignatureError("this endpoint accepts HubSpot v3 signatures only")
    version = headers.get("x-hubspot-signature-version", "v1").strip().lower()
    if version == "v1":
        messages = [secret.encode() + body for secret in secrets]
    elif version == "v2":
        messages = [secret.encode() + method.upper().encode() + uri.encode() + body for secret in secrets]
    else:
        raise SignatureError("unknown X-HubSpot-Signature-Version")
    expected = [hashlib.sha256(message).hexdigest().encode() for message in messages]
    if not matches_any(expected, [legacy.strip().lower().encode()]):
        raise SignatureError("no HubSpot signature matches")


def parse_body(body: bytes) -> list[InboundEvent]:
    return [
        InboundEvent(
            parsing.required_id(item.get("eventId"), "eventId"),
            parsing.event_type_of(item.get("subscriptionType")),
            item,
        )
        for item in parsing.event_objects(parsing.load_json(body), "a HubSpot delivery")
    ]


def _verify(delivery: Delivery) -> None:
    verify_signature(
        delivery.body,
        delivery.headers,
        method=delivery.method or "POST",
        uri=delivery.uri,
        secrets=delivery.secrets(),
        now=delivery.now,
        allow_legacy=bool(delivery.endpoint.get("hubspot_allow_legacy_signatures")),
    )


SCHEME = WebhookScheme(verify=_verify, parse=lambda delivery: parse_body(delivery.body))
