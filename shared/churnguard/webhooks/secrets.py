"""An endpoint's signing secrets: sealed with KMS, current and (during a rotation) previous.

The envelope decrypts only under {organization_id, endpoint_id}, so a ciphertext copied to another
endpoint is useless. After a rotation the previous secret keeps verifying until its grace period
ends, so deliveries signed just before the provider switched are not refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from churnguard.crypto import CredentialCipher
from churnguard.store.webhooks import StoredEndpoint


def secret_context(organization_id: str, endpoint_id: str) -> dict[str, str]:
    return {"organization_id": organization_id, "endpoint_id": endpoint_id}


def active_secrets(plaintext: dict[str, Any], now: float) -> list[str]:
    secrets = [str(plaintext["current"])] if plaintext.get("current") else []
    previous, until = plaintext.get("previous"), plaintext.get("previous_expires_at")
    if previous and until is not None and now < float(until):
        secrets.append(str(previous))
    return secrets


class SecretResolver:
    """Decrypts an endpoint's secrets once per endpoint version (a rotation bumps the version)."""

    def __init__(self, cipher: CredentialCipher, clock: Callable[[], float] = time.time) -> None:
        self._cipher = cipher
        self._clock = clock
        self._cache: dict[tuple[str, str, int], dict[str, Any]] = {}

    def __call__(self, stored: StoredEndpoint) -> list[str]:
        doc = stored.doc
        cache_key = (doc["organization_id"], doc["endpoint_id"], stored.version)
        plaintext = self._cache.get(cache_key)
        if plaintext is None:
            if len(self._cache) > 256:
                self._cache.clear()
            plaintext = self._cipher.decrypt(
                stored.envelope, secret_context(doc["organization_id"], doc["endpoint_id"])
            )
            self._cache[cache_key] = plaintext
        return active_secrets(plaintext, self._clock())
