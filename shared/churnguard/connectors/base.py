"""The connector SDK: what every source provides, and the resilience it gets for free.

A connector declares one stream per entity (`entity_mappings`: entity → table or collection;
`source_options`: a query, a primary key or cursor override), checks its connection, estimates
row counts for progress, and reads pages in (cursor, primary key) order from a `Position`. After
each page the position is the last row's (cursor, key); a sync stores it as a small JSON state
(`state_of`) and resumes from it (`position_of`), so rows sharing a cursor value across a page
boundary are neither lost nor read twice.

Subclasses implement the `_`-prefixed primitives and `translate` (driver exception → SourceError
with a message of our own: driver messages can name the user, so they never reach a response,
log or record). The base class routes every call through the integration's Guard (retry policy,
rate limit, circuit breaker) and re-opens a read from the last page's position when a transient
error breaks it.

Adding a provider: one module with a Connector subclass, one entry in `registry`.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from functools import partial
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from pydantic import ConfigDict, computed_field

from churnguard.canonical.mapping import ProviderMapping
from churnguard.connectors.lookback import LookbackFilter, Recent, start_of_next_read
from churnguard.errors import ChurnGuardError
from churnguard.models import (
    DataSyncMode,
    IntegrationConfiguration,
    IntegrationCredentials,
    Model,
    ProviderName,
    SourceOptions,
)
from churnguard.pipeline.mapping import required_fields, scoped
from churnguard.resilience import Guard, ProviderLimits

T = TypeVar("T")


class CheckStatus(StrEnum):
    OK = "ok"
    UNREACHABLE = "unreachable"
    AUTHENTICATION_FAILED = "authentication_failed"
    MISSING_OBJECT = "missing_object"
    MISSING_PRIVILEGES = "missing_privileges"
    INVALID_CONFIGURATION = "invalid_configuration"
    ERROR = "error"


class SourceError(ChurnGuardError):
    """A source failed in a way retrying will not fix (credentials, a missing table, privileges,
    configuration). `kind` says which."""

    status_code = 502
    code = "source_error"
    retryable = False

    def __init__(
        self,
        kind: CheckStatus,
        message: str,
        *,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, {"kind": kind.value, **(details or {})})
        self.kind = kind
        self.retry_after = retry_after


class ReReadUnavailable(Exception):
    """An integration cannot re-read single objects: it has no credentials, or its source
    cannot. Nothing is wrong; its webhook events land as they came."""


class TransientSourceError(SourceError):
    """A source failed in a way that may pass: unreachable, timed out, overloaded. The retry
    policy retries it within an invocation; its class name lets Step Functions retry it across."""

    retryable = True


class SourcePausedError(TransientSourceError):
    """The source asked for a long pause (an API allocation spent until its window rolls on).
    Not retried inside the invocation; the state machine has its own, patient Retry rule for
    this class, and the engine holds the integration's lock for the pause, so the run resumes
    from its checkpoint instead of being taken over. Not a failure for the circuit breaker."""

    retryable = False
    throttled = True


class ThrottledError(TransientSourceError):
    """The source asked us to slow down (HTTP 429, a rate-limit header at zero). Retried after
    `retry_after` like any transient error, but the source is healthy: the circuit breaker does
    not count it as a failure."""

    throttled = True


class StreamCheck(Model):
    entity: str
    source: str
    status: CheckStatus
    message: str
    primary_key: list[str] = []
    cursor_field: str | None = None
    sync_modes: list[DataSyncMode] = []


class ConnectionCheck(Model):
    """Result of testing an integration's connection, one entry per configured entity."""

    status: CheckStatus
    message: str
    streams: list[StreamCheck] = []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.status is CheckStatus.OK


class Stream(Model):
    """One entity's source, as discovered; stored with a sync run so every step reads the same."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entity: str
    source: str  # table or collection name, or `query:<entity>`
    primary_key: tuple[str, ...]
    cursor_field: str | None
    sync_modes: frozenset[DataSyncMode]
    query: str | None = None
    fields: tuple[str, ...] | None = None  # what to read; None: everything
    json_fields: tuple[str, ...] = ()  # text columns holding JSON (MariaDB's JSON type)
    # Column → kind (see pipeline.validation.KIND_TYPES), where the catalog says; and whether the
    # source can encode whole rows itself (`read(encoded=True)`).
    column_kinds: dict[str, str] = {}
    encodable: bool = False
    # Seconds an incremental read starts before the last one's start (see `lookback`); 0: none.
    lookback_seconds: int = 0
    # The canonical entity its rows become (several streams may share one: SendGrid's
    # suppression lists are all email events); None: rows keep their fields, under `entity`.
    canonical_entity: str | None = None

    @property
    def record_entity(self) -> str:
        """The entity its records carry."""
        return self.canonical_entity or self.entity


@dataclass(frozen=True)
class Position:
    """Where reading stands, in (cursor, primary key) order.

    - key is None and cursor is None: from the beginning;
    - key is None and cursor is set: every row whose cursor is at or after `cursor`;
    - key is set: every row after (cursor, key); cursor None is the region of rows whose cursor
      is null, which sorts first.
    """

    cursor: Any = None
    key: tuple[Any, ...] | None = None
    # The rows near the lookback window, for streams that have one (see `lookback`).
    recent: Recent | None = None


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    position: Position  # resume point after this page
    # Rows the source reports deleted (a Stripe `*.deleted` event, Salesforce `IsDeleted`, a
    # HubSpot archived object): recorded with operation "delete".
    deleted: list[dict[str, Any]] = field(default_factory=list)
    # What the run's history should show about this page (see SyncRun.notes).
    notes: tuple[str, ...] = ()


def _base64(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(value).decode("ascii")


# datetime before date: a datetime is a date too.
_STATE_ENCODERS: tuple[tuple[type | tuple[type, ...], str, Callable[[Any], str]], ...] = (
    (datetime, "$datetime", datetime.isoformat),
    (date, "$date", date.isoformat),
    (time, "$time", time.isoformat),
    (Decimal, "$decimal", str),
    (UUID, "$uuid", str),
    ((bytes, bytearray, memoryview), "$base64", _base64),
)
_STATE_DECODERS: dict[str, Callable[[str], Any]] = {
    "$datetime": datetime.fromisoformat,
    "$date": date.fromisoformat,
    "$time": time.fromisoformat,
    "$decimal": Decimal,
    "$uuid": UUID,
    "$base64": base64.b64decode,
}


CredentialsSaver = Callable[[IntegrationCredentials], object]


@dataclass(frozen=True)
class QuotaReading:
    """How much of a provider's daily request allocation the account has used, as the provider
    last said (Salesforce's Sforce-Limit-Info, HubSpot's X-HubSpot-RateLimit-Daily headers)."""

    used: int
    limit: int
    what: str


class Connector(ABC):
    provider: ClassVar[ProviderName]
    # Databases: opening a query (or any other call) is the request the rate limit counts;
    # fetching more rows of it is not. HTTP connectors take a slot per HTTP request themselves
    # and set this False, so no call holds a slot while its requests wait for another.
    slot_per_read: ClassVar[bool] = True
    # Databases meter nothing per request: the pool of one connection per sync is the limit.
    limits: ClassVar[ProviderLimits] = ProviderLimits(100_000, 5, "no request limit; one connection per sync")
    # The lookback window of incremental reads with a time cursor, unless source_options set one.
    lookback_seconds: ClassVar[int] = 0
    # Whether pages come in ascending cursor order (the lookback then reads fewer rows' keys).
    reads_in_cursor_order: ClassVar[bool] = False
    # The provider's canonical.py (providers/<provider>/), if its objects map onto entities.
    canonical_mapping: ClassVar[ProviderMapping | None] = None

    def __init__(
        self,
        config: IntegrationConfiguration,
        credentials: IntegrationCredentials,
        guard: Guard,
        *,
        save_credentials: CredentialsSaver | None = None,
    ) -> None:
        """`save_credentials` stores credentials the connector renewed (an OAuth2 refresh that
        rotated the refresh token), encrypted like the originals."""
        self.config = config
        self.credentials = credentials
        self.guard = guard
        self.save_credentials = save_credentials

    # ------------------------------------------------------------ what subclasses implement

    @abstractmethod
    def translate(self, exc: BaseException) -> SourceError | None:
        """The SourceError for a driver exception, or None when it is not the driver's."""

    @abstractmethod
    def _ping(self) -> None:
        """Connects (or reuses the connection) and proves the session works."""

    @abstractmethod
    def _discover(
        self, entity: str, source: str | None, options: SourceOptions, wanted: frozenset[str] | None
    ) -> Stream:
        """The stream of one entity, from the catalog and the options; raises SourceError."""

    @abstractmethod
    def _probe(self, stream: Stream) -> None:
        """Proves the stream can be read (privileges), reading no rows."""

    @abstractmethod
    def _count(self, stream: Stream, position: Position) -> int | None:
        """How many rows remain after `position` (an estimate is fine)."""

    @abstractmethod
    def _pages(self, stream: Stream, position: Position, page_size: int, encoded: bool) -> Generator[Page, None, None]:
        """Pages after `position` until the stream is exhausted; closing the iterator frees
        the server-side cursor. `encoded` (only for an encodable stream): rows as
        pipeline.core.ENCODED_DATA describes."""

    @abstractmethod
    def close(self) -> None:
        """Closes the connection; the connector may be used again (it reconnects)."""

    # ------------------------------------------------------------ the SDK

    def entity_names(self) -> list[str]:
        queried = [entity for entity, options in self.config.source_options.items() if options.query]
        return [*self.config.entity_mappings, *(e for e in queried if e not in self.config.entity_mappings)]

    def source_of(self, entity: str) -> str | None:
        """The table, collection or provider object an entity is read from."""
        return self.config.entity_mappings.get(entity)

    def stream(self, entity: str) -> Stream:
        options = self.config.source_options.get(entity, SourceOptions())
        source = self.source_of(entity)
        if source is None and options.query is None:
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                f"entity {entity!r} has neither an entity_mappings source nor a query",
            )
        entities = self.entity_names()
        sync = self.config.sync_config
        canonical = self.canonical_entity(source) if source is not None else None
        if canonical is None:
            wanted = required_fields(
                scoped(sync.field_mappings, entity, entities), scoped(sync.data_filters, entity, entities)
            )
        else:
            # Mappings and filters of a canonical entity name its fields, not the source's: the
            # source fields its mapping reads, or the whole object when it is kept under raw.
            wanted = None if sync.include_raw else self.canonical_fields(source or "")
        stream = self._translated(lambda: self._discover(entity, source, options, wanted))
        # A provider object with a canonical entity lands under that entity's name, whatever
        # the integration calls it, as the webhook path writes it.
        return stream if canonical is None else stream.model_copy(update={"canonical_entity": canonical})

    def streams(self) -> list[Stream]:
        return [self.stream(entity) for entity in self.entity_names()]

    def cursor_field_for(self, entity: str) -> str:
        options = self.config.source_options.get(entity)
        if options is not None and options.cursor_field:
            return options.cursor_field
        return self.config.sync_config.incremental_field

    def lookback_for(self, entity: str) -> int:
        options = self.config.source_options.get(entity)
        if options is not None and options.lookback_seconds is not None:
            return options.lookback_seconds
        return self.lookback_seconds

    def next_read_start(self, stream: Stream, position: Position) -> Position:
        """Where an incremental read starts after a read that ended at `position`: at the
        lookback window's start when that is earlier, with the rows to skip there."""
        if not stream.lookback_seconds or position.recent is None:
            return position
        cursor, rewound = start_of_next_read(position.cursor, position.recent, stream.lookback_seconds)
        if rewound:
            return Position(cursor=cursor, recent=position.recent.next_read())
        return replace(position, recent=position.recent.next_read())

    def quota(self) -> QuotaReading | None:
        """The account's use of its provider allocation, where the provider reports it."""
        return None

    def current_object(self, entity: str, object_id: str) -> tuple[str, dict[str, Any]] | None:
        """One object as the source has it now, as a sync hands it over, with the source it was
        read from; None when it is gone. For webhook events that carry an incomplete object (a
        Stripe subscription's discounts are ids there). Sources that cannot re-read one object
        (or an entity of it) raise ReReadUnavailable."""
        raise ReReadUnavailable(f"{self.provider.value} does not re-read single objects")

    def current_entity(self, entity: str, object_id: str, *, raw: bool) -> dict[str, Any] | None:
        """`current_object` as its canonical entity's data (None: gone, or not a canonical entity)."""
        found = self.current_object(entity, object_id)
        if found is None or self.canonical_mapping is None:
            return None
        source, row = found
        if self.canonical_mapping.entity_of(source) != entity:
            return None
        return self.canonical_mapping.canonical(source, row, raw=raw)

    def canonical_entity(self, source: str) -> str | None:
        """The canonical entity the rows of `source` become, if the provider maps them onto one."""
        return self.canonical_mapping.entity_of(source) if self.canonical_mapping is not None else None

    def canonical_fields(self, source: str) -> frozenset[str] | None:
        """The source fields the canonical mapping of `source` reads; None: all of them."""
        return self.canonical_mapping.source_fields(source) if self.canonical_mapping is not None else None

    def canonical_mapper(self, stream: Stream) -> Callable[[Mapping[str, Any]], dict[str, Any]] | None:
        """The provider's mapping of this stream's rows onto a canonical entity (its
        `canonical.py`, which the webhook path calls too); None: rows keep their own fields."""
        if self.canonical_mapping is None:
            return None
        return self.canonical_mapping.mapper(stream.source, raw=self.config.sync_config.include_raw)

    def key_and_cursor(self, stream: Stream, row: dict[str, Any], encoded: bool) -> tuple[tuple[Any, ...], Any]:
        """A row's key and cursor as the driver's values (an encoded row's as its decoded ones)."""
        cursor = row.get(stream.cursor_field) if stream.cursor_field else None
        return tuple(row.get(name) for name in stream.primary_key), cursor

    def check(self) -> ConnectionCheck:
        """Connects and probes every entity once, without retries: a person is waiting."""
        try:
            self.preflight()
            self._translated(self._ping)
        except SourceError as exc:
            return ConnectionCheck(status=exc.kind, message=exc.message)
        results: list[StreamCheck] = []
        for entity in self.entity_names():
            source = self.source_of(entity) or f"query:{entity}"
            try:
                stream = self.stream(entity)
                self._translated(partial(self._probe, stream))
            except SourceError as exc:
                results.append(StreamCheck(entity=entity, source=source, status=exc.kind, message=exc.message))
                continue
            results.append(
                StreamCheck(
                    entity=entity,
                    source=stream.source,
                    status=CheckStatus.OK,
                    message="readable",
                    primary_key=list(stream.primary_key),
                    cursor_field=stream.cursor_field,
                    sync_modes=sorted(stream.sync_modes),
                )
            )
        failed = next((r for r in results if r.status is not CheckStatus.OK), None)
        if failed is not None:
            return ConnectionCheck(status=failed.status, message=f"{failed.entity}: {failed.message}", streams=results)
        message = "connected" if results else "connected; no entity is mapped, so a sync reads nothing"
        return ConnectionCheck(status=CheckStatus.OK, message=message, streams=results)

    def preflight(self) -> None:  # noqa: B027 - an optional hook: most sources need no check
        """Refuses a configuration before anything connects (e.g. an address the deployment
        must not reach); raises SourceError."""

    def connect(self, *, deadline: float | None = None) -> None:
        self.preflight()
        self._call(self._ping, deadline=deadline)

    def open_session(self, *, deadline: float | None = None) -> None:
        """Opens what an extract step's reads use (a database connection) before they start, so
        an unreachable source fails the step within `deadline` instead of in the read's retries."""
        self.connect(deadline=deadline)

    def estimate(self, stream: Stream, position: Position) -> int | None:
        """Rows left to read, for progress; None when the source cannot say cheaply."""
        try:
            return self._call(lambda: self._count(stream, position))
        except SourceError:
            return None

    def read(
        self,
        stream: Stream,
        position: Position,
        page_size: int,
        *,
        deadline: float | None = None,
        encoded: bool = False,
    ) -> Generator[Page, None, None]:
        """Pages after `position`. A transient failure re-opens the read from the last page
        returned (backoff, rate limit and breaker apply); the iterator ends when the stream does."""
        if encoded and not stream.encodable:
            raise ValueError(f"stream {stream.entity!r} cannot be read encoded")
        current = position
        pages: Generator[Page, None, None] | None = None

        def fetch() -> Page | None:
            nonlocal pages
            try:
                if pages is None:
                    pages = self._pages(stream, current, page_size, encoded)
                    if self.slot_per_read:
                        with self.guard.limiter.slot():  # opening a query is a request
                            return next(pages, None)
                return next(pages, None)
            except BaseException:
                if pages is not None:
                    pages.close()
                pages = None
                raise

        lookback = None
        if stream.lookback_seconds and stream.cursor_field:
            lookback = LookbackFilter(
                stream.lookback_seconds,
                position.recent,
                partial(self.key_and_cursor, stream, encoded=encoded),
                self.encode_value,
                ordered=self.reads_in_cursor_order,
            )
        try:
            while (page := self._call(fetch, deadline=deadline, limited=False)) is not None:
                current = page.position
                if lookback is not None:
                    rows, deleted = lookback.rows(page.rows), lookback.rows(page.deleted)
                    at = replace(current, recent=lookback.recent())
                    page = replace(page, rows=rows, deleted=deleted, position=at)
                yield page
        finally:
            if pages is not None:
                pages.close()

    def _translated(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except SourceError:
            raise
        except Exception as exc:
            error = self.translate(exc)
            if error is None:
                raise
            raise error from None

    def _call(self, fn: Callable[[], T], *, deadline: float | None = None, limited: bool = True) -> T:
        return self.guard.call(lambda: self._translated(fn), deadline=deadline, limited=limited and self.slot_per_read)

    # ------------------------------------------------------------ state: Position <-> small JSON

    def encode_value(self, value: Any) -> Any:
        """A cursor or key value as JSON, tagged so it decodes to the type the driver compares."""
        if value is None or isinstance(value, str | bool | int | float):
            return value
        for kinds, tag, encode in _STATE_ENCODERS:
            if isinstance(value, kinds):
                return {tag: encode(value)}
        raise TypeError(f"a {type(value).__name__} cannot be a cursor or key value")

    def decode_value(self, value: Any) -> Any:
        if not isinstance(value, dict) or len(value) != 1:
            return value
        ((tag, text),) = value.items()
        decoder = _STATE_DECODERS.get(tag)
        return value if decoder is None else decoder(text)

    def state_of(self, stream: Stream, position: Position) -> dict[str, Any]:
        return with_recent(
            {
                "cursor_field": stream.cursor_field,
                "primary_key": list(stream.primary_key),
                "cursor": self.encode_value(position.cursor),
                "key": None if position.key is None else [self.encode_value(v) for v in position.key],
            },
            position,
        )

    def position_of(self, stream: Stream, state: dict[str, Any]) -> Position | None:
        """The position a state names, or None when it was taken with another cursor or key
        (the configuration changed): then only a full read is safe."""
        if not state:
            return Position()
        if state.get("cursor_field") != stream.cursor_field or state.get("primary_key") != list(stream.primary_key):
            return None
        key = state.get("key")
        return Position(
            cursor=self.decode_value(state.get("cursor")),
            key=None if key is None else tuple(self.decode_value(v) for v in key),
            recent=Recent.from_json(state.get("recent")),
        )


def with_recent(state: dict[str, Any], position: Position) -> dict[str, Any]:
    """A stream's state with the rows near its lookback window, if it keeps them."""
    if position.recent is not None:
        state["recent"] = position.recent.to_json()
    return state


def position_after(row: dict[str, Any], cursor_field: str | None, primary_key: tuple[str, ...]) -> Position:
    """The position just after `row`."""
    return Position(
        cursor=row.get(cursor_field) if cursor_field else None,
        key=tuple(row[k] for k in primary_key),
    )
