"""Envelope encryption of integration credentials with KMS.

KMS issues a fresh AES-256 data key per write under an encryption context of
{organization_id, integration_id}; the credentials are sealed locally with AES-GCM using that key
and the same context as associated data. A ciphertext copied to another integration (or another
organisation) fails both checks: KMS refuses to unwrap the data key under a different context,
and GCM would reject the associated data even if it did.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any, Protocol

from churnguard.errors import CredentialDecryptionError

ENVELOPE_VERSION = 1
_NONCE_BYTES = 12


class KmsClient(Protocol):
    def generate_data_key(self, **kwargs: Any) -> dict[str, Any]: ...

    def decrypt(self, **kwargs: Any) -> dict[str, Any]: ...


def encryption_context(organization_id: str, integration_id: str) -> dict[str, str]:
    return {"organization_id": organization_id, "integration_id": integration_id}


def _aad(context: dict[str, str]) -> bytes:
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode()


class CredentialCipher:
    def __init__(self, kms: KmsClient, key_id: str) -> None:
        self._kms = kms
        self._key_id = key_id

    def encrypt(self, plaintext: dict[str, Any], context: dict[str, str]) -> dict[str, Any]:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        data_key = self._kms.generate_data_key(KeyId=self._key_id, KeySpec="AES_256", EncryptionContext=context)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(data_key["Plaintext"]).encrypt(
            nonce, json.dumps(plaintext, separators=(",", ":")).encode(), _aad(context)
        )
        return {
            "v": ENVELOPE_VERSION,
            "kms_key_id": data_key["KeyId"],
            "encrypted_data_key": base64.b64encode(data_key["CiphertextBlob"]).decode(),
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(sealed).decode(),
        }

    def decrypt(self, envelope: dict[str, Any], context: dict[str, str]) -> dict[str, Any]:
        from botocore.exceptions import ClientError
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if envelope.get("v") != ENVELOPE_VERSION:
            raise CredentialDecryptionError("stored credentials use an unknown envelope version")
        try:
            data_key = self._kms.decrypt(
                CiphertextBlob=base64.b64decode(envelope["encrypted_data_key"]),
                EncryptionContext=context,
                KeyId=envelope["kms_key_id"],
            )
            opened = AESGCM(data_key["Plaintext"]).decrypt(
                base64.b64decode(envelope["nonce"]), base64.b64decode(envelope["ciphertext"]), _aad(context)
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            raise CredentialDecryptionError(
                "stored credentials could not be decrypted for this integration", {"kms_error": code}
            ) from None
        except (InvalidTag, KeyError, ValueError):
            raise CredentialDecryptionError("stored credentials could not be decrypted for this integration") from None
        document: dict[str, Any] = json.loads(opened)
        return document
