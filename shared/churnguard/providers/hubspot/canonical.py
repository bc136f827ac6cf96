"""HubSpot CRM objects → canonical entities.

contacts → contact, companies → company, deals → deal, tickets → ticket, owners → user. A row
is the connector's flat row (properties typed by their definitions, then `id`, `createdAt`,
`updatedAt`, `archived`, `associations`); values may also be HubSpot's text, as webhooks and the
API send them. Amounts are in the account's currency (`deal_currency_code` where set) in minor
units; the company a contact or deal belongs to is its primary associated company.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from churnguard.canonical.entities import CanonicalEntity, Company, Contact, Deal, Ticket, User
from churnguard.canonical.mapping import ProviderMapping
from churnguard.canonical.values import boolean, currency, integer, iso_time, minor_units, text

PROVIDER = "hubspot"
Row = Mapping[str, Any]


# What each mapping reads: with `raw` off, a sync asks HubSpot for these properties only (and
# for associations only where a mapping reads them).
SOURCE_FIELDS: dict[str, frozenset[str]] = {
    "contacts": frozenset(
        {"email", "firstname", "lastname", "phone", "jobtitle", "associatedcompanyid", "lifecyclestage"}
        | {"hubspot_owner_id", "createdate", "lastmodifieddate"}
    ),
    "companies": frozenset(
        {"name", "domain", "industry", "numberofemployees", "annualrevenue", "hubspot_owner_id", "createdate"}
        | {"hs_lastmodifieddate"}
    ),
    "deals": frozenset(
        {"dealname", "dealstage", "amount", "deal_currency_code", "closedate", "hs_is_closed", "hs_is_closed_won"}
        | {"hubspot_owner_id", "createdate", "hs_lastmodifieddate", "associations"}
    ),
    "tickets": frozenset(
        {"subject", "hs_pipeline_stage", "hs_ticket_priority", "hs_is_closed", "closed_date", "hubspot_owner_id"}
        | {"createdate", "hs_lastmodifieddate", "associations"}
    ),
}


def entity_of(object_type: str) -> str | None:
    mapped = _MAPPERS.get(object_type)
    return mapped[0] if mapped else None


def canonical(object_type: str, row: Row, *, raw: bool = True) -> dict[str, Any]:
    """A row of `object_type` (contacts, companies, deals, tickets, owners) as canonical data."""
    mapped = _MAPPERS.get(object_type)
    if mapped is None:
        raise ValueError(f"HubSpot {object_type} have no canonical entity")
    data = mapped[1](row).model_dump(mode="json", exclude_none=True)
    if raw:
        data["raw"] = dict(row)
    return data


def _common(row: Row) -> dict[str, Any]:
    record_id = str(row["id"])
    return {
        "id": record_id,
        "source_ids": {PROVIDER: record_id},
        "owner_id": text(row.get("hubspot_owner_id")),
        "created_at": _time(row.get("createdAt") or row.get("createdate")),
        "updated_at": _time(row.get("updatedAt") or row.get("hs_lastmodifieddate") or row.get("lastmodifieddate")),
    }


def _contact(row: Row) -> CanonicalEntity:
    first, last = text(row.get("firstname")), text(row.get("lastname"))
    return Contact(
        **_common(row),
        email=text(row.get("email")),
        first_name=first,
        last_name=last,
        name=" ".join(part for part in (first, last) if part) or None,
        phone=text(row.get("phone")),
        title=text(row.get("jobtitle")),
        company_id=text(row.get("associatedcompanyid")) or _associated(row, "companies"),
        lifecycle_stage=text(row.get("lifecyclestage")),
    )


def _company(row: Row) -> CanonicalEntity:
    return Company(
        **_common(row),
        name=text(row.get("name")),
        domain=text(row.get("domain")),
        industry=text(row.get("industry")),
        employees=integer(row.get("numberofemployees")),
        annual_revenue_minor=minor_units(row.get("annualrevenue"), None),
    )


def _deal(row: Row) -> CanonicalEntity:
    code = currency(row.get("deal_currency_code"))
    return Deal(
        **_common(row),
        name=text(row.get("dealname")),
        stage=text(row.get("dealstage")),
        amount_minor=minor_units(row.get("amount"), code),
        currency=code,
        close_at=_time(row.get("closedate")),
        is_closed=boolean(row.get("hs_is_closed")),
        is_won=boolean(row.get("hs_is_closed_won")),
        company_id=_associated(row, "companies"),
    )


def _ticket(row: Row) -> CanonicalEntity:
    return Ticket(
        **_common(row),
        subject=text(row.get("subject")),
        status=text(row.get("hs_pipeline_stage")),
        priority=text(row.get("hs_ticket_priority")),
        is_closed=boolean(row.get("hs_is_closed")),
        company_id=_associated(row, "companies"),
        contact_id=_associated(row, "contacts"),
        closed_at=_time(row.get("closed_date")),
    )


def _user(row: Row) -> CanonicalEntity:
    first, last = text(row.get("firstName")), text(row.get("lastName"))
    archived = boolean(row.get("archived"))
    return User(
        id=str(row["id"]),
        source_ids={PROVIDER: str(row["id"])},
        email=text(row.get("email")),
        name=" ".join(part for part in (first, last) if part) or None,
        active=None if archived is None else not archived,
    )


_MAPPERS: dict[str, tuple[str, Callable[[Row], CanonicalEntity]]] = {
    "contacts": ("contact", _contact),
    "companies": ("company", _company),
    "deals": ("deal", _deal),
    "tickets": ("ticket", _ticket),
    "owners": ("user", _user),
}


def _associated(row: Row, object_type: str) -> str | None:
    associations = row.get("associations")
    ids = associations.get(object_type) if isinstance(associations, Mapping) else None
    return str(ids[0]) if isinstance(ids, list) and ids else None


def _time(value: Any) -> datetime | None:
    """ISO text (`2024-01-31T10:00:00.000Z`), epoch milliseconds (webhooks) or a datetime."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str) and value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    return iso_time(value)


MAPPING = ProviderMapping(entity_of, canonical, SOURCE_FIELDS.get)
