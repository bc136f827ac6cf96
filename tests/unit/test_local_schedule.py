"""EventBridge schedule expressions as the local cloud fires them: rate, AWS cron and at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from local.schedule import At, Cron, Rate, ScheduleExpressionError, parse


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_rate_counts_from_the_anchor() -> None:
    expression = parse("rate(5 minutes)")
    assert expression == Rate(timedelta(minutes=5))
    anchor = utc(2026, 1, 1, 10, 0, 30)
    assert expression.first_due(anchor) == utc(2026, 1, 1, 10, 5, 30)
    assert expression.next_due(utc(2026, 1, 1, 10, 5, 30), anchor) == utc(2026, 1, 1, 10, 10, 30)
    assert expression.next_due(utc(2026, 1, 1, 11, 0, 0), anchor) == utc(2026, 1, 1, 11, 0, 30)
    assert parse("rate(1 day)") == Rate(timedelta(days=1))
    assert parse("rate(1 hour)") == Rate(timedelta(hours=1))


def test_at_fires_once_in_its_time_zone() -> None:
    expression = parse("at(2026-03-01T09:30:00)", "Europe/Berlin")
    assert isinstance(expression, At)
    assert expression.first_due(utc(2020, 1, 1)) == utc(2026, 3, 1, 8, 30)
    assert expression.next_due(utc(2026, 3, 1, 9), utc(2020, 1, 1)) is None


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("cron(0/15 * * * ? *)", utc(2026, 1, 1, 10, 7), utc(2026, 1, 1, 10, 15)),
        ("cron(0 3 * * ? *)", utc(2026, 1, 1, 3, 0), utc(2026, 1, 2, 3, 0)),
        ("cron(30 8 ? * MON-FRI *)", utc(2026, 1, 2, 9, 0), utc(2026, 1, 5, 8, 30)),
        ("cron(0 0 L * ? *)", utc(2026, 2, 3), utc(2026, 2, 28)),
        ("cron(0 0 L * ? *)", utc(2028, 2, 3), utc(2028, 2, 29)),
        ("cron(0 12 ? * 6#3 *)", utc(2026, 1, 1), utc(2026, 1, 16, 12)),
        ("cron(0 12 ? * 2L *)", utc(2026, 1, 1), utc(2026, 1, 26, 12)),
        ("cron(0 9 1W * ? *)", utc(2026, 1, 30), utc(2026, 2, 2, 9)),
        ("cron(0 9 1W * ? *)", utc(2026, 7, 15), utc(2026, 8, 3, 9)),
        ("cron(0 9 15W * ? *)", utc(2026, 3, 1), utc(2026, 3, 16, 9)),
        ("cron(0 10 1 JAN,JUL ? *)", utc(2026, 1, 2), utc(2026, 7, 1, 10)),
        ("cron(0 10 ? * FRI-MON *)", utc(2026, 1, 6), utc(2026, 1, 9, 10)),
        ("cron(5 0 1 1 ? 2030)", utc(2026, 6, 1), utc(2030, 1, 1, 0, 5)),
        ("cron(5 0 1 1 ? 2025)", utc(2026, 6, 1), None),
    ],
)
def test_cron_next_due(expression: str, after: datetime, expected: datetime | None) -> None:
    cron = parse(expression)
    assert isinstance(cron, Cron)
    assert cron.next_due(after, after) == expected


def test_cron_in_a_time_zone_follows_daylight_saving() -> None:
    cron = parse("cron(0 9 * * ? *)", "America/New_York")
    assert cron.first_due(utc(2026, 1, 15)) == utc(2026, 1, 15, 14)
    assert cron.first_due(utc(2026, 7, 15)) == utc(2026, 7, 15, 13)


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 3 * * * *)",
        "cron(0 3 * *)",
        "cron(60 3 * * ? *)",
        "cron(0 3 ? 13 MON *)",
        "rate(0 minutes)",
        "rate(5 weeks)",
        "every 5 minutes",
        "at(2026-01-01)",
    ],
)
def test_invalid_expressions_are_rejected(expression: str) -> None:
    with pytest.raises(ScheduleExpressionError):
        parse(expression)


def test_unknown_time_zone_is_rejected() -> None:
    with pytest.raises(ScheduleExpressionError, match="time zone"):
        parse("cron(0 3 * * ? *)", "Mars/Olympus")
