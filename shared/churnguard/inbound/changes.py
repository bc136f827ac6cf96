"""A provider event as canonical changes: entity, record id, operation, event time and data.

Each provider's events.py turns its events into Changes. Where the event carries the object
(Stripe, Salesforce outbound messages, Mailchimp audience events, SendGrid events), it becomes its
canonical entity through the provider's canonical.py, the mapping the sync path calls (`canonical`
changes). HubSpot's events name a property change, not the object: they stay partial changes of
the canonical entity's record. Events a provider does not model become an `event` record carrying
the provider's object, so nothing accepted is silently dropped. Every change carries its event
time, which decides the order in which changes to one record apply; `ordering_key` narrows that
to a field where a provider sends partial updates (HubSpot property changes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from churnguard.inbound.queued import ProviderEvent
from churnguard.pipeline.records import Operation

GENERIC_ENTITY = "event"


@dataclass(frozen=True)
class Change:
    entity: str
    record_id: str
    operation: Operation
    occurred_at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    ordering_key: str | None = None
    # `data` is a canonical entity's, from the provider's canonical.py (as the sync path writes it).
    canonical: bool = False
    # The event's object lacks what the source has (a Stripe subscription's discounts are ids):
    # the processor re-reads it from the integration's source when it can.
    incomplete: bool = False


def epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def parse_time(value: Any) -> datetime | None:
    """ISO-8601 text, epoch seconds or epoch milliseconds (numbers past 10^11 are milliseconds)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return epoch(value / 1000 if value > 1e11 else value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.replace(".", "", 1).isdigit():
            return parse_time(float(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def compact(data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}


def generic_change(event: ProviderEvent, occurred_at: datetime) -> Change:
    return Change(
        GENERIC_ENTITY,
        event.event_id,
        Operation.UPSERT,
        occurred_at,
        {"event_type": event.event_type, "payload": event.payload},
    )


def include_raw(endpoint: Mapping[str, Any]) -> bool:
    """Whether the endpoint keeps the provider's object under `raw` (it does unless turned off)."""
    return endpoint.get("include_raw", True) is not False
