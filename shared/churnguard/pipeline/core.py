"""The record pipeline: rows → canonical entity → filter → field mapping → checks → JSON lines.

Every way data enters (syncs and webhooks; streams and change data capture next) calls
`StreamPipeline.process`, and only `Batch` contents reach a sink, so canonical mapping, field
mapping, validation, dedupe keys and reject handling live here once. The per-row path is plain
dicts, precompiled functions and one orjson call: the parts of a line that are the same for a
whole stream are encoded once, and each row only encodes what varies.
"""

from __future__ import annotations

import base64
from binascii import hexlify
from collections.abc import Callable, Collection, Iterable, Mapping
from copy import copy
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from hashlib import blake2b
from typing import Any

import orjson

from churnguard.canonical.entities import ENTITIES as CANONICAL_ENTITIES
from churnguard.canonical.entities import SCHEMA_VERSION, mapped_onto, tombstone
from churnguard.models import DATABASE_PROVIDERS, IntegrationConfiguration
from churnguard.pipeline.encoding import DUMPS_OPTIONS, default, dumps, loads_exact
from churnguard.pipeline.mapping import FieldMapper, RowFilter, scoped
from churnguard.pipeline.records import Operation
from churnguard.pipeline.validation import MAX_RECORD_BYTES, compile_check, schema_for, statically_valid

Row = Mapping[str, Any]

# A source that encodes rows itself (Stream.encodable) hands over, as UTF-8 JSON bytes, each row's
# record id (a JSON string) under the key column, its cursor (or None) under the cursor column, its
# event time (a JSON string, where the stream has one) under that column, and under this key the
# whole row, each exactly as the Python path would encode it.
ENCODED_DATA = "\x00data"
# A change read from a database's log (cdc) carries its position and commit time in the row under
# these keys; they become the record's cursor and event_time, never part of its data.
CHANGE_CURSOR = "\x00cursor"
CHANGE_TIME = "\x00time"
_CHANGE_FIELDS = frozenset({CHANGE_CURSOR, CHANGE_TIME})


@dataclass(frozen=True)
class StreamContext:
    """What is constant for every record of one stream in one batch."""

    organization_id: str
    integration_id: str
    provider: str
    entity: str
    source: str
    batch_id: str
    primary_key: tuple[str, ...]
    cursor_field: str | None = None
    # The row field holding when the change happened (webhooks, streams): the record's event_time.
    event_time_field: str | None = None


@dataclass
class Batch:
    """Encoded records and rejects waiting to be written together as one part."""

    chunks: list[bytes] = field(default_factory=list)
    rejects: list[bytes] = field(default_factory=list)
    accepted: int = 0
    rejected: int = 0
    filtered: int = 0
    size: int = 0

    def payload(self) -> bytes:
        return b"".join(self.chunks)

    def rejects_payload(self) -> bytes:
        return b"".join(self.rejects)


def record_id_text(value: Any) -> str | None:
    """A primary-key value as the canonical record_id string."""
    kind = value.__class__
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return str(value)
    if value is None:
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def _record_id_function(primary_key: tuple[str, ...]) -> Callable[[Row], str | None]:
    if len(primary_key) == 1:
        (name,) = primary_key
        return lambda row: record_id_text(row.get(name))

    def composite(row: Row) -> str | None:
        parts = [row.get(name) for name in primary_key]
        if any(part is None for part in parts):
            return None
        return dumps(parts).decode()

    return composite


class StreamPipeline:
    def __init__(
        self,
        context: StreamContext,
        *,
        mapper: FieldMapper | None = None,
        row_filter: RowFilter | None = None,
        check: Callable[[Mapping[str, Any]], str | None] | None = None,
        max_record_bytes: int = MAX_RECORD_BYTES,
        encoded: bool = False,
        canonicalize: Callable[[Row], dict[str, Any]] | None = None,
        filter_source_rows: bool = False,
        changes: bool = False,
    ) -> None:
        """`changes`: rows are changes from a database's log, with CHANGE_CURSOR and CHANGE_TIME.
        `canonicalize` turns a provider's row into its canonical entity's data (the provider's
        `canonical.py`); a row it refuses (ValueError) is a reject with the reason. Filters apply
        to the canonical data, or to the source row with `filter_source_rows` (a database row
        mapped onto an entity: its filters name its columns)."""
        if encoded and (mapper is not None or row_filter is not None or check is not None or canonicalize):
            raise ValueError("rows the source encoded can be neither mapped, filtered nor checked per row")
        if changes:
            context = replace(context, cursor_field=CHANGE_CURSOR, event_time_field=CHANGE_TIME)
        self.context = context
        self.encoded = encoded
        self._change_fields = _CHANGE_FIELDS if changes else None
        self._mapper = mapper
        self._filter = row_filter
        self._check = check
        self._canonicalize = canonicalize
        self._filter_source_rows = filter_source_rows or canonicalize is None
        self._max_bytes = max_record_bytes
        self._record_id = _record_id_function(context.primary_key)
        self._single_key = context.primary_key[0] if len(context.primary_key) == 1 else None
        self._dedupe = f"{context.organization_id}\x1f{context.integration_id}\x1f{context.entity}\x1f".encode()
        self._encode_prefixes()

    def _encode_prefixes(self) -> None:
        context = self.context
        constant = {
            "organization_id": context.organization_id,
            "integration_id": context.integration_id,
            "provider": context.provider,
            "entity": context.entity,
            "source": context.source,
            "batch_id": context.batch_id,
            "schema_version": SCHEMA_VERSION,
        }
        # '{"organization_id":…,"operation":"upsert",' — each line appends its own fields to this.
        self._prefixes = {op: orjson.dumps({**constant, "operation": op.value})[:-1] + b"," for op in Operation}
        self._reject_prefix = orjson.dumps(constant)[:-1] + b","

    def for_batch(self, batch_id: str, source: str) -> StreamPipeline:
        """This pipeline writing another batch's records (webhook events): the compiled mapping,
        filter and checks are shared, only the records' batch and source differ."""
        twin = copy(self)
        twin.context = replace(self.context, batch_id=batch_id, source=source)
        twin._encode_prefixes()
        return twin

    def process(self, rows: Iterable[Row], batch: Batch, operation: Operation = Operation.UPSERT) -> None:
        """Appends the encoded records (and rejects) of `rows` to `batch`."""
        if self.encoded:
            self._process_encoded(rows, batch, operation)
        else:
            self._process_rows(rows, batch, operation)

    def _process_rows(self, rows: Iterable[Row], batch: Batch, operation: Operation) -> None:
        prefix = self._prefixes[operation]
        row_filter, mapper, check = self._filter, self._mapper, self._check
        canonicalize, deleting, change_fields = self._canonicalize, operation is Operation.DELETE, self._change_fields
        record_id_of, single_key, cursor_field = self._record_id, self._single_key, self.context.cursor_field
        event_time_field = self.context.event_time_field
        dedupe, max_bytes = self._dedupe, self._max_bytes
        encode, opts, hook = orjson.dumps, DUMPS_OPTIONS, default
        lines: list[bytes] = []
        append = lines.append
        filtered = 0
        data: Any
        source_filter = row_filter if self._filter_source_rows else None
        for row in rows:
            if source_filter is not None and not source_filter(row):
                filtered += 1
                continue
            if single_key is not None:  # the common case, inlined: ints and strings need no call
                record_id = row.get(single_key)
                kind = record_id.__class__
                if kind is not str:
                    record_id = str(record_id) if kind is int else record_id_text(record_id)
            else:
                record_id = record_id_of(row)
            if record_id is None:
                self.reject(batch, row, None, "primary key is null or missing")
                continue
            source = row if change_fields is None else {k: v for k, v in row.items() if k not in change_fields}
            if canonicalize is not None:  # the entity's own id is the record id, on every path
                if (canonical := self._canonical(canonicalize, source, record_id, deleting, batch)) is None:
                    continue
                record_id, source = canonical
            data = mapper(source) if mapper is not None else source
            if check is not None and (reason := check(data)) is not None:
                self.reject(batch, row, record_id, reason)
                continue
            cursor = row.get(cursor_field) if cursor_field is not None else None
            fields = (
                {"record_id": record_id, "cursor": cursor, "data": data}
                if event_time_field is None
                else {"record_id": record_id, "cursor": cursor, "event_time": row.get(event_time_field), "data": data}
            )
            try:
                body = encode(fields, default=hook, option=opts)
            except TypeError as exc:
                self.reject(batch, row, record_id, str(exc))
                continue
            # A version is (id, cursor) when there is a cursor, else the content (`,"data":` cannot
            # occur earlier: quotes inside JSON strings are escaped); for a canonical entity, its
            # content without `raw`, so every path that brings the same state agrees.
            version = (
                _canonical_version(record_id, data)
                if canonicalize is not None
                else body
                if cursor is None
                else body[: body.find(b',"data":')]
            )
            key = hexlify(blake2b(dedupe + version, digest_size=16).digest())
            line = prefix + b'"dedupe_key":"' + key + b'",' + body[1:]
            if len(line) > max_bytes:
                self.reject(batch, row, record_id, f"record is larger than {max_bytes} bytes encoded")
                continue
            append(line)
        batch.filtered += filtered
        self._append(batch, lines)

    def _canonical(
        self,
        canonicalize: Callable[[Row], dict[str, Any]],
        row: Row,
        record_id: str,
        deleting: bool,
        batch: Batch,
    ) -> tuple[str, dict[str, Any]] | None:
        """The row's canonical record id and data (a delete's: only who it was), or None when it
        is rejected or filtered out."""
        try:
            data = canonicalize(row)
        except ValueError as exc:  # pydantic's ValidationError is one
            self.reject(batch, row, record_id, f"not a valid canonical {self.context.entity}: {exc}")
            return None
        if deleting:
            return data["id"], tombstone(self.context.provider, data["id"])
        if self._filter is not None and not self._filter_source_rows and not self._filter(data):
            batch.filtered += 1
            return None
        return data["id"], data

    def _process_encoded(self, rows: Iterable[Row], batch: Batch, operation: Operation) -> None:
        """Rows the source encoded (ENCODED_DATA): the line is assembled from its JSON pieces,
        byte for byte what `_process_rows` writes for the same row, without decoding anything."""
        head = self._prefixes[operation] + b'"dedupe_key":"'
        key_field, cursor_field = self._single_key, self.context.cursor_field
        time_field = self.context.event_time_field
        if key_field is None:
            raise ValueError("encoded rows come from streams with a single-column key")
        dedupe, max_bytes = self._dedupe, self._max_bytes
        lines: list[bytes] = []
        append, join = lines.append, b"".join  # one join per line: `+` copies the growing line each time
        for row in rows:
            record_id = row[key_field]
            if record_id is None:
                self.reject(batch, _fragments(row), None, "primary key is null or missing")
                continue
            cursor = row[cursor_field] if cursor_field is not None else None
            ident = join((b'{"record_id":', record_id, b',"cursor":', b"null" if cursor is None else cursor))
            if time_field is not None:
                event_time = row[time_field]
                ident = join((ident, b',"event_time":', b"null" if event_time is None else event_time))
            data = row[ENCODED_DATA]
            if cursor is None:  # the version is the content, encoded as the Python path encodes it
                version = orjson.dumps(loads_exact(ident + b',"data":' + data + b"}"), option=DUMPS_OPTIONS)
            else:
                version = ident
            key = hexlify(blake2b(dedupe + version, digest_size=16).digest())
            line = join((head, key, b'",', ident[1:], b',"data":', data, b"}"))
            if len(line) > max_bytes:
                self.reject(batch, _fragments(row), orjson.loads(record_id), "record is larger than allowed")
                continue
            append(line)
        self._append(batch, lines)

    @staticmethod
    def _append(batch: Batch, lines: list[bytes]) -> None:
        if lines:
            lines.append(b"")
            chunk = b"\n".join(lines)
            batch.chunks.append(chunk)
            batch.accepted += len(lines) - 1
            batch.size += len(chunk)

    def reject(self, batch: Batch, row: Row, record_id: str | None, reason: str) -> None:
        """Rejects keep the raw row, so a fixed mapping or schema can replay them."""
        body = {"record_id": record_id, "reason": reason, "raw": row}
        try:
            encoded = orjson.dumps(body, default=default, option=DUMPS_OPTIONS)
        except TypeError:
            encoded = orjson.dumps(body, default=_lenient, option=DUMPS_OPTIONS)
        line = self._reject_prefix + encoded[1:] + b"\n"
        batch.rejects.append(line)
        batch.rejected += 1
        batch.size += len(line)


def _canonical_version(record_id: str, data: Mapping[str, Any]) -> bytes:
    """A canonical record's version: its id and content without the provider's object, which
    differs in form between paths (an API's answer, an event's snapshot) for the same state."""
    content = {"record_id": record_id, "data": {k: v for k, v in data.items() if k != "raw"}}
    return orjson.dumps(content, default=default, option=DUMPS_OPTIONS | orjson.OPT_SORT_KEYS)


def _fragments(row: Row) -> dict[str, Any]:
    """An encoded row as JSON again (its values are JSON text), for a reject's raw row."""
    return {
        ("data" if name == ENCODED_DATA else name): None if value is None else orjson.Fragment(value)
        for name, value in row.items()
    }


def _lenient(value: Any) -> Any:
    try:
        return default(value)
    except TypeError:
        return str(value)


def build_pipeline(
    config: IntegrationConfiguration,
    *,
    entity: str,
    source: str,
    batch_id: str,
    primary_key: tuple[str, ...],
    cursor_field: str | None,
    entities: Collection[str],
    record_entity: str | None = None,
    column_kinds: Mapping[str, str] | None = None,
    encodable: bool = False,
    canonicalize: Callable[[Row], dict[str, Any]] | None = None,
    changes: bool = False,
) -> StreamPipeline:
    """The pipeline of one entity of an integration, from its configuration (`entity`: the
    integration's name for it, which scopes mappings and filters; `record_entity`: the entity its
    records carry, a canonical one where the provider maps the source onto one).

    `changes`: rows are changes read from the database's log (see StreamPipeline).

    When the source can encode rows itself (`encodable`) and nothing needs a row as a dict (no
    mapping, no filter, a schema the column kinds satisfy), the pipeline takes the source's
    encoding (`encoded`): the fast path, where the database does the per-column work.

    Raises ValueError for a data filter that does not compile; registration validates filters
    with the same code, so that only happens for configurations stored before a rule existed.
    """
    sync = config.sync_config
    mappings = scoped(sync.field_mappings, entity, entities)
    filters = scoped(sync.data_filters, entity, entities)
    target = record_entity or entity
    provider = config.provider_name.value
    database = config.provider_name in DATABASE_PROVIDERS
    mapper = FieldMapper(mappings) if mappings else None
    filter_source_rows = False
    if canonicalize is None and mapper is not None and target in CANONICAL_ENTITIES and database:
        # Database rows mapped onto a canonical entity become that entity, validated as it.
        canonicalize = _mapped_onto(target, provider, mapper, primary_key, raw=sync.include_raw)
        mapper, filter_source_rows = None, True
    # A canonical entity is validated by its model as it is built; other rows by the entity's checks.
    schema = schema_for(entity) if canonicalize is None else None
    encoded = (
        canonicalize is None
        and not changes
        and encodable
        and not mappings
        and not filters
        and (schema is None or statically_valid(schema, column_kinds or {}))
    )
    return StreamPipeline(
        StreamContext(
            organization_id=config.organization_id,
            integration_id=config.integration_id,
            provider=provider,
            entity=target,
            source=source,
            batch_id=batch_id,
            primary_key=primary_key,
            cursor_field=cursor_field,
        ),
        mapper=mapper,
        row_filter=RowFilter(filters) if filters else None,
        check=compile_check(schema) if schema is not None and not encoded else None,
        encoded=encoded,
        canonicalize=canonicalize,
        filter_source_rows=filter_source_rows,
        changes=changes,
    )


def _mapped_onto(
    entity: str, provider: str, mapper: FieldMapper, primary_key: tuple[str, ...], *, raw: bool
) -> Callable[[Row], dict[str, Any]]:
    record_id_of = _record_id_function(primary_key)

    def canonicalize(row: Row) -> dict[str, Any]:
        data = mapped_onto(entity, provider, record_id_of(row) or "", mapper(row))
        if raw:
            data["raw"] = dict(row)
        return data

    return canonicalize
