"""Stream messages: where each came from, how its payload decodes, and what record it becomes.

A message's position (Kafka offset, Kinesis sequence number, Redis entry id) orders it within
its partition; its identity is what makes it the same message when it arrives twice: the
position for sources that have one, the `event_id_field` (else a hash of the content) for
WebSocket and HTTPS events, which reach the pipeline through the ingest stream.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import blake2b
from typing import Any

import orjson

from churnguard.canonical.entities import ENTITIES, mapped_onto
from churnguard.pipeline.core import ENCODED_DATA
from churnguard.pipeline.mapping import FieldMapper, RowFilter, value_getter
from churnguard.stream_models import DataFormat, StreamConfiguration

MAX_ROWS_PER_MESSAGE = 10_000
UTC_TEXT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


class UndecodableMessage(ValueError):
    """The payload is not what the stream's data format says."""


@dataclass(frozen=True)
class StreamMessage:
    partition: str
    position: str
    payload: bytes
    arrived_at: float  # epoch seconds at the source (Kafka timestamp, Kinesis arrival)
    identity: str | None = None  # set for events that came through the ingest stream
    attempts: int = 1


def position_order(position: str) -> tuple[int, ...]:
    """Offsets and sequence numbers are integers; Redis ids are `<ms>-<seq>`."""
    return tuple(int(part) for part in position.split("-"))


def content_identity(payload: bytes) -> str:
    return "h" + blake2b(payload, digest_size=16).hexdigest()


def ingest_identity(payload: bytes, event_id: Any) -> str:
    """An HTTPS or WebSocket event's identity: its event id when it has one, else its content."""
    if event_id is not None and not isinstance(event_id, dict | list) and str(event_id):
        return "e" + blake2b(str(event_id).encode(), digest_size=16).hexdigest()
    return content_identity(payload)


def decode_rows(payload: bytes, data_format: DataFormat) -> list[dict[str, Any]]:
    """The rows one message carries; UndecodableMessage says why there are none."""
    try:
        if data_format is DataFormat.JSON:
            value = orjson.loads(payload)
            rows = value if isinstance(value, list) else [value]
        elif data_format is DataFormat.JSONL:
            rows = [orjson.loads(line) for line in payload.splitlines() if line.strip()]
        elif data_format is DataFormat.CSV:
            reader = csv.DictReader(io.StringIO(payload.decode("utf-8")))
            rows = [dict(row) for row in reader]
        else:
            return [{"text": line} for line in payload.decode("utf-8").splitlines() if line.strip()]
    except (orjson.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
        raise UndecodableMessage(f"not {data_format.value}: {exc}") from None
    if not all(isinstance(row, dict) for row in rows):
        raise UndecodableMessage(f"a {data_format.value} message must hold objects")
    if len(rows) > MAX_ROWS_PER_MESSAGE:
        raise UndecodableMessage(f"more than {MAX_ROWS_PER_MESSAGE} rows in one message")
    return rows


def parse_event_time(value: Any) -> datetime | None:
    """ISO-8601 text, or epoch seconds or milliseconds; None when absent or unreadable."""
    if isinstance(value, str) and UTC_TEXT.match(value):  # the common shape, without the general parser
        return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return None


class RecordBuilder:
    """One stream's messages → the rows its pipeline takes. Built once per configuration.

    A canonical entity becomes an envelope per row (record id, position, event time and the
    entity's data, validated as that entity). Any other entity keeps its rows as they are (or as
    `field_mappings` rename them), already encoded, so the pipeline assembles each record from
    JSON pieces: a message that is one JSON object is passed through without being encoded again.
    """

    def __init__(self, config: StreamConfiguration) -> None:
        self.config = config
        self.provider = config.stream_type.value
        self.canonical = config.entity in ENTITIES
        self._mapper = FieldMapper(config.field_mappings) if config.field_mappings else None
        self._filter = RowFilter(config.filters) if config.filters else None
        self._record_id = value_getter(config.record_id_field) if config.record_id_field else None
        self._event_time = value_getter(config.event_time_field) if config.event_time_field else None
        self._event_type: Callable[[Mapping[str, Any]], Any] = lambda row: row.get("event_type", row.get("type"))
        self._pass_through = (
            not self.canonical and config.data_format is DataFormat.JSON and not self._mapper and not self._filter
        )

    def rows(self, message: StreamMessage, identity: str) -> list[dict[str, Any]]:
        """Raises UndecodableMessage, or ValueError when a row does not fit the entity."""
        if self._pass_through:
            try:
                value = orjson.loads(message.payload)
            except orjson.JSONDecodeError as exc:
                raise UndecodableMessage(f"not json: {exc}") from None
            if isinstance(value, dict):
                # JSON lines cannot hold a raw newline: a pretty-printed object is encoded again.
                data = message.payload if b"\n" not in message.payload else orjson.dumps(value)
                return [self._encoded(value, data, identity, message)]
        decoded = decode_rows(message.payload, self.config.data_format)
        several = len(decoded) > 1
        kept = [
            (row, f"{identity}#{index}" if several else identity)
            for index, row in enumerate(decoded)
            if self._filter is None or self._filter(row)
        ]
        if self.canonical:
            return [self.envelope(row, fallback, message) for row, fallback in kept]
        return [
            self._encoded(row, orjson.dumps(self._mapper(row) if self._mapper is not None else row), fallback, message)
            for row, fallback in kept
        ]

    def _record_id_of(self, row: Mapping[str, Any], fallback: str) -> str:
        if self._record_id is None:
            return fallback
        found = self._record_id(row)
        if found is None or isinstance(found, dict | list):
            raise ValueError(f"record_id_field {self.config.record_id_field!r} is missing or not a value")
        return str(found)

    def _occurred(self, row: Mapping[str, Any], message: StreamMessage) -> datetime:
        occurred = parse_event_time(self._event_time(row)) if self._event_time is not None else None
        return occurred if occurred is not None else datetime.fromtimestamp(message.arrived_at, UTC)

    def _encoded(self, row: Mapping[str, Any], data: bytes, fallback: str, message: StreamMessage) -> dict[str, Any]:
        return {
            "id": orjson.dumps(self._record_id_of(row, fallback)),
            "position": orjson.dumps(message.position),
            "event_time": orjson.dumps(self._occurred(row, message)),
            ENCODED_DATA: data,
        }

    def envelope(self, row: dict[str, Any], fallback_id: str, message: StreamMessage) -> dict[str, Any]:
        """A canonical entity's row; raises ValueError (pydantic's ValidationError is one) when the
        row does not fit it."""
        record_id = self._record_id_of(row, fallback_id)
        occurred = self._occurred(row, message)
        fields = self._mapper(row) if self._mapper is not None else None
        if fields is None and self.config.entity == "event":
            fields = {"event_type": _text(self._event_type(row)), "occurred_at": occurred, "payload": row}
        data = mapped_onto(self.config.entity, self.provider, record_id, fields if fields is not None else row)
        if self.config.include_raw:
            data["raw"] = row
        return {"id": record_id, "position": message.position, "event_time": occurred.isoformat(), "data": data}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
