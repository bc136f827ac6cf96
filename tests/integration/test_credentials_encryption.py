"""Envelope encryption against moto's KMS, which enforces encryption contexts as AWS does."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from churnguard.crypto import CredentialCipher, encryption_context
from churnguard.errors import CredentialDecryptionError
from churnguard.wiring.services import integration_service
from tests.integration.conftest import ManagementApi

SECRET = "hubspot-private-app-token-THE-SECRET-1234"


def test_round_trip_under_the_same_context(aws: dict[str, Any]) -> None:
    cipher = CredentialCipher(aws["kms"], aws["key_arn"])
    envelope = cipher.encrypt({"api_key": SECRET}, encryption_context("org_a", "int_1"))
    assert SECRET not in json.dumps(envelope)
    assert cipher.decrypt(envelope, encryption_context("org_a", "int_1")) == {"api_key": SECRET}


@pytest.mark.parametrize("other", [("org_a", "int_2"), ("org_b", "int_1")])
def test_another_integration_or_organisation_cannot_decrypt(aws: dict[str, Any], other: tuple[str, str]) -> None:
    cipher = CredentialCipher(aws["kms"], aws["key_arn"])
    envelope = cipher.encrypt({"api_key": SECRET}, encryption_context("org_a", "int_1"))
    with pytest.raises(CredentialDecryptionError) as exc:
        cipher.decrypt(envelope, encryption_context(*other))
    assert SECRET not in str(exc.value)


def test_tampered_ciphertext_is_refused(aws: dict[str, Any]) -> None:
    cipher = CredentialCipher(aws["kms"], aws["key_arn"])
    envelope = cipher.encrypt({"api_key": SECRET}, encryption_context("org_a", "int_1"))
    sealed = bytearray(base64.b64decode(envelope["ciphertext"]))
    sealed[0] ^= 1
    envelope["ciphertext"] = base64.b64encode(bytes(sealed)).decode()
    with pytest.raises(CredentialDecryptionError):
        cipher.decrypt(envelope, encryption_context("org_a", "int_1"))


def test_each_write_uses_a_fresh_data_key(aws: dict[str, Any]) -> None:
    cipher = CredentialCipher(aws["kms"], aws["key_arn"])
    context = encryption_context("org_a", "int_1")
    first, second = cipher.encrypt({"k": "v"}, context), cipher.encrypt({"k": "v"}, context)
    assert first["encrypted_data_key"] != second["encrypted_data_key"]
    assert first["ciphertext"] != second["ciphertext"]


def test_a_credentials_item_copied_to_another_integration_does_not_decrypt(
    api: ManagementApi, aws: dict[str, Any]
) -> None:
    body = {"provider_name": "hubspot", "credentials": {"credential_type": "api_key", "api_key": SECRET}}
    victim = api.call("POST", "/api/integrations", body={"integration_name": "victim", **body}).body["integration_id"]
    attacker = api.call("POST", "/api/integrations", body={"integration_name": "attacker", **body}).body[
        "integration_id"
    ]
    db, table = aws["dynamodb"], aws["table"]
    stolen = db.get_item(TableName=table, Key={"pk": {"S": "ORG#org_a"}, "sk": {"S": f"CREDENTIALS#{victim}"}})["Item"]
    db.put_item(TableName=table, Item={**stolen, "sk": {"S": f"CREDENTIALS#{attacker}"}})

    service = integration_service()
    assert service.load_credentials("org_a", victim).api_key.get_secret_value() == SECRET  # type: ignore[union-attr]
    with pytest.raises(CredentialDecryptionError):
        service.load_credentials("org_a", attacker)
