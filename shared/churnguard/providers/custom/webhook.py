"""Custom webhooks: any JSON event, signed with Standard Webhooks (`webhook-id`,
`webhook-timestamp`, `webhook-signature`) or with an HMAC-SHA256 of the body in a header the
endpoint names (hex or base64, after an optional prefix)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from churnguard.inbound import parsing
from churnguard.inbound.parsing import InboundEvent, ParseError
from churnguard.inbound.scheme import Delivery, WebhookScheme
from churnguard.inbound.signatures import verify_hmac_header, verify_standard_webhooks


def parse_body(body: bytes, headers: Mapping[str, str], options: Mapping[str, Any]) -> list[InboundEvent]:
    """One JSON event. Its id: the Standard Webhooks `webhook-id`, else the configured field,
    else the body's digest; its type: the configured field (default `type`)."""
    event = parsing.load_json(body)
    if not isinstance(event, dict):
        raise ParseError("a custom delivery is one JSON object")
    event_id: str
    if options.get("custom_scheme") == "standard_webhooks" and headers.get("webhook-id"):
        event_id = parsing.required_id(headers["webhook-id"], "webhook-id")
    elif options.get("event_id_field"):
        field = str(options["event_id_field"])
        event_id = parsing.required_id(parsing.lookup(event, field), field)
    else:
        event_id = parsing.body_digest(body)
    event_type = parsing.event_type_of(parsing.lookup(event, str(options.get("event_type_field") or "type")))
    return [InboundEvent(event_id, event_type, event)]


def _verify(delivery: Delivery) -> None:
    endpoint = delivery.endpoint
    if endpoint.get("custom_scheme") == "hmac_sha256":
        verify_hmac_header(
            delivery.body,
            delivery.headers.get(str(endpoint.get("signature_header") or "").lower()),
            delivery.secrets(),
            encoding=str(endpoint.get("signature_encoding") or "hex"),
            prefix=str(endpoint.get("signature_prefix") or ""),
        )
    else:
        verify_standard_webhooks(delivery.body, delivery.headers, delivery.secrets(), delivery.now)


def _endpoint_problem(endpoint: Mapping[str, Any]) -> str | None:
    if endpoint.get("custom_scheme") == "hmac_sha256" and not endpoint.get("signature_header"):
        return "custom_scheme hmac_sha256 needs signature_header"
    return None


SCHEME = WebhookScheme(
    verify=_verify,
    parse=lambda delivery: parse_body(delivery.body, delivery.headers, delivery.endpoint),
    endpoint_problem=_endpoint_problem,
)
