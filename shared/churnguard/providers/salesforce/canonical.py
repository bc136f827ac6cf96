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
from typing import Any
from urllib.parse import urlsplit

from churnguard.canonical.entities import CanonicalEntity, Company, Contact, Deal, Lead, Task, Ticket
from churnguard.canonical.mapping import ProviderMapping
from churnguard.canonical.values import boolean, currency, integer, iso_time, minor_units, text

PROVIDER = "salesforce"
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
        "owner_id": text(record.get("OwnerId")),
        "created_at": iso_time(record.get("CreatedDate")),
        "updated_at": iso_time(record.get("LastModifiedDate")),
    }


def _person(record: Record) -> dict[str, Any]:
    first, last = text(record.get("FirstName")), text(record.get("LastName"))
    return {
        "email": text(record.get("Email")),
        "first_name": first,
        "last_name": last,
        "name": text(record.get("Name")) or (" ".join(p for p in (first, last) if p) or None),
    }


def _company(record: Record) -> CanonicalEntity:
    code = currency(record.get("CurrencyIsoCode"))
    return Company(
        **_common(record),
        name=text(record.get("Name")),
        domain=_domain(record.get("Website")),
        industry=text(record.get("Industry")),
        employees=integer(record.get("NumberOfEmployees")),
        annual_revenue_minor=minor_units(record.get("AnnualRevenue"), code),
        currency=code,
    )


def _contact(record: Record) -> CanonicalEntity:
    return Contact(
        **_common(record),
        **_person(record),
        phone=text(record.get("Phone")),
        title=text(record.get("Title")),
        company_id=text(record.get("AccountId")),
    )


def _lead(record: Record) -> CanonicalEntity:
    return Lead(
        **_common(record),
        **_person(record),
        company_name=text(record.get("Company")),
        status=text(record.get("Status")),
        converted=boolean(record.get("IsConverted")),
    )


def _deal(record: Record) -> CanonicalEntity:
    code = currency(record.get("CurrencyIsoCode"))
    return Deal(
        **_common(record),
        name=text(record.get("Name")),
        stage=text(record.get("StageName")),
        amount_minor=minor_units(record.get("Amount"), code),
        currency=code,
        close_at=iso_time(record.get("CloseDate")),
        is_closed=boolean(record.get("IsClosed")),
        is_won=boolean(record.get("IsWon")),
        company_id=text(record.get("AccountId")),
    )


def _ticket(record: Record) -> CanonicalEntity:
    return Ticket(
        **_common(record),
        subject=text(record.get("Subject")),
        status=text(record.get("Status")),
        priority=text(record.get("Priority")),
        is_closed=boolean(record.get("IsClosed")),
        company_id=text(record.get("AccountId")),
        contact_id=text(record.get("ContactId")),
        closed_at=iso_time(record.get("ClosedDate")),
    )


def _task(record: Record) -> CanonicalEntity:
    return Task(
        **_common(record),
        subject=text(record.get("Subject")),
        status=text(record.get("Status")),
        priority=text(record.get("Priority")),
        due_at=iso_time(record.get("ActivityDate")),
        related_id=text(record.get("WhatId")),
    )


_MAPPERS: dict[str, tuple[str, Callable[[Record], CanonicalEntity]]] = {
    "Account": ("company", _company),
    "Contact": ("contact", _contact),
    "Lead": ("lead", _lead),
    "Opportunity": ("deal", _deal),
    "Case": ("ticket", _ticket),
    "Task": ("task", _task),
}


def _domain(website: Any) -> str | None:
    address = text(website)
    if address is None:
        return None
    host = urlsplit(address if "://" in address else f"//{address}").hostname or ""
    return host.removeprefix("www.") or None


MAPPING = ProviderMapping(entity_of, canonical)
