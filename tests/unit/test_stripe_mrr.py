"""MRR normalisation of Stripe subscriptions (in minor units), and Stripe objects as canonical entities."""

from __future__ import annotations

from typing import Any

import pytest

from churnguard.canonical.entities import Invoice, Subscription
from churnguard.providers.stripe.canonical import canonical, minor, monthly_recurring_revenue

NOW = 1_800_000_000


def price(
    amount: int | None = 1000,
    interval: str = "month",
    count: int = 1,
    *,
    usage: str = "licensed",
    product: str = "prod_a",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": f"price_{interval}_{count}_{amount}",
        "object": "price",
        "currency": "usd",
        "product": product,
        "billing_scheme": "per_unit",
        "unit_amount": amount,
        "unit_amount_decimal": None if amount is None else str(amount),
        "recurring": {"interval": interval, "interval_count": count, "usage_type": usage},
        "type": "recurring",
        **extra,
    }


def item(of: dict[str, Any], quantity: int | None = 1, **extra: Any) -> dict[str, Any]:
    return {"id": f"si_{of['id']}", "object": "subscription_item", "price": of, "quantity": quantity, **extra}


def subscription(*items: dict[str, Any], status: str = "active", **extra: Any) -> dict[str, Any]:
    return {
        "id": "sub_1",
        "object": "subscription",
        "customer": "cus_1",
        "currency": "usd",
        "status": status,
        "items": {"object": "list", "data": list(items), "has_more": False},
        "discounts": [],
        **extra,
    }


def coupon(**fields: Any) -> dict[str, Any]:
    return {"id": "co_1", "object": "coupon", "duration": "forever", "percent_off": None, "amount_off": None, **fields}


def discount(of: dict[str, Any] | str, **extra: Any) -> dict[str, Any]:
    return {"id": "di_1", "object": "discount", "source": {"type": "coupon", "coupon": of}, "end": None, **extra}


def mrr(sub: dict[str, Any], coupons: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    result = monthly_recurring_revenue(sub, (coupons or {}).get, NOW)
    return {
        "amount": minor(result.amount),
        "run_rate": minor(result.run_rate),
        "currency": result.currency,
        "counted": result.counted,
        "complete": result.complete,
    }


@pytest.mark.parametrize(
    ("interval", "count", "amount", "monthly"),
    [
        ("month", 1, 1000, 1000.0),
        ("month", 3, 3000, 1000.0),
        ("year", 1, 12000, 1000.0),
        ("year", 2, 12000, 500.0),
        ("week", 1, 100, 433),  # 52 weeks / 12 months = 433.33, to a whole minor unit
        ("week", 2, 100, 217),
        ("day", 1, 10, 304),  # 365 days / 12 months
    ],
)
def test_each_interval_is_normalised_to_a_month(interval: str, count: int, amount: int, monthly: int) -> None:
    result = mrr(subscription(item(price(amount, interval, count))))

    assert result == {
        "amount": monthly,
        "run_rate": monthly,
        "currency": "usd",
        "counted": True,
        "complete": True,
    }


def test_quantity_and_several_items_add_up() -> None:
    sub = subscription(item(price(1000), quantity=3), item(price(500, product="prod_b"), quantity=2))

    assert mrr(sub)["amount"] == 4000.0


def test_transform_quantity_prices_packages() -> None:
    packaged = price(1000, transform_quantity={"divide_by": 10, "round": "up"})
    rounded_down = price(1000, transform_quantity={"divide_by": 10, "round": "down"})

    assert mrr(subscription(item(packaged, quantity=25)))["amount"] == 3000.0
    assert mrr(subscription(item(rounded_down, quantity=25)))["amount"] == 2000.0


def test_metered_and_free_items_add_nothing_and_the_mrr_stays_complete() -> None:
    sub = subscription(item(price(1000)), item(price(20, usage="metered"), quantity=None), item(price(0)))

    result = mrr(sub)

    assert result["amount"] == 1000.0 and result["complete"] is True


def test_a_tiered_price_cannot_be_priced_from_a_list_and_says_so() -> None:
    tiered = price(None, billing_scheme="tiered", tiers_mode="volume")

    result = mrr(subscription(item(price(1000)), item(tiered, quantity=5)))

    assert result["amount"] == 1000.0 and result["complete"] is False


def test_one_time_prices_are_not_recurring_revenue() -> None:
    once = {**price(5000), "recurring": None, "type": "one_time"}

    assert mrr(subscription(item(price(1000)), item(once)))["amount"] == 1000.0


@pytest.mark.parametrize(
    ("the_coupon", "end", "monthly"),
    [
        (coupon(percent_off=25), None, 750.0),
        (coupon(percent_off=12.5, duration="repeating", duration_in_months=3), NOW + 86_400, 875.0),
        (coupon(percent_off=25, duration="repeating", duration_in_months=3), NOW - 1, 1000.0),  # ended
        (coupon(percent_off=25, duration="once"), None, 1000.0),  # does not recur
        (coupon(amount_off=300, currency="usd"), None, 700.0),
        (coupon(amount_off=5000, currency="usd"), None, 0.0),  # never below zero
    ],
)
def test_subscription_discounts(the_coupon: dict[str, Any], end: int | None, monthly: float) -> None:
    sub = subscription(item(price(1000)), discounts=[discount(the_coupon, end=end)])

    assert mrr(sub)["amount"] == monthly


def test_an_amount_off_is_per_billing_period() -> None:
    sub = subscription(item(price(12000, "year")), discounts=[discount(coupon(amount_off=1200, currency="usd"))])

    assert mrr(sub)["amount"] == 900.0  # (12000 - 1200) / 12


def test_an_amount_off_in_another_currency_uses_its_currency_option_or_is_incomplete() -> None:
    with_option = coupon(amount_off=300, currency="eur", currency_options={"usd": {"amount_off": 400}})
    without = coupon(amount_off=300, currency="eur")

    assert mrr(subscription(item(price(1000)), discounts=[discount(with_option)]))["amount"] == 600.0
    result = mrr(subscription(item(price(1000)), discounts=[discount(without)]))
    assert result["amount"] == 1000.0 and result["complete"] is False


def test_a_coupon_limited_to_products_discounts_only_their_items() -> None:
    limited = coupon(percent_off=50, applies_to={"products": ["prod_b"]})
    sub = subscription(item(price(1000)), item(price(2000, product="prod_b")), discounts=[discount(limited)])

    assert mrr(sub)["amount"] == 2000.0


def test_item_discounts_name_their_coupon_by_id_and_it_is_looked_up() -> None:
    sub = subscription(item(price(1000), discounts=[discount("co_half")]), item(price(1000, product="prod_b")))

    assert mrr(sub, {"co_half": coupon(id="co_half", percent_off=50)})["amount"] == 1500.0
    assert mrr(sub)["complete"] is False, "a coupon that cannot be found leaves the MRR incomplete"


def test_an_unexpanded_discount_leaves_the_mrr_incomplete() -> None:
    result = mrr(subscription(item(price(1000)), discounts=["di_unexpanded"]))

    assert result["amount"] == 1000.0 and result["complete"] is False


def test_only_active_and_past_due_subscriptions_count() -> None:
    for status, counted in [("active", True), ("past_due", True), ("trialing", False), ("canceled", False)]:
        result = mrr(subscription(item(price(1000)), status=status))
        assert result["run_rate"] == 1000.0
        assert result["amount"] == (1000.0 if counted else 0.0) and result["counted"] is counted


def test_legacy_plans_and_an_embedded_discount_are_read_too() -> None:
    """The shape of older API versions (and of the localstripe emulator)."""
    plan = {"id": "plan_1", "object": "plan", "amount": 2400, "currency": "eur", "interval": "year"}
    sub = {
        **subscription({"id": "si_1", "plan": plan, "quantity": 2}),
        "currency": None,
        "discounts": None,
        "discount": {"id": "di_9", "coupon": coupon(percent_off=10)},
    }

    result = mrr(sub)

    assert result["amount"] == 360.0 and result["currency"] == "eur"  # 2 × 2400 / 12 × 0.9


def test_a_subscription_is_a_canonical_subscription_with_its_mrr_in_minor_units() -> None:
    sub = subscription(
        item(price(12000, "year"), quantity=3, current_period_end=1_802_592_000),
        discounts=[discount(coupon(percent_off=25)), discount(coupon(id="co_2", amount_off=1200, currency="usd"))],
        canceled_at=1_800_000_000,
        metadata={"tier": "gold"},
    )

    data = canonical(sub, now=NOW)

    Subscription.model_validate(data)
    # 3 × 12000 a year = 3000 a month; 25% off → 2250; 1200 a year off → 2150.
    assert data["mrr_minor"] == 2150 and data["run_rate_minor"] == 2150 and data["mrr_complete"] is True
    assert data["currency"] == "USD" and data["customer_id"] == "cus_1"
    assert data["interval"] == "year" and data["interval_count"] == 1 and data["quantity"] == 3
    assert data["items"] == [
        {
            "price_id": "price_year_1_12000",
            "product_id": "prod_a",
            "quantity": 3,
            "unit_amount_minor": 12000,
            "interval": "year",
            "interval_count": 1,
            "usage_type": "licensed",
            "billing_scheme": "per_unit",
            "discount_coupon_ids": [],
        }
    ]
    assert [d["coupon_id"] for d in data["discounts"]] == ["co_1", "co_2"]
    assert data["discounts"][0]["percent_off"] == "25" and data["discounts"][1]["amount_off_minor"] == 1200
    assert data["current_period_end"] == "2027-02-14T08:00:00Z" and data["canceled_at"] == "2027-01-15T08:00:00Z"
    assert data["source_ids"] == {"stripe": "sub_1"} and data["raw"] == sub
    assert "raw" not in canonical(sub, raw=False, now=NOW)


def test_a_canceled_subscription_keeps_its_run_rate_but_no_mrr() -> None:
    data = canonical(subscription(item(price(1000)), status="canceled"), now=NOW)
    assert data["mrr_minor"] == 0 and data["run_rate_minor"] == 1000 and data["status"] == "canceled"


def test_an_invoice_is_a_canonical_invoice() -> None:
    invoice = {
        "id": "in_1",
        "object": "invoice",
        "customer": {"id": "cus_1", "object": "customer"},
        "status": "paid",
        "total": 2000,
        "amount_due": 2000,
        "amount_paid": 2000,
        "currency": "usd",
        "due_date": None,
        "status_transitions": {"paid_at": 1_800_000_000},
        "parent": {"subscription_details": {"subscription": "sub_1"}},
    }

    data = canonical(invoice, raw=False)

    assert Invoice.model_validate(data).paid_at is not None
    assert data == {
        "id": "in_1",
        "source_ids": {"stripe": "in_1"},
        "customer_id": "cus_1",
        "subscription_id": "sub_1",
        "status": "paid",
        "currency": "USD",
        "total_minor": 2000,
        "amount_due_minor": 2000,
        "amount_paid_minor": 2000,
        "paid_at": "2027-01-15T08:00:00Z",
    }


def test_an_object_the_model_does_not_cover_is_refused() -> None:
    with pytest.raises(ValueError, match="no canonical entity"):
        canonical({"id": "evt_1", "object": "balance_transaction"})
