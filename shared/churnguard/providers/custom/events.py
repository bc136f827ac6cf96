"""Custom webhook events as changes: the endpoint names the entity and where in the event the
record id, the event time and the delete event types are."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from churnguard.inbound.changes import GENERIC_ENTITY, Change, epoch, parse_time
from churnguard.inbound.parsing import lookup
from churnguard.inbound.queued import ProviderEvent
from churnguard.pipeline.records import Operation


def changes(event: ProviderEvent, endpoint: Mapping[str, Any]) -> list[Change]:
    payload = event.payload
    time_field = endpoint.get("event_time_field")
    occurred_at = (parse_time(lookup(payload, str(time_field))) if time_field else None) or epoch(event.received_at)
    id_field = endpoint.get("record_id_field")
    record_id = lookup(payload, str(id_field)) if id_field else event.event_id
    entity = str(endpoint.get("entity") or GENERIC_ENTITY)
    data = dict(payload) if isinstance(payload, dict) else {"payload": payload}
    record = None if record_id is None or isinstance(record_id, dict | list) else str(record_id)
    operation = Operation.DELETE if event.event_type in (endpoint.get("delete_event_types") or ()) else Operation.UPSERT
    return [Change(entity, record or "", operation, occurred_at, data)]
