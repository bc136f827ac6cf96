"""Signature schemes of the webhook providers, verified over the raw body exactly as received.

Every comparison of a secret-derived value is constant-time and runs against every candidate
secret (current and, during a rotation's grace period, previous) without stopping at the first
match, so timing reveals neither which secret matched nor how much of a signature was right.
Timestamps outside the tolerance are refused, which turns a captured delivery into a useless
replay once the window has passed (and the dedupe claim covers replays inside it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

TOLERANCE_SECONDS = 300
_TIMESTAMP = re.compile(r"[0-9]{1,16}")
# HubSpot v3 signs the URI with these percent-escapes decoded.
_HUBSPOT_URI_DECODES = (
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


class SignatureError(Exception):
    """The delivery is not authentic (or not fresh). The message names the reason, never a secret."""


def _matches_any(expected: Sequence[bytes], presented: Sequence[bytes]) -> bool:
    matched = False
    for candidate in expected:
        for signature in presented:
            matched |= hmac.compare_digest(candidate, signature)
    return matched


def _hmac(secret: bytes, message: bytes) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).digest()


def _fresh(timestamp: str | None, now: float, tolerance: int, *, scale: int = 1) -> int:
    # ASCII digits only: str.isdigit() and int() also take superscripts and other scripts' digits.
    if timestamp is None or not _TIMESTAMP.fullmatch(timestamp.strip()):
        raise SignatureError("the signature timestamp is missing or malformed")
    value = int(timestamp.strip())
    if abs(now - value / scale) > tolerance:
        raise SignatureError("the signature timestamp is outside the tolerance")
    return value


def verify_stripe(
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
    t = _fresh(timestamp, now, tolerance)
    signed = f"{t}.".encode() + body
    expected = [_hmac(secret.encode(), signed).hex().encode() for secret in secrets]
    if not _matches_any(expected, presented):
        raise SignatureError("no Stripe signature matches")


def hubspot_uri(uri: str) -> str:
    for encoded, decoded in _HUBSPOT_URI_DECODES:
        uri = uri.replace(encoded, decoded).replace(encoded.lower(), decoded)
    return uri


def verify_hubspot(
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
        t = _fresh(timestamp, now, tolerance, scale=1000)
        message = method.upper().encode() + hubspot_uri(uri).encode() + body + str(t).encode()
        expected = [base64.b64encode(_hmac(secret.encode(), message)) for secret in secrets]
        if not _matches_any(expected, [v3.strip().encode()]):
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
    if not _matches_any(expected, [legacy.strip().lower().encode()]):
        raise SignatureError("no HubSpot signature matches")


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


def check_sendgrid_public_key(public_key: str) -> None:
    """Raises ValueError unless `public_key` is an ECDSA P-256 key (base64 DER or PEM)."""
    try:
        _ec_public_key(public_key)
    except (ValueError, binascii.Error, TypeError) as exc:
        raise ValueError("must be SendGrid's ECDSA P-256 verification key (base64 DER or PEM)") from exc


def verify_sendgrid(
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
    _fresh(timestamp, now, tolerance)
    try:
        decoded = base64.b64decode(signature, validate=True)
        _ec_public_key(public_key).verify(decoded, str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        raise SignatureError("the SendGrid signature does not verify") from None


def verify_token(presented: str | None, secrets: Sequence[str]) -> None:
    """A shared secret in the URL (`?token=`), for providers that cannot sign (Mailchimp)."""
    if not presented:
        raise SignatureError("the token query parameter is missing")
    expected = [hashlib.sha256(secret.encode()).digest() for secret in secrets]
    if not _matches_any(expected, [hashlib.sha256(presented.encode()).digest()]):
        raise SignatureError("the token does not match")


def standard_webhooks_key(secret: str) -> bytes:
    """A `whsec_<base64>` secret's key bytes."""
    encoded = secret.removeprefix("whsec_")
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4))


def verify_standard_webhooks(
    body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: float, tolerance: int = TOLERANCE_SECONDS
) -> None:
    """Standard Webhooks: `webhook-signature: v1,<base64> v1,<base64>` over `"{id}.{timestamp}.{body}"`."""
    message_id = headers.get("webhook-id")
    header = headers.get("webhook-signature")
    if not message_id or not header or len(header) > 4096 or len(message_id) > 256:
        raise SignatureError("the webhook-id or webhook-signature header is missing")
    t = _fresh(headers.get("webhook-timestamp"), now, tolerance)
    presented = []
    for part in header.split(" "):
        version, sep, signature = part.partition(",")
        if sep and version == "v1":
            presented.append(signature.encode())
    signed = f"{message_id}.{t}.".encode() + body
    expected = [base64.b64encode(_hmac(standard_webhooks_key(secret), signed)) for secret in secrets]
    if not _matches_any(expected, presented):
        raise SignatureError("no webhook-signature matches")


def verify_hmac_header(
    body: bytes, presented: str | None, secrets: Sequence[str], *, encoding: str, prefix: str = ""
) -> None:
    """A configured header carrying HMAC-SHA256 of the body, hex or base64, after an optional prefix."""
    if not presented or len(presented) > 1024:
        raise SignatureError("the signature header is missing")
    value = presented.strip()
    if prefix:
        if not value.startswith(prefix):
            raise SignatureError("the signature header lacks its prefix")
        value = value[len(prefix) :]
    digests = [_hmac(secret.encode(), body) for secret in secrets]
    if encoding == "base64":
        expected = [base64.b64encode(digest) for digest in digests]
    else:
        expected = [digest.hex().encode() for digest in digests]
        value = value.lower()
    if not _matches_any(expected, [value.encode()]):
        raise SignatureError("the signature does not match")
