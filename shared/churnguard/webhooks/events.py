"""Turning a verified delivery into provider events: what each carries as id, type and payload.

Parsing is defensive: bodies must be UTF-8, JSON may nest at most MAX_JSON_DEPTH levels (deeper
documents cannot be written to the lake and would only fail later), SOAP is parsed with
defusedxml (no DTDs, entities or external references). A malformed delivery is a ParseError,
which the receiver answers with 400 before anything is enqueued.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from churnguard.jsontext import JsonTextError, loads_strict

MAX_JSON_DEPTH = 64
MAX_EVENTS_PER_DELIVERY = 1000
MAX_EVENT_ID_LENGTH = 200
SALESFORCE_NS = "http://soap.sforce.com/2005/09/outbound"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


class ParseError(Exception):
    """The delivery is authentic but not well-formed for its provider."""


@dataclass(frozen=True)
class InboundEvent:
    event_id: str
    event_type: str
    payload: Any


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("the body is not UTF-8") from None


def _check_depth(document: Any) -> None:
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ParseError(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


def load_json(body: bytes) -> Any:
    try:
        document = loads_strict(body)
    except RecursionError:
        raise ParseError(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels") from None
    except JsonTextError as exc:
        raise ParseError(f"the body {exc}") from None
    _check_depth(document)
    return document


def _event_id(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise ParseError(f"{what} is missing")
    text = str(value)
    if len(text) > MAX_EVENT_ID_LENGTH:
        raise ParseError(f"{what} is too long")
    return text


def _event_type(value: Any) -> str:
    return value[:200] if isinstance(value, str) and value else "unknown"


def _objects(document: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(document, list) or not document:
        raise ParseError(f"{what} must be a non-empty JSON array of events")
    if len(document) > MAX_EVENTS_PER_DELIVERY:
        raise ParseError(f"a delivery may carry at most {MAX_EVENTS_PER_DELIVERY} events")
    if not all(isinstance(item, dict) for item in document):
        raise ParseError(f"every element of {what} must be an object")
    return document


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def parse_stripe(body: bytes) -> list[InboundEvent]:
    event = load_json(body)
    if not isinstance(event, dict) or event.get("object") not in (None, "event"):
        raise ParseError("a Stripe delivery is one event object")
    return [InboundEvent(_event_id(event.get("id"), "the event id"), _event_type(event.get("type")), event)]


def parse_hubspot(body: bytes) -> list[InboundEvent]:
    return [
        InboundEvent(_event_id(item.get("eventId"), "eventId"), _event_type(item.get("subscriptionType")), item)
        for item in _objects(load_json(body), "a HubSpot delivery")
    ]


def parse_sendgrid(body: bytes) -> list[InboundEvent]:
    return [
        InboundEvent(_event_id(item.get("sg_event_id"), "sg_event_id"), _event_type(item.get("event")), item)
        for item in _objects(load_json(body), "a SendGrid delivery")
    ]


def form_to_nested(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`data[merges][FNAME]=Ann` → {"data": {"merges": {"FNAME": "Ann"}}} (Mailchimp's form shape)."""
    result: dict[str, Any] = {}
    for raw_key, value in pairs:
        head, _, rest = raw_key.partition("[")
        parts = [head] + [part.rstrip("]") for part in rest.split("[")] if rest else [head]
        if len(parts) > 8:
            raise ParseError("a form field nests too deeply")
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ParseError("a form field is both a value and a group")
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise ParseError("a form field is both a value and a group")
        node[parts[-1]] = value
    return result


def parse_mailchimp(body: bytes) -> list[InboundEvent]:
    """Mailchimp posts one form-encoded event and sends no id: the body's digest identifies it."""
    try:
        pairs = parse_qsl(_text(body), keep_blank_values=True, strict_parsing=True, max_num_fields=500)
    except ValueError:
        raise ParseError("the body is not form-encoded") from None
    payload = form_to_nested(pairs)
    if not isinstance(payload.get("type"), str):
        raise ParseError("a Mailchimp delivery needs a type")
    return [InboundEvent(body_digest(body), _event_type(payload["type"]), payload)]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_salesforce(body: bytes) -> tuple[str, list[InboundEvent]]:
    """A Salesforce Outbound Message: the sending organisation's id and one event per Notification."""
    from xml.etree.ElementTree import ParseError as XmlParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, XmlParseError, ValueError):
        raise ParseError("the body is not an acceptable SOAP document") from None
    notifications = root.find(f".//{{{SALESFORCE_NS}}}notifications")
    if notifications is None:
        raise ParseError("the SOAP body has no Outbound Message notifications")
    organization_id = (notifications.findtext(f"{{{SALESFORCE_NS}}}OrganizationId") or "").strip()
    action_id = (notifications.findtext(f"{{{SALESFORCE_NS}}}ActionId") or "").strip()
    events: list[InboundEvent] = []
    for notification in notifications.findall(f"{{{SALESFORCE_NS}}}Notification"):
        notification_id = _event_id((notification.findtext(f"{{{SALESFORCE_NS}}}Id") or "").strip(), "Notification Id")
        sobject = notification.find(f"{{{SALESFORCE_NS}}}sObject")
        if sobject is None:
            raise ParseError("a Notification has no sObject")
        object_type = _local(sobject.get(XSI_TYPE, "sObject")).split(":")[-1]
        fields = {_local(child.tag): (child.text or "") for child in sobject if len(child) == 0}
        payload = {"action_id": action_id, "object_type": object_type, "fields": fields}
        events.append(InboundEvent(notification_id, object_type, payload))
    if not events:
        raise ParseError("the Outbound Message carries no Notification")
    if len(events) > MAX_EVENTS_PER_DELIVERY:
        raise ParseError(f"a delivery may carry at most {MAX_EVENTS_PER_DELIVERY} events")
    return organization_id, events


def lookup(document: Any, path: str) -> Any:
    """A dotted path into nested objects (`data.object.id`); None when absent."""
    node = document
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def parse_custom(body: bytes, headers: Mapping[str, str], options: Mapping[str, Any]) -> list[InboundEvent]:
    """One JSON event. Its id: the Standard Webhooks `webhook-id`, else the configured field,
    else the body's digest; its type: the configured field (default `type`)."""
    event = load_json(body)
    if not isinstance(event, dict):
        raise ParseError("a custom delivery is one JSON object")
    event_id: str
    if options.get("custom_scheme") == "standard_webhooks" and headers.get("webhook-id"):
        event_id = _event_id(headers["webhook-id"], "webhook-id")
    elif options.get("event_id_field"):
        event_id = _event_id(lookup(event, str(options["event_id_field"])), str(options["event_id_field"]))
    else:
        event_id = body_digest(body)
    event_type = _event_type(lookup(event, str(options.get("event_type_field") or "type")))
    return [InboundEvent(event_id, event_type, event)]
