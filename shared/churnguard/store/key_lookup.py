"""The authorizer's one read: an API key's lookup item, by the key's hash.

Standard library and the DynamoDB client only (no pydantic), for the authorizer's cold start.
"""

from __future__ import annotations

from typing import Any

from churnguard.store.keys import api_key_lookup_key


def find_key(dynamodb: Any, table_name: str, key_hash: str) -> tuple[str, str, str] | None:
    """(stored key hash, organisation id, key id) of a live key, or None.

    Strongly consistent, so a revoked key stops working on the next request."""
    item = dynamodb.get_item(TableName=table_name, Key=api_key_lookup_key(key_hash), ConsistentRead=True).get("Item")
    if not item:
        return None
    return item.get("key_hash", {}).get("S", ""), item["organization_id"]["S"], item["key_id"]["S"]
