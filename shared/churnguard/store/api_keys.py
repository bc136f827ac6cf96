"""API keys: an organisation's key list and the hash lookup the authorizer reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from churnguard.errors import NotFoundError
from churnguard.models import ApiKeyView, utc_now
from churnguard.store.keys import APIKEY_PREFIX, api_key_key, api_key_lookup_key, org_pk


class ApiKeyStore:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def create(self, organization_id: str, key_id: str, key_hash: str, name: str, prefix: str) -> ApiKeyView:
        created_at = utc_now()
        self._db.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {
                            **api_key_lookup_key(key_hash),
                            "entity": {"S": "api_key_lookup"},
                            "key_hash": {"S": key_hash},
                            "organization_id": {"S": organization_id},
                            "key_id": {"S": key_id},
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {
                            **api_key_key(organization_id, key_id),
                            "entity": {"S": "api_key"},
                            "key_id": {"S": key_id},
                            "key_hash": {"S": key_hash},
                            "name": {"S": name},
                            "prefix": {"S": prefix},
                            "created_at": {"S": created_at.isoformat()},
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
        return ApiKeyView(key_id=key_id, name=name, prefix=prefix, created_at=created_at, status="active")

    def for_organization(self, organization_id: str) -> list[ApiKeyView]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": org_pk(organization_id)}, ":prefix": {"S": APIKEY_PREFIX}},
            "ConsistentRead": True,
        }
        keys: list[ApiKeyView] = []
        while True:
            response = self._db.query(**request)
            keys.extend(_view(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return keys
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def revoke(self, organization_id: str, key_id: str) -> ApiKeyView:
        """Revokes at once and keeps the key's record for audit. Revoking twice is harmless."""
        item = self._db.get_item(
            TableName=self._table, Key=api_key_key(organization_id, key_id), ConsistentRead=True
        ).get("Item")
        if not item:
            raise NotFoundError("API key not found", {"key_id": key_id})
        if "revoked_at" in item:
            return _view(item)
        revoked_at = utc_now().isoformat()
        self._db.transact_write_items(
            TransactItems=[
                {"Delete": {"TableName": self._table, "Key": api_key_lookup_key(item["key_hash"]["S"])}},
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": api_key_key(organization_id, key_id),
                        "UpdateExpression": "SET revoked_at = if_not_exists(revoked_at, :now)",
                        "ExpressionAttributeValues": {":now": {"S": revoked_at}},
                    }
                },
            ]
        )
        item["revoked_at"] = {"S": revoked_at}
        return _view(item)


def _view(item: dict[str, Any]) -> ApiKeyView:
    revoked = item.get("revoked_at", {}).get("S")
    return ApiKeyView(
        key_id=item["key_id"]["S"],
        name=item["name"]["S"],
        prefix=item["prefix"]["S"],
        created_at=datetime.fromisoformat(item["created_at"]["S"]),
        revoked_at=datetime.fromisoformat(revoked) if revoked else None,
        status="revoked" if revoked else "active",
    )
