"""Stripe's webhook scheme: `Stripe-Signature` over the raw body, one event object per delivery."""

from __future__ import annotations

from collections.abc import Sequence

from churnguard.inbound import parsing
from churnguard.inbound.parsing import InboundEvent, ParseError
from churnguard.inbound.scheme import Delivery, WebhookScheme
from churnguard.inbound.signatures import (
    TOLERANCE_SECONDS,
    SignatureError,
    fresh,
    hmac_sha256,
    matches_any,
)


def verify_signature(
    body: bytes, header: str | None, secrets: Sequence[str], now: float, tolerance: int = TOLERANCE_SECONDS
) -> None:
    """`Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`: HMAC-SHA256 of `"{t}.{body}"`."""
    if not header or len(header) > 4096:
        raise SignatureError("the Stripe-Signature header is missing")
    timestamp: str | None = None
    presented: list[bytes] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            timestamp = value
        elif name == "v1":
            presented.append(value.encode())
    if not presented:
        raise SignatureError("the Stripe-Signature header has no v1 signature")
    t = fresh(timestamp, now, tolerance)
    signed = f"{t}.".encode() + body
    expected = [hmac_sha256(secret.encode(), signed).hex().encode() for secret in secrets]
    if not matches_any(expected, presented):
        raise SignatureError("no Stripe signature matches")


def parse_body(body: bytes) -> list[InboundEvent]:
    event = parsing.load_json(body)
    if not isinstance(event, dict) or event.get("object") not in (None, "event"):
        raise ParseError("a Stripe delivery is one event object")
    return [
        InboundEvent(
            parsing.required_id(event.get("id"), "the event id"), parsing.event_type_of(event.get("type")), event
        )
    ]


def _verify(delivery: Delivery) -> None:
    verify_signature(delivery.body, delivery.headers.get("stripe-signature"), delivery.secrets(), delivery.now)


SCHEME = WebhookScheme(verify=_verify, parse=lambda delivery: parse_body(delivery.body))
