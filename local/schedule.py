"""EventBridge schedule expressions: `rate(...)`, AWS's 6-field `cron(...)` and `at(...)`.

moto stores schedules but never fires them, and no cron library is pinned here, so this is a
small matcher for exactly AWS's dialect: fields minutes, hours, day-of-month, month, day-of-week
(1 = SUN), year; `, - * /`, month and day names, `?`, `L`, `W` and `#`.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minutes?|hours?|days?)\s*\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_SEARCH_YEARS = 200


class ScheduleExpressionError(ValueError):
    """The expression is not valid EventBridge syntax."""


def zone(name: str | None) -> tzinfo:
    """The IANA time zone of a schedule (UTC when unset)."""
    if not name or name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleExpressionError(f"unknown time zone {name!r}") from None


@dataclass(frozen=True)
class Rate:
    """`rate(N unit)`: fires every interval, counted from the schedule's anchor (creation/start)."""

    interval: timedelta

    def first_due(self, anchor: datetime) -> datetime:
        return anchor + self.interval

    def next_due(self, after: datetime, anchor: datetime) -> datetime:
        if after < anchor:
            return anchor + self.interval
        periods = (after - anchor) // self.interval + 1
        return anchor + periods * self.interval


@dataclass(frozen=True)
class At:
    """`at(yyyy-mm-ddThh:mm:ss)`: fires once."""

    when: datetime

    def first_due(self, anchor: datetime) -> datetime:
        return self.when

    def next_due(self, after: datetime, anchor: datetime) -> datetime | None:
        return None


@dataclass(frozen=True)
class Cron:
    """AWS cron: the first matching minute strictly after a time, evaluated in the schedule's zone."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: str
    months: frozenset[int]
    days_of_week: str
    years: frozenset[int]
    zone: tzinfo

    def first_due(self, anchor: datetime) -> datetime | None:
        return self.next_due(anchor, anchor)

    def next_due(self, after: datetime, anchor: datetime) -> datetime | None:
        local = after.astimezone(self.zone).replace(tzinfo=None, second=0, microsecond=0) + timedelta(minutes=1)
        last_year = min(max(self.years), local.year + _SEARCH_YEARS)
        day = local.date()
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        while day.year <= last_year:
            if self.day_matches(day):
                for hour in hours:
                    for minute in minutes:
                        if day == local.date() and (hour, minute) < (local.hour, local.minute):
                            continue
                        naive = datetime(day.year, day.month, day.day, hour, minute)
                        return naive.replace(tzinfo=self.zone).astimezone(UTC)
            day += timedelta(days=1)
        return None

    def day_matches(self, day: date) -> bool:
        if day.year not in self.years or day.month not in self.months:
            return False
        return _day_of_month_matches(self.days_of_month, day) and _day_of_week_matches(self.days_of_week, day)


Expression = Rate | At | Cron


def parse(expression: str, timezone_name: str | None = None) -> Expression:
    """Parses a schedule expression; `timezone_name` applies to cron() and at()."""
    text = expression.strip()
    rate = _RATE.match(text)
    if rate:
        value = int(rate.group(1))
        if value <= 0:
            raise ScheduleExpressionError(f"{expression}: the rate must be positive")
        return Rate(timedelta(seconds=value * _UNITS[rate.group(2).rstrip("s")]))
    at = _AT.match(text)
    if at:
        return At(datetime.strptime(at.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=zone(timezone_name)))
    cron = _CRON.match(text)
    if cron:
        return _parse_cron(cron.group(1), zone(timezone_name), expression)
    raise ScheduleExpressionError(f"{expression!r} is not a rate(), cron() or at() expression")


def _parse_cron(body: str, tz: tzinfo, expression: str) -> Cron:
    fields = body.split()
    if len(fields) != 6:
        raise ScheduleExpressionError(f"{expression}: cron() needs 6 fields, got {len(fields)}")
    minutes, hours, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise ScheduleExpressionError(f"{expression}: exactly one of day-of-month and day-of-week must be '?'")
    try:
        cron = Cron(
            minutes=_values(minutes, 0, 59),
            hours=_values(hours, 0, 23),
            days_of_month=dom.upper(),
            months=_values(month, 1, 12, _MONTHS),
            days_of_week=dow.upper(),
            years=_values(year, 1970, 2199),
            zone=tz,
        )
        _check_day_field(cron.days_of_month, 1, 31, {})
        _check_day_field(cron.days_of_week, 1, 7, _DAYS)
    except ValueError as exc:
        raise ScheduleExpressionError(f"{expression}: {exc}") from None
    return cron


def _number(text: str, names: dict[str, int]) -> int:
    return names[text.upper()] if text.upper() in names else int(text)


def _values(field: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    """Expands a field of `, - * /` parts (ranges may wrap, e.g. FRI-MON) into its values."""
    names = names or {}
    values: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step <= 0:
            raise ValueError(f"bad step in {part!r}")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _number(first, names), _number(last, names)
        else:
            start = _number(base, names)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high):
            raise ValueError(f"{part!r} is outside {low}-{high}")
        span = list(range(start, end + 1)) if start <= end else [*range(start, high + 1), *range(low, end + 1)]
        values.update(span[::step])
    return frozenset(values)


def _check_day_field(field: str, low: int, high: int, names: dict[str, int]) -> None:
    if field in ("?", "L", "LW"):
        return
    special = re.fullmatch(r"(\w+)(W|L|#(\d))", field)
    if special:
        _number(special.group(1), names)
        return
    _values(field, low, high, names)


def _aws_weekday(day: date) -> int:
    """Day of week numbered as in AWS cron: 1 = Sunday ... 7 = Saturday."""
    return (day.weekday() + 1) % 7 + 1


def _day_of_month_matches(field: str, day: date) -> bool:
    last = calendar.monthrange(day.year, day.month)[1]
    if field == "?":
        return True
    if field == "L":
        return day.day == last
    if field == "LW":
        return day.day == _nearest_weekday(day, last, last)
    if field.endswith("W"):
        target = int(field[:-1])
        return target <= last and day.day == _nearest_weekday(day, target, last)
    return day.day in _values(field, 1, 31)


def _nearest_weekday(day: date, target: int, last: int) -> int:
    """The weekday of the month nearest to day `target`, never crossing into another month."""
    weekday = date(day.year, day.month, target).weekday()
    if weekday == 5:
        return target - 1 if target > 1 else target + 2
    if weekday == 6:
        return target + 1 if target < last else target - 2
    return target


def _day_of_week_matches(field: str, day: date) -> bool:
    if field == "?":
        return True
    if field == "L":
        return _aws_weekday(day) == 7
    if field.endswith("L"):
        last = calendar.monthrange(day.year, day.month)[1]
        return _aws_weekday(day) == _number(field[:-1], _DAYS) and day.day + 7 > last
    if "#" in field:
        weekday, _, nth = field.partition("#")
        return _aws_weekday(day) == _number(weekday, _DAYS) and (day.day - 1) // 7 + 1 == int(nth)
    return _aws_weekday(day) in _values(field, 1, 7, _DAYS)
