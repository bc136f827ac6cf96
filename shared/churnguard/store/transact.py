"""Transaction items shared by the stores that write several items at once."""

from __future__ import annotations

from typing import Any


def put(
    table: str,
    item: dict[str, Any],
    condition: str | None,
    names: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A TransactWriteItems Put of `item`, conditional when `condition` is given."""
    request: dict[str, Any] = {"TableName": table, "Item": item}
    if condition:
        request["ConditionExpression"] = condition
    if names:
        request["ExpressionAttributeNames"] = names
    if values:
        request["ExpressionAttributeValues"] = values
    return {"Put": request}
