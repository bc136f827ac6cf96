"""What signature schemes share: constant-time comparison, freshness, the token and generic HMAC
schemes, and Standard Webhooks. Every check runs over the raw body exactly as received.

Every comparison of a secret-derived value is constant-time and runs against every candidate
secret (current and, during a rotation's grace period, previous) without stopping at the first
match, so timing reveals neither which secret matched nor how much of a signature was right.
Timestamps outside the tolerance are refused, which turns a captured delivery into a useless
replay once the window has passed (and the dedupe claim covers replays inside it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

TOLERANCE_SECONDS = 300
_TIMESTAMP = re.compile(r"[0-9]{1,16}")


class SignatureError(Exception):
    """The delivery is not authentic (or not fresh). The message names the reason, never a secret."""


def matches_any(expected: Sequence[bytes], presented: Sequence[bytes]) -> bool:
    matched = False
    for candidate in expected:
        for signature in presented:
            matched |= hmac.compare_digest(candidate, signature)
    return matched


def hmac_sha256(secret: bytes, message: bytes) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).digest()


def fresh(timestamp: str | None, now: float, tolerance: int, *, scale: int = 1) -> int:
    # ASCII digits only: str.isdigit() and int() also take superscripts and other scripts' digits.
    if timestamp is None or not _TIMESTAMP.fullmatch(timestamp.strip()):
        raise SignatureError("the signature timestamp is missing or malformed")
    value = int(timestamp.strip())
    if abs(now - value / scale) > tolerance:
        raise SignatureError("the signature timestamp is outside the tolerance")
    return value


def verify_token(presented: str | None, secrets: Sequence[str]) -> None:
    """A shared secret in the URL (`?token=`), for providers that cannot sign (Mailchimp)."""
    if not presented:
        raise SignatureError("the token query parameter is missing")
    expected = [hashlib.sha256(secret.encode()).digest() for secret in secrets]
    if not matches_any(expected, [hashlib.sha256(presented.encode()).digest()]):
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
    t = fresh(headers.get("webhook-timestamp"), now, tolerance)
    presented = []
    for part in header.split(" "):
        version, sep, signature = part.partition(",")
        if sep and version == "v1":
            presented.append(signature.encode())
    signed = f"{message_id}.{t}.".encode() + body
    expected = [base64.b64encode(hmac_sha256(standard_webhooks_key(secret), signed)) for secret in secrets]
    if not matches_any(expected, presented):
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
    digests = [hmac_sha256(secret.encode(), body) for secret in secrets]
    if encoding == "base64":
        expected = [base64.b64encode(digest) for digest in digests]
    else:
        expected = [digest.hex().encode() for digest in digests]
        value = value.lower()
    if not matches_any(expected, [value.encode()]):
        raise SignatureError("the signature does not match")
