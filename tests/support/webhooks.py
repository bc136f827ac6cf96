"""Signed webhook deliveries made with the providers' own code where it exists.

Stripe: the `stripe` SDK's `WebhookSignature.generate_signature_header`; Standard Webhooks: the
`standardwebhooks` library; SendGrid: a P-256 key pair and ECDSA signatures from `cryptography`
(what SendGrid's own verifier checks). HubSpot and Mailchimp ship no signing helper: HubSpot v3 is
computed here from HubSpot's documented recipe, Mailchimp uses a URL token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

STRIPE_SECRET = "whsec_test_" + "s" * 32
STANDARD_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-test-key-32byt").decode()
HUBSPOT_SECRET = "hubspot-client-secret-0123456789"
MAILCHIMP_TOKEN = "mailchimp-url-token-0123456789ab"
SALESFORCE_ORG = "00D000000000062EAA"
# A "billion laughs" SOAP body: entity expansion that would blow up a naive parser.
XML_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>&lol3;</OrganizationId>
</notifications></soapenv:Body></soapenv:Envelope>"""


def stripe_header(body: bytes, secret: str = STRIPE_SECRET, timestamp: int | None = None) -> str:
    import stripe

    return str(stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=timestamp))


def standard_headers(
    body: bytes, secret: str = STANDARD_SECRET, *, msg_id: str | None = None, at: float | None = None
) -> dict[str, str]:
    from standardwebhooks.webhooks import Webhook

    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    moment = datetime.fromtimestamp(at if at is not None else time.time(), UTC)
    signature = Webhook(secret).sign(msg_id, moment, body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(moment.timestamp())), "webhook-signature": signature}


def hubspot_v3_headers(
    body: bytes, uri: str, secret: str = HUBSPOT_SECRET, method: str = "POST", at_ms: int | None = None
) -> dict[str, str]:
    timestamp = str(at_ms if at_ms is not None else int(time.time() * 1000))
    digest = hmac.new(secret.encode(), method.encode() + uri.encode() + body + timestamp.encode(), hashlib.sha256)
    return {
        "X-HubSpot-Signature-v3": base64.b64encode(digest.digest()).decode(),
        "X-HubSpot-Request-Timestamp": timestamp,
    }


@dataclass
class SendGridKeys:
    private_key: Any
    public_key_b64: str

    @classmethod
    def generate(cls) -> SendGridKeys:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        private_key = ec.generate_private_key(ec.SECP256R1())
        der = private_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return cls(private_key, base64.b64encode(der).decode())

    def headers(self, body: bytes, at: int | None = None) -> dict[str, str]:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        timestamp = str(at if at is not None else int(time.time()))
        signature = self.private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }


def stripe_event(event_id: str, event_type: str, obj: dict[str, Any], created: int | None = None) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": created if created is not None else int(time.time()),
            "data": {"object": obj},
        }
    ).encode()


def salesforce_message(
    notifications: list[tuple[str, str, dict[str, str]]], organization_id: str = SALESFORCE_ORG
) -> bytes:
    items = "".join(
        f'<Notification><Id>{nid}</Id><sObject xsi:type="sf:{kind}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        + "".join(f"<sf:{k}>{v}</sf:{k}>" for k, v in fields.items())
        + "</sObject></Notification>"
        for nid, kind, fields in notifications
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{organization_id}</OrganizationId><ActionId>04k000000000001AAA</ActionId>"
        f"{items}</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def mailchimp_form(event_type: str, email: str, fired_at: str = "2026-01-02 03:04:05", **extra: str) -> bytes:
    fields = {"type": event_type, "fired_at": fired_at, "data[email]": email, "data[list_id]": "a6b5da1054", **extra}
    return urlencode(fields).encode()


def webhook_event(
    method: str,
    provider: str,
    organization_id: str,
    body: bytes = b"",
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    content_type: str = "application/json",
    base64_body: bool = False,
    host: str = "hooks.example.com",
    source_ip: str = "198.51.100.7",
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event for the webhook routes."""
    path = f"/webhooks/{provider}/{organization_id}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} /webhooks/{{provider}}/{{organization_id}}",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": {
            "content-type": content_type,
            "host": host,
            "x-forwarded-proto": "https",
            **{k.lower(): v for k, v in (headers or {}).items()},
        },
        "requestContext": {
            "domainName": host,
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": "test",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": f"{method} /webhooks/{{provider}}/{{organization_id}}",
            "stage": "$default",
        },
        "pathParameters": {"provider": provider, "organization_id": organization_id},
        "isBase64Encoded": base64_body,
    }
    if query:
        event["queryStringParameters"] = query
    if body:
        event["body"] = base64.b64encode(body).decode() if base64_body else body.decode("utf-8", "surrogateescape")
    return event
