"""Salesforce Outbound Messages: a SOAP document of up to 100 Notifications, parsed with
defusedxml (no DTDs, entities or external references; imported on the first Salesforce
delivery). Salesforce cannot sign: the endpoint is bound to one Salesforce organisation id, which
every message must name, and may also carry a `?token=` secret. Salesforce wants a SOAP Ack."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from churnguard.inbound import parsing
from churnguard.inbound.parsing import MAX_EVENTS_PER_DELIVERY, InboundEvent, ParseError
from churnguard.inbound.scheme import Acknowledgement, Delivery, WebhookScheme
from churnguard.inbound.signatures import SignatureError, verify_token

NAMESPACE = "http://soap.sforce.com/2005/09/outbound"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
ACK = Acknowledgement(
    "text/xml; charset=utf-8",
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
    '<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack>'
    "</notificationsResponse></soapenv:Body></soapenv:Envelope>",
)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_body(body: bytes) -> tuple[str, list[InboundEvent]]:
    """The sending organisation's id and one event per Notification."""
    from xml.etree.ElementTree import ParseError as XmlParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, XmlParseError, ValueError):
        raise ParseError("the body is not an acceptable SOAP document") from None
    notifications = root.find(f".//{{{NAMESPACE}}}notifications")
    if notifications is None:
        raise ParseError("the SOAP body has no Outbound Message notifications")
    organization_id = (notifications.findtext(f"{{{NAMESPACE}}}OrganizationId") or "").strip()
    action_id = (notifications.findtext(f"{{{NAMESPACE}}}ActionId") or "").strip()
    events: list[InboundEvent] = []
    for notification in notifications.findall(f"{{{NAMESPACE}}}Notification"):
        notification_id = parsing.required_id(
            (notification.findtext(f"{{{NAMESPACE}}}Id") or "").strip(), "Notification Id"
        )
        sobject = notification.find(f"{{{NAMESPACE}}}sObject")
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


def _verify(delivery: Delivery) -> None:
    if delivery.endpoint.get("has_secret"):
        verify_token(delivery.query.get("token"), delivery.secrets())


def _parse(delivery: Delivery) -> list[InboundEvent]:
    organization, events = parse_body(delivery.body)
    expected = str(delivery.endpoint.get("salesforce_organization_id") or "")
    # Salesforce ids have a 15-character case-sensitive form and an 18-character one.
    if not expected or organization[:15] != expected[:15]:
        raise SignatureError("the Outbound Message comes from another Salesforce organisation")
    return events


def _endpoint_problem(endpoint: Mapping[str, Any]) -> str | None:
    return (
        None if endpoint.get("salesforce_organization_id") else "a salesforce endpoint needs salesforce_organization_id"
    )


SCHEME = WebhookScheme(
    verify=_verify, parse=_parse, needs_secret=False, acknowledgement=ACK, endpoint_problem=_endpoint_problem
)
