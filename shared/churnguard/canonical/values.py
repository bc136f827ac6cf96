"""Reading provider values into canonical ones, whether the provider sent them typed (an API's
JSON, a driver's row) or as text (an outbound message, a form post): the same value gives the
same canonical value by every path."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

# ISO 4217 currencies without a minor unit, and those with three decimals; the rest have two.
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF"}
    | {"XPF"}
)
THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})


def text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    return None


def decimal(value: Any) -> Decimal | None:
    """An exact number (never through a float's rounding), or None."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def integer(value: Any) -> int | None:
    number = decimal(value)
    return int(number) if number is not None and number == number.to_integral_value() else None


def currency(value: Any) -> str | None:
    return value.upper() if isinstance(value, str) and len(value) == 3 and value.isalpha() else None


def minor_units(amount: Any, code: str | None) -> int | None:
    """An amount in major units (63.5 dollars) as an integer of the currency's minor unit; a
    currency that is not known is taken to have two decimals."""
    number = decimal(amount)
    if number is None:
        return None
    exponent = 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2
    return int((number * 10**exponent).to_integral_value())


def iso_time(value: Any) -> datetime | None:
    """A datetime, a date (midnight UTC) or ISO-8601 text (`…+0000`, `…Z`, a bare date); a
    time without an offset is UTC."""
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
