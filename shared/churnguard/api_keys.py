"""API key lifecycle: issue (shown once), list, revoke."""

from __future__ import annotations

from churnguard.auth import generate_api_key, hash_api_key, new_key_id
from churnguard.models import ApiKeyCreated, ApiKeyList, ApiKeyView
from churnguard.store.api_keys import ApiKeyStore

_SHOWN_PREFIX_LENGTH = 7


class ApiKeyService:
    def __init__(self, store: ApiKeyStore) -> None:
        self._store = store

    def create(self, organization_id: str, name: str) -> ApiKeyCreated:
        api_key = generate_api_key()
        view = self._store.create(
            organization_id,
            key_id=new_key_id(),
            key_hash=hash_api_key(api_key),
            name=name,
            prefix=api_key[:_SHOWN_PREFIX_LENGTH],
        )
        return ApiKeyCreated(**view.model_dump(), api_key=api_key)

    def list(self, organization_id: str) -> ApiKeyList:
        return ApiKeyList(items=self._store.for_organization(organization_id))

    def revoke(self, organization_id: str, key_id: str) -> ApiKeyView:
        return self._store.revoke(organization_id, key_id)
