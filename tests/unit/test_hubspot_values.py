"""HubSpot's string property values typed by their definitions, and the request windows."""

from __future__ import annotations

from decimal import Decimal

import pytest

from churnguard.connectors.hubspot import WINDOW_MARGIN, _bool, _number, _row, _Window


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42),
        ("-7", -7),
        ("1250.50", 1250.5),
        ("1e3", 1000.0),
        ("12345678901234567890", 12345678901234567890),
        ("0.12345678901234567", Decimal("0.12345678901234567")),
        ("", None),
        ("not a number", None),
        ("NaN", None),
    ],
)
def test_numbers_are_exact_and_json_numbers_where_a_double_holds_them(text: str, expected: object) -> None:
    value = _number(text)
    assert value == expected and type(value) is type(expected)


def test_bools_and_rows() -> None:
    assert (_bool("true"), _bool("False"), _bool("")) == (True, False, None)
    row = _row(
        {
            "id": "7",
            "properties": {"amount": "10", "hs_is_closed": "false", "dealname": "X", "id": "no", "closedate": None},
            "createdAt": "2024-01-01T00:00:00.000Z",
            "archived": False,
        },
        {"amount": _number, "hs_is_closed": _bool, "closedate": _number},
    )
    assert row == {
        "amount": 10,
        "hs_is_closed": False,
        "dealname": "X",
        "id": "7",
        "closedate": None,
        "createdAt": "2024-01-01T00:00:00.000Z",
        "archived": False,
    }


def test_a_window_waits_for_its_oldest_request_and_for_hubspots_remaining_count() -> None:
    window = _Window(2, 1.0)
    window.take(0.0, waited=False)
    window.take(0.2, waited=False)
    assert window.delay(0.3) == pytest.approx(1.0 + WINDOW_MARGIN - 0.3)  # until the oldest leaves
    assert window.delay(1.2) == 0.0
    window.observe(None, None, 0)  # others spent the window
    assert window.delay(1.2) == pytest.approx(0.2 + 1.0 + WINDOW_MARGIN - 1.2)
    window.take(1.3, waited=True)
    assert window.budget == 0
    window.observe(10, 10.0, 5)
    assert (window.limit, window.seconds, window.budget) == (10, 10.0, 5)
