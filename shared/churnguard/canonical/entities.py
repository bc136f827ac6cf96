"""The canonical entities. Field names say their unit: `*_minor` is an integer amount in the
currency's minor unit (cents; yen have none), `*_at` a UTC time, `*_id` another entity's
record id from the same provider."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

SCHEMA_VERSION = 2


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a time must carry its offset")
    return value.astimezone(UTC)


UtcTime = Annotated[datetime, AfterValidator(_utc)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Minor = Annotated[int, Field(description="an amount in the currency's minor unit")]


class CanonicalEntity(BaseModel):
    """What every entity has: its record id, where it came from, and the provider's object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="the record id: the provider's id of the object")
    source_ids: dict[str, str] = Field(description="{provider: id} of the object at each provider")
    raw: dict[str, Any] | None = Field(default=None, description="the provider's original object")


class Customer(CanonicalEntity):
    """A paying (or trialing) account at the billing provider."""

    email: str | None = None
    name: str | None = None
    phone: str | None = None
    currency: Currency | None = None
    balance_minor: Minor | None = None
    delinquent: bool | None = None
    created_at: UtcTime | None = None
    metadata: dict[str, str] = {}


class SubscriptionItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    price_id: str | None = None
    product_id: str | None = None
    quantity: int = 1
    unit_amount_minor: Minor | None = Field(default=None, description="null for tiered and metered prices")
    interval: Literal["day", "week", "month", "year"] | None = None
    interval_count: int = 1
    usage_type: Literal["licensed", "metered"] | None = None
    billing_scheme: Literal["per_unit", "tiered"] | None = None
    discount_coupon_ids: list[str] = []


class Discount(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    coupon_id: str | None = None
    percent_off: Decimal | None = None
    amount_off_minor: Minor | None = None
    duration: Literal["once", "repeating", "forever"] | None = None
    ends_at: UtcTime | None = None
    applies_to_products: list[str] | None = None


class Subscription(CanonicalEntity):
    """A recurring billing agreement and its normalised monthly recurring revenue."""

    customer_id: str | None = None
    status: str | None = None
    currency: Currency | None = None
    mrr_minor: Minor = Field(
        description="monthly recurring revenue after recurring discounts; 0 unless active or past_due"
    )
    run_rate_minor: Minor = Field(description="the same sum whatever the status")
    mrr_complete: bool = Field(description="false when a price or discount could not be priced exactly")
    interval: Literal["day", "week", "month", "year"] | None = Field(
        default=None, description="the billing interval of the first item"
    )
    interval_count: int | None = None
    quantity: int | None = Field(default=None, description="the sum of the items' quantities")
    items: list[SubscriptionItem] = []
    discounts: list[Discount] = []
    cancel_at_period_end: bool | None = None
    current_period_end: UtcTime | None = None
    started_at: UtcTime | None = None
    trial_end: UtcTime | None = None
    canceled_at: UtcTime | None = None
    ended_at: UtcTime | None = None


class Invoice(CanonicalEntity):
    customer_id: str | None = None
    subscription_id: str | None = None
    status: str | None = None
    currency: Currency | None = None
    total_minor: Minor | None = None
    amount_due_minor: Minor | None = None
    amount_paid_minor: Minor | None = None
    due_at: UtcTime | None = None
    paid_at: UtcTime | None = None
    created_at: UtcTime | None = None


class Payment(CanonicalEntity):
    """A charge of a customer's payment method."""

    customer_id: str | None = None
    invoice_id: str | None = None
    status: str | None = None
    currency: Currency | None = None
    amount_minor: Minor | None = None
    amount_refunded_minor: Minor | None = None
    paid: bool | None = None
    refunded: bool | None = None
    failure_code: str | None = None
    created_at: UtcTime | None = None


class Refund(CanonicalEntity):
    payment_id: str | None = None
    status: str | None = None
    currency: Currency | None = None
    amount_minor: Minor | None = None
    reason: str | None = None
    created_at: UtcTime | None = None


class Product(CanonicalEntity):
    name: str | None = None
    description: str | None = None
    active: bool | None = None
    created_at: UtcTime | None = None


class Price(CanonicalEntity):
    product_id: str | None = None
    active: bool | None = None
    currency: Currency | None = None
    unit_amount_minor: Minor | None = None
    type: Literal["one_time", "recurring"] | None = None
    interval: Literal["day", "week", "month", "year"] | None = None
    interval_count: int | None = None
    usage_type: Literal["licensed", "metered"] | None = None
    billing_scheme: Literal["per_unit", "tiered"] | None = None


class Coupon(CanonicalEntity):
    name: str | None = None
    percent_off: Decimal | None = None
    amount_off_minor: Minor | None = None
    currency: Currency | None = None
    duration: Literal["once", "repeating", "forever"] | None = None
    duration_in_months: int | None = None
    valid: bool | None = None


class Contact(CanonicalEntity):
    """A person at a customer: a CRM contact or an email recipient."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    name: str | None = None
    phone: str | None = None
    title: str | None = None
    company_id: str | None = None
    owner_id: str | None = None
    lifecycle_stage: str | None = None
    created_at: UtcTime | None = None
    updated_at: UtcTime | None = None


class Lead(CanonicalEntity):
    """A prospect not yet qualified (a Salesforce Lead is not a contact)."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    name: str | None = None
    company_name: str | None = None
    status: str | None = None
    converted: bool | None = None
    owner_id: str | None = None
    created_at: UtcTime | None = None
    updated_at: UtcTime | None = None


class Company(CanonicalEntity):
    name: str | None = None
    domain: str | None = None
    industry: str | None = None
    employees: int | None = None
    annual_revenue_minor: Minor | None = None
    currency: Currency | None = None
    owner_id: str | None = None
    created_at: UtcTime | None = None
    updated_at: UtcTime | None = None


class Deal(CanonicalEntity):
    name: str | None = None
    stage: str | None = None
    amount_minor: Minor | None = None
    currency: Currency | None = None
    close_at: UtcTime | None = None
    is_closed: bool | None = None
    is_won: bool | None = None
    company_id: str | None = None
    owner_id: str | None = None
    created_at: UtcTime | None = None
    updated_at: UtcTime | None = None


class Ticket(CanonicalEntity):
    """A support case."""

    subject: str | None = None
    status: str | None = None
    priority: str | None = None
    is_closed: bool | None = None
    company_id: str | None = None
    contact_id: str | None = None
    owner_id: str | None = None
    created_at: UtcTime | None = None
    updated_at: UtcTime | None = None
    closed_at: UtcTime | None = None


class User(CanonicalEntity):
    """Someone who works in the provider's account (an owner of records)."""

    email: str | None = None
    name: str | None = None
    active: bool | None = None


class ListMembership(CanonicalEntity):
    """A recipient's membership of a mailing list; the record id is `<list id>/<member id>`."""

    list_id: str
    member_id: str
    email: str | None = None
    status: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    updated_at: UtcTime | None = None


class EmailEvent(CanonicalEntity):
    """Something that happened to an email: delivered, open, click, bounce, unsubscribe, ..."""

    type: str
    email: str | None = None
    occurred_at: UtcTime | None = None
    message_id: str | None = None
    campaign_id: str | None = None
    list_id: str | None = None
    url: str | None = None
    reason: str | None = None
    status: str | None = Field(default=None, description="the SMTP enhanced status code of a bounce or block")


class Campaign(CanonicalEntity):
    name: str | None = None
    subject: str | None = None
    status: str | None = None
    list_id: str | None = None
    sent_at: UtcTime | None = None


class Task(CanonicalEntity):
    subject: str | None = None
    status: str | None = None
    priority: str | None = None
    due_at: UtcTime | None = None
    owner_id: str | None = None
    related_id: str | None = None
    created_at: UtcTime | None = None
    updated_at: UtcTime | None = None


class Event(CanonicalEntity):
    """A custom or stream event the model has no closer entity for."""

    event_type: str | None = None
    occurred_at: UtcTime | None = None
    payload: Any = None


ENTITIES: dict[str, type[CanonicalEntity]] = {
    "customer": Customer,
    "subscription": Subscription,
    "invoice": Invoice,
    "payment": Payment,
    "refund": Refund,
    "product": Product,
    "price": Price,
    "coupon": Coupon,
    "contact": Contact,
    "lead": Lead,
    "company": Company,
    "deal": Deal,
    "ticket": Ticket,
    "user": User,
    "list_membership": ListMembership,
    "email_event": EmailEvent,
    "campaign": Campaign,
    "task": Task,
    "event": Event,
}


def entity_schema(entity: str) -> dict[str, Any]:
    """The JSON Schema of one entity's `data`, with the version it belongs to."""
    schema = ENTITIES[entity].model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "x-schema-version": SCHEMA_VERSION, **schema}


def mapped_onto(entity: str, provider: str, record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Fields a `field_mappings` put onto a canonical entity (a database row's), validated as that
    entity; ValueError (pydantic's ValidationError) when they do not fit it."""
    model = ENTITIES[entity].model_validate({**fields, "id": record_id, "source_ids": {provider: record_id}})
    return model.model_dump(mode="json", exclude_none=True)


def tombstone(provider: str, record_id: str) -> dict[str, Any]:
    """A deleted object's data: only who it was, so both paths write the same delete."""
    return {"id": record_id, "source_ids": {provider: record_id}}
