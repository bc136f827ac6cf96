"""API keys: generation, hashing and the authorizer's lookup.

Standard library and a DynamoDB client only, so the authorizer's cold start stays small.
Keys carry 256 bits of randomness, so a single SHA-256 is a sound way to store them: there is
nothing to brute-force that a slow password hash would protect.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from churnguard.store.key_lookup import find_key

API_KEY_PREFIX = "cg_"
_API_KEY_SHAPE = re.compile(r"^cg_[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class Principal:
    organization_id: str
    key_id: str


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return f"key_{secrets.token_hex(6)}"


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    """The key from an `Authorization: Bearer <key>` header, if it has our key's shape."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _API_KEY_SHAPE.match(token):
        return None
    return token


def authenticate(dynamodb: Any, table_name: str, api_key: str) -> Principal | None:
    """The organisation a presented key belongs to, or None for unknown or revoked keys."""
    key_hash = hash_api_key(api_key)
    found = find_key(dynamodb, table_name, key_hash)
    if found is None or not hmac.compare_digest(found[0], key_hash):
        return None
    return Principal(organization_id=found[1], key_id=found[2])
