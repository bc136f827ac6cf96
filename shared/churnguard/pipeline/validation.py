"""Schema validation of canonical data, as cheap per-row checks (no model built per row).

Each canonical entity declares the types its well-known fields may have; a field that is present
and not null must have one of them. Fields a schema does not name pass. Every record, whatever
its entity, also needs a non-null primary key, must encode to JSON, and must fit in
`MAX_RECORD_BYTES`; those universal checks live in the pipeline core. A failing record is
rejected with the reason, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

MAX_RECORD_BYTES = 1_048_576
_MAX_SIGNATURES = 1024

TEXT: tuple[type, ...] = (str,)
NUMBER: tuple[type, ...] = (int, float, Decimal)
IDENTIFIER: tuple[type, ...] = (str, int)
# Times may arrive as datetimes from databases or as ISO strings from APIs.
TIME: tuple[type, ...] = (datetime, date, str)
FLAG: tuple[type, ...] = (bool,)


@dataclass(frozen=True)
class EntitySchema:
    fields: Mapping[str, tuple[type, ...]] = field(default_factory=dict)
    required: tuple[str, ...] = ()


CANONICAL_SCHEMAS: dict[str, EntitySchema] = {
    "customer": EntitySchema(
        {"email": TEXT, "name": TEXT, "company": TEXT, "plan": TEXT, "mrr": NUMBER, "created_at": TIME}
    ),
    "subscription": EntitySchema(
        {
            "customer_id": IDENTIFIER,
            "status": TEXT,
            "plan": TEXT,
            "amount": NUMBER,
            "currency": TEXT,
            "current_period_end": TIME,
            "canceled_at": TIME,
        }
    ),
    "invoice": EntitySchema(
        {
            "customer_id": IDENTIFIER,
            "status": TEXT,
            "amount_due": NUMBER,
            "amount_paid": NUMBER,
            "currency": TEXT,
            "due_date": TIME,
            "paid_at": TIME,
        }
    ),
    "contact": EntitySchema({"email": TEXT, "name": TEXT, "company_id": IDENTIFIER}),
    "company": EntitySchema({"name": TEXT, "domain": TEXT, "employees": NUMBER}),
    "deal": EntitySchema({"name": TEXT, "stage": TEXT, "amount": NUMBER, "close_date": TIME}),
    "case": EntitySchema({"subject": TEXT, "status": TEXT, "priority": TEXT, "customer_id": IDENTIFIER}),
    "campaign_activity": EntitySchema({"campaign_id": IDENTIFIER, "email": TEXT, "action": TEXT, "occurred_at": TIME}),
    "email_event": EntitySchema({"email": TEXT, "event": TEXT, "occurred_at": TIME}),
}


# What a source column of each kind holds in Python (None: varies, as JSON documents do).
KIND_TYPES: dict[str, type | None] = {
    "text": str,
    "int": int,
    "decimal": Decimal,
    "float": float,
    "bool": bool,
    "datetime": datetime,
    "timestamp": datetime,
    "date": date,
    "bytes": bytes,
    "array": list,
    "json": None,
    "other": None,
}


def statically_valid(schema: EntitySchema, column_kinds: Mapping[str, str]) -> bool:
    """True when the columns' kinds alone prove every row passes `schema` (null always passes),
    so rows need no per-row check. Unknown kinds and required fields need one."""
    if schema.required:
        return False
    for name, types in schema.fields.items():
        kind = column_kinds.get(name)
        if kind is None:
            continue  # not a column of this source: never present
        held = KIND_TYPES.get(kind)
        if held is None or (held is bool and bool not in types) or not issubclass(held, types):
            return False
    return True


def schema_for(entity: str) -> EntitySchema | None:
    return CANONICAL_SCHEMAS.get(entity)


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)


def compile_check(schema: EntitySchema) -> Callable[[Mapping[str, Any]], str | None]:
    """A function returning why `data` breaks the schema, or None. bool is not a number here.

    Rows of one source repeat the same few combinations of field types, so the combinations
    already accepted are remembered and most rows cost one tuple and one set lookup.
    """
    names = tuple(schema.fields)
    rules = tuple(
        (name, types, f"field {name!r} must be {_type_names(types)}") for name, types in schema.fields.items()
    )
    required = schema.required
    accepted: set[tuple[type, ...]] = set()

    def full_check(data: Mapping[str, Any]) -> str | None:
        for name in required:
            if data.get(name) is None:
                return f"field {name!r} is required"
        for name, types, message in rules:
            value = data.get(name)
            if value is None:
                continue
            kind = value.__class__
            if (kind is bool and bool not in types) or not isinstance(value, types):
                return f"{message}, not {kind.__name__}"
        return None

    def check(data: Mapping[str, Any]) -> str | None:
        signature = tuple(map(type, map(data.get, names)))
        if signature in accepted:
            return None
        reason = full_check(data)
        if reason is None and len(accepted) < _MAX_SIGNATURES:
            accepted.add(signature)
        return reason

    return check
