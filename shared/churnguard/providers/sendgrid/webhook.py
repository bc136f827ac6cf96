"""SendGrid's Event Webhook scheme: an ECDSA P-256 signature over timestamp + body (the endpoint
holds SendGrid's public key, no shared secret), a JSON array of events, each with `sg_event_id`.
cryptography is imported on the first SendGrid delivery, never on the receiver's cold start."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from churnguard.inbound import parsing
from churnguard.inbound.parsing import InboundEvent
from churnguard.inbound.scheme import Delivery, WebhookScheme
from churnguard.inbound.signatures import TOLERANCE_SECONDS, SignatureError, fresh


@lru_cache(maxsize=64)
def _ec_public_key(public_key: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

    text = public_key.strip()
    key = (
        load_pem_public_key(text.encode()) if text.startswith("-----") else load_der_public_key(base64.b64decode(text))
    )
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 public key")
    return key


def check_public_key(public_key: str) -> None:
    """Raises ValueError unless `public_key` is an ECDSA P-256 key (base64 DER or PEM)."""
    try:
        _ec_public_key(public_key)
    except (ValueError, binascii.Error, TypeError) as exc:
        raise ValueError("must be SendGrid's ECDSA P-256 verification key (base64 DER or PEM)") from exc


def verify_signature(
    body: bytes, headers: Mapping[str, str], public_key: str, now: float, tolerance: int = TOLERANCE_SECONDS
) -> None:
    """ECDSA P-256/SHA-256 over timestamp + body (the Event Webhook's signed delivery)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    signature = headers.get("x-twilio-email-event-webhook-signature")
    timestamp = headers.get("x-twilio-email-event-webhook-timestamp")
    if not signature or len(signature) > 512:
        raise SignatureError("the X-Twilio-Email-Event-Webhook-Signature header is missing")
    fresh(timestamp, now, tolerance)
    try:
        decoded = base64.b64decode(signature, validate=True)
        _ec_public_key(public_key).verify(decoded, str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        raise SignatureError("the SendGrid signature does not verify") from None


def parse_body(body: bytes) -> list[InboundEvent]:
    return [
        InboundEvent(
            parsing.required_id(item.get("sg_event_id"), "sg_event_id"), parsing.event_type_of(item.get("event")), item
        )
        for item in parsing.event_objects(parsing.load_json(body), "a SendGrid delivery")
    ]


def _verify(delivery: Delivery) -> None:
    verify_signature(
        delivery.body, delivery.headers, str(delivery.endpoint.get("sendgrid_public_key") or ""), delivery.now
    )


def _endpoint_problem(endpoint: Mapping[str, Any]) -> str | None:
    if endpoint.get("sendgrid_public_key"):
        return None
    return "a sendgrid endpoint needs sendgrid_public_key (the Event Webhook verification key)"


SCHEME = WebhookScheme(
    verify=_verify,
    parse=lambda delivery: parse_body(delivery.body),
    needs_secret=False,
    endpoint_problem=_endpoint_problem,
)
