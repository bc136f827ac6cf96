"""Stripe objects → canonical entities, for the sync connector and the webhook processor alike.

A Stripe object maps by its `object` field: customer, subscription, invoice, charge (→ payment),
refund, product, price and plan (→ price), coupon. Amounts stay integers in the currency's minor
unit (Stripe's own), currencies are upper-cased ISO codes, epoch seconds become UTC times.

MRR: each licensed item's price × quantity (after `transform_quantity`), per month (day ×
365/12, week × 52/12, year ÷ 12, ÷ interval_count), less item discounts, then subscription
discounts (percent_off, or amount_off per billing period; `once` coupons and ended discounts do
not recur), rounded half-even to a minor unit. Metered and one-time prices add nothing; tiered
prices, and discounts whose coupon the object does not carry (a webhook's discounts are ids),
make `mrr_complete` false. `mrr_minor` counts only active and past_due subscriptions; the run
rate is the same sum whatever the status.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from churnguard.canonical.entities import (
    CanonicalEntity,
    Coupon,
    Customer,
    Discount,
    Invoice,
    Payment,
    Price,
    Product,
    Refund,
    Subscription,
    SubscriptionItem,
)
from churnguard.canonical.mapping import ProviderMapping

PROVIDER = "stripe"
COUNTED_STATUSES = frozenset({"active", "past_due"})
PER_MONTH: dict[str, Decimal] = {
    "day": Decimal(365) / Decimal(12),
    "week": Decimal(52) / Decimal(12),
    "month": Decimal(1),
    "year": Decimal(1) / Decimal(12),
}
CouponLookup = Callable[[str], Mapping[str, Any] | None]
Object = Mapping[str, Any]


@dataclass(frozen=True)
class Mrr:
    """Monthly recurring revenue in minor units, exact (Decimal) until it is rounded once."""

    amount: Decimal
    run_rate: Decimal
    currency: str | None
    counted: bool
    complete: bool


# ---------------------------------------------------------------- the mapping


def entity_of(obj: Object) -> str | None:
    """The canonical entity of a Stripe object, or None for one the model does not cover."""
    mapped = _MAPPERS.get(str(obj.get("object")))
    return mapped[0] if mapped else None


def canonical(obj: Object, *, raw: bool = True, now: int | None = None) -> dict[str, Any]:
    """A Stripe object as its canonical entity's data (JSON-ready)."""
    entity = _MAPPERS.get(str(obj.get("object")))
    if entity is None:
        raise ValueError(f"Stripe objects of type {obj.get('object')!r} have no canonical entity")
    model = entity[1](obj, now)
    data = model.model_dump(mode="json", exclude_none=True)
    if raw:
        data["raw"] = dict(obj)
    return data


def _common(obj: Object) -> dict[str, Any]:
    object_id = str(obj["id"])
    return {"id": object_id, "source_ids": {PROVIDER: object_id}}


def _customer(obj: Object, now: int | None) -> CanonicalEntity:
    metadata = obj.get("metadata") or {}
    return Customer(
        **_common(obj),
        email=obj.get("email"),
        name=obj.get("name"),
        phone=obj.get("phone"),
        currency=_currency(obj.get("currency")),
        balance_minor=_int(obj.get("balance")),
        delinquent=obj.get("delinquent"),
        created_at=utc(obj.get("created")),
        metadata={str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, Mapping) else {},
    )


def _subscription(obj: Object, now: int | None) -> CanonicalEntity:
    mrr = monthly_recurring_revenue(obj, now=now)
    items = [_item(item) for item in _items(obj)]
    first = items[0] if items else None
    period_end = obj.get("current_period_end")
    ends = [item["current_period_end"] for item in _items(obj) if isinstance(item.get("current_period_end"), int)]
    return Subscription(
        **_common(obj),
        customer_id=ref(obj.get("customer")),
        status=obj.get("status"),
        currency=_currency(mrr.currency),
        mrr_minor=minor(mrr.amount),
        run_rate_minor=minor(mrr.run_rate),
        mrr_complete=mrr.complete,
        interval=first.interval if first else None,
        interval_count=first.interval_count if first else None,
        quantity=sum(item.quantity for item in items) if items else None,
        items=items,
        discounts=[_discount(entry) for entry in _discounts(obj)],
        cancel_at_period_end=obj.get("cancel_at_period_end"),
        current_period_end=utc(period_end if isinstance(period_end, int) else min(ends, default=None)),
        started_at=utc(obj.get("start_date")),
        trial_end=utc(obj.get("trial_end")),
        canceled_at=utc(obj.get("canceled_at")),
        ended_at=utc(obj.get("ended_at")),
    )


def _item(item: Object) -> SubscriptionItem:
    price = price_of(item)
    recurring = price if _legacy_plan(price) else (price.get("recurring") or {})
    unit = price.get("amount") if _legacy_plan(price) else price.get("unit_amount")
    return SubscriptionItem(
        price_id=ref(price),
        product_id=ref(price.get("product")),
        quantity=int(item.get("quantity") or 1),
        unit_amount_minor=_int(unit),
        interval=recurring.get("interval"),
        interval_count=int(recurring.get("interval_count") or 1),
        usage_type=recurring.get("usage_type"),
        billing_scheme=price.get("billing_scheme"),
        discount_coupon_ids=[cid for entry in _discounts(item) if entry and (cid := _coupon_id(entry))],
    )


def _discount(entry: Object | None) -> Discount:
    if entry is None:
        return Discount()
    coupon = _coupon_of(entry, lambda _: None) or {}
    products = (coupon.get("applies_to") or {}).get("products")
    return Discount(
        coupon_id=_coupon_id(entry),
        percent_off=_decimal(coupon.get("percent_off")),
        amount_off_minor=_int(coupon.get("amount_off")),
        duration=coupon.get("duration"),
        ends_at=utc(entry.get("end")),
        applies_to_products=list(products) if products else None,
    )


def _invoice(obj: Object, now: int | None) -> CanonicalEntity:
    parent = obj.get("parent") or {}
    details = parent.get("subscription_details") or {} if isinstance(parent, Mapping) else {}
    transitions = obj.get("status_transitions") or {}
    return Invoice(
        **_common(obj),
        customer_id=ref(obj.get("customer")),
        subscription_id=ref(obj.get("subscription") or details.get("subscription")),
        status=obj.get("status"),
        currency=_currency(obj.get("currency")),
        total_minor=_int(obj.get("total")),
        amount_due_minor=_int(obj.get("amount_due")),
        amount_paid_minor=_int(obj.get("amount_paid")),
        due_at=utc(obj.get("due_date")),
        paid_at=utc(transitions.get("paid_at")),
        created_at=utc(obj.get("created")),
    )


def _payment(obj: Object, now: int | None) -> CanonicalEntity:
    return Payment(
        **_common(obj),
        customer_id=ref(obj.get("customer")),
        invoice_id=ref(obj.get("invoice")),
        status=obj.get("status"),
        currency=_currency(obj.get("currency")),
        amount_minor=_int(obj.get("amount")),
        amount_refunded_minor=_int(obj.get("amount_refunded")),
        paid=obj.get("paid"),
        refunded=obj.get("refunded"),
        failure_code=obj.get("failure_code"),
        created_at=utc(obj.get("created")),
    )


def _refund(obj: Object, now: int | None) -> CanonicalEntity:
    return Refund(
        **_common(obj),
        payment_id=ref(obj.get("charge")),
        status=obj.get("status"),
        currency=_currency(obj.get("currency")),
        amount_minor=_int(obj.get("amount")),
        reason=obj.get("reason"),
        created_at=utc(obj.get("created")),
    )


def _product(obj: Object, now: int | None) -> CanonicalEntity:
    return Product(
        **_common(obj),
        name=obj.get("name"),
        description=obj.get("description"),
        active=obj.get("active"),
        created_at=utc(obj.get("created")),
    )


def _price(obj: Object, now: int | None) -> CanonicalEntity:
    legacy = _legacy_plan(obj)
    recurring = obj if legacy else (obj.get("recurring") or {})
    return Price(
        **_common(obj),
        product_id=ref(obj.get("product")),
        active=obj.get("active"),
        currency=_currency(obj.get("currency")),
        unit_amount_minor=_int(obj.get("amount") if legacy else obj.get("unit_amount")),
        type="recurring" if recurring else "one_time",
        interval=recurring.get("interval"),
        interval_count=recurring.get("interval_count"),
        usage_type=recurring.get("usage_type"),
        billing_scheme=obj.get("billing_scheme"),
    )


def _coupon(obj: Object, now: int | None) -> CanonicalEntity:
    return Coupon(
        **_common(obj),
        name=obj.get("name"),
        percent_off=_decimal(obj.get("percent_off")),
        amount_off_minor=_int(obj.get("amount_off")),
        currency=_currency(obj.get("currency")),
        duration=obj.get("duration"),
        duration_in_months=obj.get("duration_in_months"),
        valid=obj.get("valid"),
    )


_MAPPERS: dict[str, tuple[str, Callable[[Object, int | None], CanonicalEntity]]] = {
    "customer": ("customer", _customer),
    "subscription": ("subscription", _subscription),
    "invoice": ("invoice", _invoice),
    "charge": ("payment", _payment),
    "refund": ("refund", _refund),
    "product": ("product", _product),
    "price": ("price", _price),
    "plan": ("price", _price),
    "coupon": ("coupon", _coupon),
}


# ---------------------------------------------------------------- MRR


def monthly_recurring_revenue(
    subscription: Object, coupon_of: CouponLookup = lambda _: None, now: int | None = None
) -> Mrr:
    """The subscription's recurring revenue per month, in the currency's minor units."""
    moment = int(time.time()) if now is None else now
    currency = subscription.get("currency")
    complete = True
    lines: list[list[Any]] = []  # [monthly amount, product id, months per billing period factor]
    for item in _items(subscription):
        price = price_of(item)
        currency = currency or price.get("currency")
        gross, factor, known = _item_monthly(item, price)
        (net,), applied = _discounted([gross], [0], factor, _discounts(item), coupon_of, currency, moment)
        complete = complete and known and applied
        lines.append([net, ref(price.get("product")), factor])
    amounts = [line[0] for line in lines]
    for discount in _discounts(subscription):
        coupon = _coupon_of(discount, coupon_of) if discount is not None else None
        products = ((coupon or {}).get("applies_to") or {}).get("products")
        eligible = [i for i, line in enumerate(lines) if not products or line[1] in products]
        if not eligible:
            continue
        amounts, applied = _discounted(
            amounts, eligible, lines[eligible[0]][2], [discount], coupon_of, currency, moment
        )
        complete = complete and applied
    run_rate = sum(amounts, Decimal(0))
    counted = subscription.get("status") in COUNTED_STATUSES
    return Mrr(run_rate if counted else Decimal(0), run_rate, currency, counted, complete)


def _legacy_plan(price: Object) -> bool:
    return price.get("object") == "plan" or ("recurring" not in price and "interval" in price)


def _item_monthly(item: Object, price: Object) -> tuple[Decimal, Decimal, bool]:
    """(amount per month, months-per-period factor, whether it could be priced) of one item."""
    if _legacy_plan(price):
        recurring: Object = price
        unit = price.get("amount_decimal") or price.get("amount")
        transform = price.get("transform_usage")
    else:
        recurring = price.get("recurring") or {}
        if not recurring:
            return Decimal(0), Decimal(0), True  # a one-time price is not recurring revenue
        unit = price.get("unit_amount_decimal") or price.get("unit_amount")
        transform = price.get("transform_quantity")
    per_month = PER_MONTH.get(str(recurring.get("interval")))
    if per_month is None:
        return Decimal(0), Decimal(0), False
    factor = per_month / Decimal(int(recurring.get("interval_count") or 1))
    if recurring.get("usage_type") == "metered":
        return Decimal(0), factor, True  # billed on usage after the fact: no recurring amount
    if price.get("billing_scheme") == "tiered" or unit is None:
        return Decimal(0), factor, False
    quantity = item.get("quantity")
    units = Decimal(1 if quantity is None else int(quantity))
    if isinstance(transform, Mapping) and transform.get("divide_by"):
        ratio = units / Decimal(int(transform["divide_by"]))
        units = Decimal(math.floor(ratio) if transform.get("round") == "down" else math.ceil(ratio))
    try:
        return Decimal(str(unit)) * units * factor, factor, True
    except InvalidOperation:
        return Decimal(0), factor, False


def _discounted(
    amounts: list[Decimal],
    eligible: list[int],
    factor: Decimal,
    discounts: Iterable[Object | None],
    coupon_of: CouponLookup,
    currency: str | None,
    now: int,
) -> tuple[list[Decimal], bool]:
    """`amounts` with the recurring discounts applied to the `eligible` ones; False when a
    discount could not be read (its coupon unknown, another currency without an amount)."""
    result, complete = list(amounts), True
    for discount in discounts:
        coupon = _coupon_of(discount, coupon_of) if discount is not None else None
        if coupon is None:
            complete = False
            continue
        ended = isinstance(discount, Mapping) and isinstance(discount.get("end"), int) and discount["end"] <= now
        if coupon.get("duration") == "once" or ended:
            continue
        total = sum((result[i] for i in eligible), Decimal(0))
        if total <= 0:
            continue
        if coupon.get("percent_off") is not None:
            remaining = total * (1 - Decimal(str(coupon["percent_off"])) / 100)
        else:
            amount_off = _amount_off(coupon, currency)
            if amount_off is None:
                complete = False
                continue
            remaining = max(Decimal(0), total - amount_off * factor)
        for i in eligible:
            result[i] = result[i] * remaining / total
    return result, complete


def _amount_off(coupon: Object, currency: str | None) -> Decimal | None:
    amount = coupon.get("amount_off")
    if amount is None:
        return None
    if coupon.get("currency") in (None, currency):
        return Decimal(int(amount))
    option = (coupon.get("currency_options") or {}).get(currency or "") or {}
    return Decimal(int(option["amount_off"])) if option.get("amount_off") is not None else None


def _discounts(holder: Object) -> list[Object | None]:
    """Expanded discounts (None for one only known by id), plus the legacy single `discount`."""
    found: list[Object | None] = [
        entry if isinstance(entry, Mapping) else None for entry in holder.get("discounts") or []
    ]
    legacy = holder.get("discount")
    known = {entry.get("id") for entry in found if entry is not None}
    if isinstance(legacy, Mapping) and legacy.get("id") not in known:
        found.append(legacy)
    return found


def _coupon_of(discount: Object, coupon_of: CouponLookup) -> Object | None:
    coupon = discount.get("coupon")  # older API versions embed it here
    if coupon is None:
        coupon = (discount.get("source") or {}).get("coupon")
    if isinstance(coupon, str):
        return coupon_of(coupon)
    return coupon if isinstance(coupon, Mapping) else None


def _coupon_id(discount: Object) -> str | None:
    coupon = discount.get("coupon")
    if coupon is None:
        coupon = (discount.get("source") or {}).get("coupon")
    return ref(coupon)


def with_coupons(subscription: Object, coupon_of: CouponLookup) -> dict[str, Any]:
    """The subscription with every discount's coupon embedded (an item discount names it by
    id), so the canonical mapping needs no lookup: what the sync connector hands over."""

    def embedded(discount: Any) -> Any:
        if not isinstance(discount, Mapping):
            return discount
        source = discount.get("source") or {}
        coupon_id = source.get("coupon") if isinstance(source, Mapping) else None
        if isinstance(coupon_id, str) and (coupon := coupon_of(coupon_id)) is not None:
            return {**discount, "source": {**source, "coupon": dict(coupon)}}
        if isinstance(discount.get("coupon"), str) and (coupon := coupon_of(discount["coupon"])) is not None:
            return {**discount, "coupon": dict(coupon)}
        return discount

    items = subscription.get("items") or {}
    data = [
        {**item, "discounts": [embedded(d) for d in item.get("discounts") or []]} for item in items.get("data") or []
    ]
    result = {**subscription, "discounts": [embedded(d) for d in subscription.get("discounts") or []]}
    if items:
        result["items"] = {**items, "data": data}
    return result


def _items(subscription: Object) -> list[Object]:
    return list((subscription.get("items") or {}).get("data") or [])


def price_of(item: Object) -> Object:
    price = item.get("price") or item.get("plan")
    return price if isinstance(price, Mapping) else {}


# ---------------------------------------------------------------- values


def minor(amount: Decimal) -> int:
    """An exact amount in minor units, rounded half-even to a whole one."""
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def ref(value: Any) -> str | None:
    """An expandable field's id, whether Stripe sent the id or the object."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def utc(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value, UTC)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    # 50 and 50.0 (an emulator's float) are one percentage: written the same, without zeros.
    return number.quantize(Decimal(1)) if number == number.to_integral_value() else number.normalize()


def _currency(value: Any) -> str | None:
    return value.upper() if isinstance(value, str) and len(value) == 3 and value.isalpha() else None


# The sync connector's streams are Stripe's lists; each row says its own object type.
_LISTS = {
    "customers": "customer",
    "subscriptions": "subscription",
    "invoices": "invoice",
    "charges": "charge",
    "refunds": "refund",
    "products": "product",
    "prices": "price",
    "coupons": "coupon",
}


def _entity_of_list(source: str) -> str | None:
    mapped = _MAPPERS.get(_LISTS.get(source, ""))
    return mapped[0] if mapped else None


def _canonical_row(source: str, row: Object, *, raw: bool = True) -> dict[str, Any]:
    return canonical(row, raw=raw)


MAPPING = ProviderMapping(_entity_of_list, _canonical_row)
