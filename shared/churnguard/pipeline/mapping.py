"""Field mappings and data filters, compiled once per stream into plain functions over dicts.

`SyncConfiguration.field_mappings` maps a source field to a canonical field; either side may be a
dotted path into nested data (`profile.plan` → `plan`, `city` → `address.city`). A key may be
scoped to one entity with an `entity:` prefix (`customer:email_address`); unscoped keys apply to
every entity. With no mapping for an entity, its records carry every source field unchanged; with
mappings, they carry exactly the mapped fields (a projection, so unmapped columns, PII included,
stay out of the lake). A source path is looked up as a literal key first, then as a dotted path.

`SyncConfiguration.data_filters` keeps only the rows that match every condition, on source
fields (same scoping and paths). A condition is a value (equality; `null` matches null or
missing), a list (membership) or an object of operators: `$eq $ne $in $nin $gt $gte $lt $lte
$exists`. Comparing a datetime or Decimal field with a string operand parses the operand once.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

Row = Mapping[str, Any]
RowFunction = Callable[[Row], Any]

_MISSING = object()
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}
FILTER_OPERATORS = frozenset({"$eq", "$ne", "$in", "$nin", "$exists", *_COMPARISONS})


def scoped(settings: Mapping[str, Any], entity: str, entities: Collection[str]) -> dict[str, Any]:
    """The settings that apply to `entity`: unscoped keys, then `entity:`-scoped ones over them."""
    general: dict[str, Any] = {}
    specific: dict[str, Any] = {}
    for key, value in settings.items():
        scope, sep, path = key.partition(":")
        if sep and scope in entities:
            if scope == entity:
                specific[path] = value
        else:
            general[key] = value
    return general | specific


def root(path: str) -> str:
    """The top-level field a path starts in (what a projection has to fetch)."""
    return path.split(".", 1)[0]


def required_fields(mappings: Mapping[str, str], filters: Mapping[str, Any]) -> frozenset[str] | None:
    """Top-level source fields a stream's mappings and filters read, or None (no mapping: all
    fields). The connector adds the primary key and cursor."""
    if not mappings:
        return None
    return frozenset(root(path) for path in (*mappings, *filters))


def _getter(path: str) -> Callable[[Row], Any]:
    """Reads `path`, returning _MISSING when absent: the literal key first, then nested."""
    parts = tuple(path.split("."))
    if len(parts) == 1:
        return lambda row: row.get(path, _MISSING)

    def get(row: Row) -> Any:
        value: Any = row.get(path, _MISSING)
        if value is not _MISSING:
            return value
        value = row
        for part in parts:
            if not isinstance(value, Mapping):
                return _MISSING
            value = value.get(part, _MISSING)
            if value is _MISSING:
                return _MISSING
        return value

    return get


def value_getter(path: str) -> Callable[[Row], Any]:
    """Reads `path` (a literal key first, then nested), None when absent."""
    get = _getter(path)

    def value(row: Row) -> Any:
        found = get(row)
        return None if found is _MISSING else found

    return value


class FieldMapper:
    """Source row → canonical data. Flat mappings take a C-level fast path (itemgetter + zip)."""

    def __init__(self, mappings: Mapping[str, str]) -> None:
        self.pairs = tuple(mappings.items())
        self.source_roots = frozenset(root(source) for source, _ in self.pairs)
        sources = [source for source, _ in self.pairs]
        self._targets = tuple(target for _, target in self.pairs)
        flat = all("." not in s for s in sources) and all("." not in t for t in self._targets)
        self._fast = operator.itemgetter(*sources) if flat and len(sources) > 1 else None
        self._getters = tuple((_getter(source), tuple(target.split("."))) for source, target in self.pairs)

    def __call__(self, row: Row) -> dict[str, Any]:
        if self._fast is not None:
            try:
                return dict(zip(self._targets, self._fast(row), strict=True))
            except KeyError:
                pass
        data: dict[str, Any] = {}
        for get, target in self._getters:
            value = get(row)
            if value is _MISSING:
                continue
            node = data
            for part in target[:-1]:
                node = node.setdefault(part, {})
            node[target[-1]] = value
        return data


def _coerce_like(sample: Any, operand: Any) -> Any:
    """A string operand read as the field's type (a datetime, date or Decimal), else unchanged."""
    if not isinstance(operand, str):
        return operand
    try:
        if isinstance(sample, datetime):
            return datetime.fromisoformat(operand)
        if isinstance(sample, date):
            return date.fromisoformat(operand)
        if isinstance(sample, Decimal):
            return Decimal(operand)
    except (ValueError, InvalidOperation):
        return operand
    return operand


def _comparison(compare: Callable[[Any, Any], bool], operand: Any) -> Callable[[Any], bool]:
    coerced: dict[type, Any] = {}

    def test(value: Any) -> bool:
        if value is _MISSING or value is None:
            return False
        kind = type(value)
        if kind not in coerced:
            coerced[kind] = _coerce_like(value, operand)
        try:
            return compare(value, coerced[kind])
        except TypeError:
            return False

    return test


def _condition(condition: Any) -> Callable[[Any], bool]:
    if isinstance(condition, list):
        return _condition({"$in": condition})
    if not isinstance(condition, dict):
        return _condition({"$eq": condition})
    unknown = set(condition) - FILTER_OPERATORS
    if unknown:
        raise ValueError(f"unknown filter operator(s): {', '.join(sorted(unknown))}")
    tests: list[Callable[[Any], bool]] = []
    for op, operand in condition.items():
        if op in _COMPARISONS:
            tests.append(_comparison(_COMPARISONS[op], operand))
        elif op in {"$eq", "$ne"}:
            equal = _comparison(operator.eq, operand) if operand is not None else _is_null
            tests.append(equal if op == "$eq" else _negate(equal))
        elif op in {"$in", "$nin"}:
            if not isinstance(operand, list):
                raise ValueError(f"{op} needs a list")
            options = [_condition({"$eq": item}) for item in operand]

            def member(value: Any, options: list[Callable[[Any], bool]] = options) -> bool:
                return any(option(value) for option in options)

            tests.append(member if op == "$in" else _negate(member))
        else:  # $exists
            tests.append((lambda v: v is not _MISSING) if operand else (lambda v: v is _MISSING))
    return lambda value: all(test(value) for test in tests)


def _is_null(value: Any) -> bool:
    return value is None or value is _MISSING


def _negate(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: not test(value)


class RowFilter:
    """True for the rows a sync keeps. Raises ValueError at compile time for a bad condition."""

    def __init__(self, filters: Mapping[str, Any]) -> None:
        self.source_roots = frozenset(root(path) for path in filters)
        self._checks = tuple((_getter(path), _condition(condition)) for path, condition in filters.items())

    def __call__(self, row: Row) -> bool:
        return all(test(get(row)) for get, test in self._checks)
