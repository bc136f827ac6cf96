"""Reading every page of a DynamoDB query."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


def filled_page(
    dynamodb: Any, request: dict[str, Any], limit: int, token_for: Callable[[str], str]
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `limit` items of a query whose filter may return short pages: it keeps reading until
    the page is full, and the token (`token_for` the sort key of the last item returned) then
    names that item, so nothing is skipped."""
    request = dict(request)
    found: list[dict[str, Any]] = []
    while True:
        response = dynamodb.query(**request)
        items = response.get("Items", [])
        last_key = response.get("LastEvaluatedKey")
        for index, item in enumerate(items):
            found.append(item)
            if len(found) == limit:
                more = index < len(items) - 1 or last_key is not None
                return found, token_for(item["sk"]["S"]) if more else None
        if not last_key:
            return found, None
        request["ExclusiveStartKey"] = last_key
