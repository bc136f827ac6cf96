"""Store-level guarantees that the API relies on: optimistic concurrency and atomic writes."""

from __future__ import annotations

from typing import Any

import pytest

from churnguard.errors import ConflictError
from churnguard.models import IntegrationConfiguration
from churnguard.store.integrations import IntegrationStore


def _config(**extra: Any) -> IntegrationConfiguration:
    return IntegrationConfiguration(
        organization_id="org_a", integration_name="Billing", provider_name="stripe", **extra
    )  # type: ignore[arg-type]


def test_a_stale_update_loses_instead_of_overwriting(aws: dict[str, Any]) -> None:
    store = IntegrationStore(aws["dynamodb"], aws["table"])
    original = _config()
    store.create(original, None)
    first = original.model_copy(update={"version": 2, "tags": ["first"]})
    second = original.model_copy(update={"version": 2, "tags": ["second"]})
    store.update(original, first)
    with pytest.raises(ConflictError) as exc:
        store.update(original, second)
    assert exc.value.details == {"reason": "concurrent_modification"}
    assert store.get("org_a", original.integration_id).tags == ["first"]


def test_a_stale_delete_loses_too(aws: dict[str, Any]) -> None:
    store = IntegrationStore(aws["dynamodb"], aws["table"])
    original = _config()
    store.create(original, None)
    store.update(original, original.model_copy(update={"version": 2}))
    with pytest.raises(ConflictError):
        store.delete(original)
    assert store.get("org_a", original.integration_id).version == 2


def test_a_failed_create_writes_nothing(aws: dict[str, Any]) -> None:
    store = IntegrationStore(aws["dynamodb"], aws["table"])
    store.create(_config(), None)
    clash = _config()
    with pytest.raises(ConflictError):
        store.create(clash, {"v": 1, "ciphertext": "x"})
    items = aws["dynamodb"].scan(TableName=aws["table"])["Items"]
    assert clash.integration_id not in str(items)
