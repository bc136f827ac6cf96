"""Organisations: the tenant record that API keys and integrations hang off."""

from __future__ import annotations

from typing import Any

from churnguard.models import utc_now
from churnguard.store.keys import ORGANIZATION_SK, key, org_pk


class OrganizationStore:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def ensure(self, organization_id: str) -> bool:
        """Creates the organisation unless it exists; True when it was created now."""
        try:
            self._db.put_item(
                TableName=self._table,
                Item={
                    **key(org_pk(organization_id), ORGANIZATION_SK),
                    "entity": {"S": "organization"},
                    "organization_id": {"S": organization_id},
                    "created_at": {"S": utc_now().isoformat()},
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True
