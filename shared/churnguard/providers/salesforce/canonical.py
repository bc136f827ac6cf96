"""Salesforce records → canonical entities, for the sync connector and outbound messages alike.

Account → company, Contact → contact, Lead → lead (a lead is not a contact), Opportunity →
deal, Case → ticket, Task → task. Other objects (custom `__c` ones included) have no canonical
entity and keep their own fields.

The REST API types values (numbers, booleans, datetimes parsed by the connector) where an
outbound message sends every value as text, so each field is read as either: the same record
gives the same entity by both paths. Amounts are the record's currency (`CurrencyIsoCode` in a
multi-currency org, else unknown) in minor units; dates become midnight UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from churnguard.canonical.entities import CanonicalEntity, Company, Contact, Deal, Lead, Task, Ticket

PROVIDER = "salesforce"
# ISO 4217 currencies without a minor unit (the others Salesforce supports have two or three).
_ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV"})
_THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})
Record = Mapping[str, Any]


def entity_of(object_type: str) -> str | None:
    mapped = _MAPPERS.get(object_type)
    return mapped[0] if mapped else None


def canonical(object_type: str, record: Record, *, raw: bool = True) -> dict[str, Any]:
    """A record of `object_type` as its canonical entity's data (JSON-ready)."""
    mapped = _MAPPERS.get(object_type)
    if mapped is None:
        raise ValueError(f"Salesforce {object_type} records have no canonical entity")
    data = mapped[1](record).model_dump(mode="json", exclude_none=True)
    if raw:
        data["raw"] = dict(record)
    return data


def _common(record: Record) -> dict[str, Any]:
    record_id = str(record["Id"])
    return {
        "id": record_id,
        "source_ids": {PROVIDER: record_id},
        "owner_id": _text(record.get("OwnerId")),
        "created_at": _time(record.get("CreatedDate")),
        "updated_at": _time(record.get("LastModifiedDate")),
    }


def _person(record: Record) -> dict[str, Any]:
    first, last = _text(record.get("FirstName")), _text(record.get("LastName"))
    return {
        "email": _text(record.get("Email")),
        "first_name": first,
        "last_name": last,
        "name": _text(record.get("Name")) or (" ".join(p for p in (first, last) if p) or None),
    }


def _company(record: Record) -> CanonicalEntity:
    currency = _currency(record.get("CurrencyIsoCode"))
    return Company(
        **_common(record),
        name=_text(record.get("Name")),
        domain=_domain(record.get("Website")),
        industry=_text(record.get("Industry")),
        employees=_int(record.get("NumberOfEmployees")),
        annual_revenue_minor=_minor(record.get("AnnualRevenue"), currency),
        currency=currency,
    )


def _contact(record: Record) -> CanonicalEntity:
    return Contact(
        **_common(record),
        **_person(record),
        phone=_text(record.get("Phone")),
        title=_text(record.get("Title")),
        company_id=_text(record.get("AccountId")),
    )


def _lead(record: Record) -> CanonicalEntity:
    return Lead(
        **_common(record),
        **_person(record),
        company_name=_text(record.get("Company")),
        status=_text(record.get("Status")),
        converted=_bool(record.get("IsConverted")),
    )


def _deal(record: Record) -> CanonicalEntity:
    currency = _currency(record.get("CurrencyIsoCode"))
    return Deal(
        **_common(record),
        name=_text(record.get("Name")),
        stage=_text(record.get("StageName")),
        amount_minor=_minor(record.get("Amount"), currency),
        currency=currency,
        close_at=_time(record.get("CloseDate")),
        is_closed=_bool(record.get("IsClosed")),
        is_won=_bool(record.get("IsWon")),
        company_id=_text(record.get("AccountId")),
    )


def _ticket(record: Record) -> CanonicalEntity:
    return Ticket(
        **_common(record),
        subject=_text(record.get("Subject")),
        status=_text(record.get("Status")),
        priority=_text(record.get("Priority")),
        is_closed=_bool(record.get("IsClosed")),
        company_id=_text(record.get("AccountId")),
        contact_id=_text(record.get("ContactId")),
        closed_at=_time(record.get("ClosedDate")),
    )


def _task(record: Record) -> CanonicalEntity:
    return Task(
        **_common(record),
        subject=_text(record.get("Subject")),
        status=_text(record.get("Status")),
        priority=_text(record.get("Priority")),
        due_at=_time(record.get("ActivityDate")),
        related_id=_text(record.get("WhatId")),
    )


_MAPPERS: dict[str, tuple[str, Callable[[Record], CanonicalEntity]]] = {
    "Account": ("company", _company),
    "Contact": ("contact", _contact),
    "Lead": ("lead", _lead),
    "Opportunity": ("deal", _deal),
    "Case": ("ticket", _ticket),
    "Task": ("task", _task),
}


# ---------------------------------------------------------------- values, typed or as text


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    return None


def _int(value: Any) -> int | None:
    number = _decimal(value)
    return int(number) if number is not None and number == number.to_integral_value() else None


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _minor(value: Any, currency: str | None) -> int | None:
    amount = _decimal(value)
    if amount is None:
        return None
    exponent = 0 if currency in _ZERO_DECIMAL else 3 if currency in _THREE_DECIMAL else 2
    return int((amount * 10**exponent).to_integral_value())


def _currency(value: Any) -> str | None:
    return value.upper() if isinstance(value, str) and len(value) == 3 and value.isalpha() else None


def _time(value: Any) -> datetime | None:
    """A datetime, `2024-01-31T10:00:00.000+0000` (REST, outbound messages), `…Z` or a date."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _domain(website: Any) -> str | None:
    text = _text(website)
    if text is None:
        return None
    host = urlsplit(text if "://" in text else f"//{text}").hostname or ""
    return host.removeprefix("www.") or None
