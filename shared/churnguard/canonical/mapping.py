"""What a provider's canonical.py offers its sync connector, in one shape for every provider."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


def _all_fields(_source: str) -> frozenset[str] | None:
    return None


@dataclass(frozen=True)
class ProviderMapping:
    """- entity_of(source): the canonical entity a source's rows become (None: they keep their fields);
    - canonical(source, row, raw=...): one row's canonical data;
    - source_fields(source): the fields the mapping reads (None: all), asked for when raw is off."""

    entity_of: Callable[[str], str | None]
    canonical: Callable[..., dict[str, Any]]
    source_fields: Callable[[str], frozenset[str] | None] = _all_fields

    def mapper(self, source: str, *, raw: bool) -> Callable[[Mapping[str, Any]], dict[str, Any]] | None:
        if self.entity_of(source) is None:
            return None

        def canonical(row: Mapping[str, Any]) -> dict[str, Any]:
            return self.canonical(source, row, raw=raw)

        return canonical
