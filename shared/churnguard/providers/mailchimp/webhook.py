"""Mailchimp's webhook scheme. Mailchimp cannot sign: the endpoint's URL carries a secret
`?token=`, checked in constant time, on deliveries and on the GET Mailchimp sends to check a URL
before it saves it. One form-encoded event per delivery, with no id: the body's digest is its id."""

from __future__ import annotations

from urllib.parse import parse_qsl

from churnguard.inbound import parsing
from churnguard.inbound.parsing import InboundEvent, ParseError
from churnguard.inbound.scheme import Delivery, WebhookScheme
from churnguard.inbound.signatures import verify_token


def parse_body(body: bytes) -> list[InboundEvent]:
    try:
        pairs = parse_qsl(parsing.utf8(body), keep_blank_values=True, strict_parsing=True, max_num_fields=500)
    except ValueError:
        raise ParseError("the body is not form-encoded") from None
    payload = parsing.form_to_nested(pairs)
    if not isinstance(payload.get("type"), str):
        raise ParseError("a Mailchimp delivery needs a type")
    return [InboundEvent(parsing.body_digest(body), parsing.event_type_of(payload["type"]), payload)]


def _verify(delivery: Delivery) -> None:
    verify_token(delivery.query.get("token"), delivery.secrets())


SCHEME = WebhookScheme(verify=_verify, parse=lambda delivery: parse_body(delivery.body), answers_validation_get=True)
