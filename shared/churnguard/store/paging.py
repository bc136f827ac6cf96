"""Reading every page of a DynamoDB query."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def every_item(dynamodb: Any, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The items of `request` (a Query's arguments), page after page until the last."""
    request = dict(request)
    while True:
        response = dynamodb.query(**request)
        yield from response.get("Items", [])
        if "LastEvaluatedKey" not in response:
            return
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
