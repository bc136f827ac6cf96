"""Page tokens that only this API can issue, bound to the organisation and the query they page.

A token is the last item's sort key and an HMAC-SHA256 tag (128 bits) over the organisation, the
query (which list, with which filters) and that key. A forged, altered or foreign token, or one
issued for other filters, fails the tag and is a 400 before anything is read.

The HMAC key is derived once per container from the stack's KMS HMAC key (PAGE_TOKEN_KEY_ID, a
GenerateMac over a fixed label), so the key material never lives in configuration and issuing or
reading a token costs no AWS call after the first.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from functools import lru_cache

from churnguard.errors import BadRequestError

TAG_BYTES = 16
_LABEL = b"churnguard/page-tokens/v1"
_NOT_ISSUED = "next_token is not a token this API issued for this query"


@lru_cache(maxsize=4)
def _derived_key(key_id: str) -> bytes:
    from churnguard import aws

    answer = aws.client("kms").generate_mac(KeyId=key_id, Message=_LABEL, MacAlgorithm="HMAC_SHA_256")
    return bytes(answer["Mac"])


def _key() -> bytes:
    from churnguard.config import env_str

    return _derived_key(env_str("PAGE_TOKEN_KEY_ID"))


def _tag(key: bytes, organization_id: str, query: str, sort_key: str) -> bytes:
    message = "\x00".join((organization_id, query, sort_key)).encode()
    return hmac.new(key, message, hashlib.sha256).digest()[:TAG_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(organization_id: str, query: str, sort_key: str) -> str:
    """The token that resumes `query` after `sort_key` for `organization_id`."""
    return f"{_b64(sort_key.encode())}.{_b64(_tag(_key(), organization_id, query, sort_key))}"


def read(token: str, organization_id: str, query: str, prefix: str) -> str:
    """The sort key in `token`, or BadRequestError unless this API issued it for this organisation
    and query (and the key is one of `prefix`'s items)."""
    body, _, tag = token.partition(".")
    try:
        sort_key = _unb64(body).decode()
        presented = _unb64(tag)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequestError(_NOT_ISSUED, {"field": "next_token"}) from None
    expected = _tag(_key(), organization_id, query, sort_key)
    if not hmac.compare_digest(expected, presented) or not sort_key.startswith(prefix):
        raise BadRequestError(_NOT_ISSUED, {"field": "next_token"})
    return sort_key
