"""HubSpot CRM: contacts, companies, deals, tickets and owners, through `hubspot-api-client`.

What it reads, its limits and quirks: README.md in this folder."""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar

from churnguard.connectors.api import (
    DEFAULT_TIMEOUT,
    ApiConnector,
    ApiObject,
    http_error,
    retry_after_seconds,
    unreachable,
)
from churnguard.connectors.base import (
    CheckStatus,
    Page,
    Position,
    QuotaReading,
    ReReadUnavailable,
    SourceError,
    SourcePausedError,
    Stream,
    ThrottledError,
    TransientSourceError,
)
from churnguard.models import CredentialType, ProviderName, SourceOptions
from churnguard.providers.hubspot.canonical import MAPPING, SOURCE_FIELDS
from churnguard.resilience import ProviderLimits

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse

DEFAULT_BASE_URL = "https://api.hubapi.com"
PROVIDER = "HubSpot"
SEARCH_PAGE = 200  # the search API's maximum `limit`
LIST_PAGE = 100  # the objects list endpoint's maximum `limit`
OWNERS_PAGE = 500  # the owners endpoint's maximum `limit`
ASSOCIATION_BATCH = 1_000  # ids per v4 associations batch read
SEARCH_RATE = (5, 1.0)  # searches per second, per account
DEFAULT_RATE = (100, 10.0)  # requests per 10 s until HubSpot's headers say otherwise
WINDOW_MARGIN = 0.05  # seconds added to a window: requests arrive later than we send them
PACE_PROBE_AFTER = 5  # windows answered in a row before a slowed pace tries one request more
DAILY_PAUSE_SECONDS = 3_600.0
ASSOCIATIONS = "associations"

_ASSOCIATED: dict[str, tuple[str, ...]] = {
    "contacts": ("companies", "deals", "tickets"),
    "companies": ("contacts", "deals", "tickets"),
    "deals": ("contacts", "companies"),
    "tickets": ("contacts", "companies"),
}
_INTEGER = re.compile(r"-?\d+")


def _number(text: str) -> int | float | Decimal | None:
    """A HubSpot number property's value: exact, and a JSON number wherever a double holds it."""
    text = text.strip()
    if not text:
        return None
    if _INTEGER.fullmatch(text):
        return int(text)
    try:
        exact = Decimal(text)
    except InvalidOperation:
        return None
    if not exact.is_finite():
        return None
    digits = len(exact.as_tuple().digits)
    return float(exact) if digits <= 15 else exact


def _bool(text: str) -> bool | None:
    lowered = text.strip().lower()
    return True if lowered == "true" else False if lowered == "false" else None


# HubSpot property type → column kind (pipeline.validation.KIND_TYPES) → how its text is read.
_KINDS = {"number": "decimal", "bool": "bool"}
_CONVERTERS: dict[str, Callable[[str], Any]] = {"decimal": _number, "bool": _bool}


def _millis(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


class _Window:
    """One of HubSpot's request windows, as seen from here: at most `limit` requests in a sliding
    `seconds` (counted when we send), and no more than the `Remaining` HubSpot last reported
    (requests of other clients of the same app, or of an earlier invocation, count there too)."""

    def __init__(self, limit: int | None, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self.sent: deque[float] = deque()
        self.budget: int | None = None  # requests left by HubSpot's last count
        self.ceiling = limit  # the documented limit; `limit` drops below it while others share it
        self._granted = 0  # requests answered since the pace last changed

    def delay(self, now: float) -> float:
        """Seconds to wait before the next request fits."""
        span = self.seconds + WINDOW_MARGIN
        while self.sent and now - self.sent[0] >= span:
            self.sent.popleft()
        wait = 0.0
        if self.limit is not None and len(self.sent) >= self.limit:
            wait = self.sent[len(self.sent) - self.limit] + span - now
        if self.budget is not None and self.budget <= 0:
            # Spent: one request leaves HubSpot's window at the latest when our oldest does.
            wait = max(wait, (self.sent[0] + span - now) if self.sent else span)
        return max(0.0, wait)

    def take(self, now: float, waited: bool) -> None:
        if self.budget is not None:
            self.budget = max(self.budget, 1) if waited else self.budget
            self.budget -= 1
        self.sent.append(now)

    def refused(self) -> None:
        """A 429 although we kept the pace: others spend part of the allowance. Halve the pace."""
        if self.limit is not None:
            self.limit = max(1, self.limit // 2)
        self._granted = 0

    def granted(self) -> None:
        """An answered request. After a run of them at this pace, try one more a window, up to
        the documented limit: what others leave us changes as they come and go."""
        if self.limit is None or self.ceiling is None or self.limit >= self.ceiling:
            return
        self._granted += 1
        if self._granted >= PACE_PROBE_AFTER * self.limit:
            self.limit += 1
            self._granted = 0

    def observe(self, limit: int | None, seconds: float | None, remaining: int | None) -> None:
        if limit:
            self.limit = limit
        if seconds:
            self.seconds = seconds
        if remaining is not None:
            self.budget = remaining


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from or while handling."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


class HubSpotConnector(ApiConnector):
    provider = ProviderName.HUBSPOT
    # Private apps: 100 requests per 10 s (190 on Professional and Enterprise), read from the
    # X-HubSpot-RateLimit-* headers as they come; searches have their own 5 a second.
    limits = ProviderLimits(600, 5, "100 requests per 10 s per private app; search 5 per second per account")
    provider_label = PROVIDER
    objects: ClassVar[Mapping[str, ApiObject]] = {
        "contacts": ApiObject(("id",), "lastmodifieddate"),
        "companies": ApiObject(("id",), "hs_lastmodifieddate"),
        "deals": ApiObject(("id",), "hs_lastmodifieddate"),
        "tickets": ApiObject(("id",), "hs_lastmodifieddate"),
        "owners": ApiObject(("id",), "updatedAt", incremental=False),
    }
    default_entities: ClassVar[Mapping[str, str]] = {
        "contact": "contacts",
        "company": "companies",
        "deal": "deals",
        "ticket": "tickets",
        "user": "owners",
    }
    canonical_mapping = MAPPING

    # Records modified this long before a read began are read again by the next incremental
    # read: HubSpot's search index lags behind writes by a few seconds.
    search_lag: ClassVar[float] = 300.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: Any = None
        self._apis: dict[str, Any] = {}
        self._property_types: dict[str, dict[str, str]] = {}
        self._windows = {
            "search": _Window(*SEARCH_RATE),
            "interval": _Window(*DEFAULT_RATE),
            "secondly": _Window(None, 1.0),
        }
        self._daily: tuple[int, int] | None = None

    # ------------------------------------------------------------ the SDK

    @property
    def base_url(self) -> str:
        return (self.config.base_url or DEFAULT_BASE_URL).rstrip("/")

    def _token(self) -> str:
        creds = self.credentials
        if creds.credential_type is CredentialType.OAUTH2:
            if self.token_needs_refresh():
                self._refresh()
            token = self.credentials.access_token
        elif creds.credential_type is CredentialType.API_KEY:
            token = creds.api_key or creds.access_token
        else:
            token = creds.access_token
        if token is None:
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                "HubSpot needs a private-app token (api_key credentials) or OAuth2 credentials",
            )
        return token.get_secret_value()

    def _api(self, name: str, token: str) -> Any:
        """The SDK API object `name`, one per connector (each holds a connection pool)."""
        if self._client is None:
            import hubspot  # type: ignore[import-untyped]
            from urllib3.util.retry import Retry

            bundle = self.ca_bundle_file()
            extra = {} if bundle is None else {"ssl_ca_cert": bundle}
            self._client = hubspot.Client.create(
                access_token=token, retry=Retry(total=False), host=self.base_url, **extra
            )
        api = self._apis.get(name)
        if api is None:
            crm = self._client.crm
            api = {
                "search": lambda: crm.objects.search_api,
                "objects": lambda: crm.objects.basic_api,
                "properties": lambda: crm.properties.core_api,
                "owners": lambda: crm.owners.owners_api,
                "associations": lambda: crm.associations.v4.batch_api,
            }[name]()
            self._apis[name] = api
        api.api_client.configuration.access_token = token
        return api

    def _refresh(self) -> None:
        self.refresh_oauth2(f"{self.base_url}/oauth/v1/token")

    def _pace(self, search: bool) -> None:
        """Waits until the request fits HubSpot's windows, then counts it in them."""
        clock, sleep = self.guard.retry.clock, self.guard.retry.sleep
        windows = [self._windows["search"]] if search else [self._windows["interval"], self._windows["secondly"]]
        wait = max(window.delay(clock()) for window in windows)
        if wait > 0:
            sleep(wait)
        now = clock()
        for window in windows:
            window.take(now, waited=wait > 0)

    def _observe_limits(self, headers: Mapping[str, str]) -> None:
        """Learns the app's limits and what is left of them from the X-HubSpot-RateLimit-*
        headers (search responses carry none: searches keep HubSpot's documented rate)."""
        interval = _header(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
        self._windows["interval"].observe(
            _header(headers, "X-HubSpot-RateLimit-Max"),
            interval / 1000.0 if interval else None,
            _header(headers, "X-HubSpot-RateLimit-Remaining"),
        )
        self._windows["secondly"].observe(
            _header(headers, "X-HubSpot-RateLimit-Secondly"),
            None,
            _header(headers, "X-HubSpot-RateLimit-Secondly-Remaining"),
        )
        daily, left = (
            _header(headers, "X-HubSpot-RateLimit-Daily"),
            _header(headers, "X-HubSpot-RateLimit-Daily-Remaining"),
        )
        if daily and left is not None:
            self._daily = (max(0, daily - left), daily)

    def quota(self) -> QuotaReading | None:
        """The account's daily allowance (apps authenticated with OAuth get the Daily headers)."""
        if self._daily is None:
            return None
        return QuotaReading(used=self._daily[0], limit=self._daily[1], what="daily API requests")

    def _send(self, what: str, call: Callable[[Any], Any], api: str, *, search: bool = False) -> Any:
        """One SDK request: a rate-limit slot, HubSpot's pacing, the JSON body back. An OAuth2
        token is refreshed before it expires and once on a 401 (outside the slot: the refresh
        takes its own); every failure becomes a SourceError."""
        refreshed = False
        while True:
            client = self._api(api, self._token())
            failure: Exception | None = None
            with self.guard.limiter.slot():
                self._pace(search)
                try:
                    response: BaseHTTPResponse = call(client)
                except Exception as exc:
                    failure = exc
            if failure is None:
                break
            if search and getattr(failure, "status", None) == 429:
                self._windows["search"].refused()
            self._observe_limits(getattr(failure, "headers", None) or {})
            if getattr(failure, "status", None) == 401 and not refreshed and self._can_refresh():
                refreshed = True
                self._refresh()
                continue
            error = self._error(failure, what, search=search)
            if error is None:
                raise failure
            raise error from None
        self._observe_limits(response.headers)
        if search:
            self._windows["search"].granted()
        try:
            return json.loads(response.data)
        except ValueError:
            raise TransientSourceError(
                CheckStatus.ERROR, f"HubSpot answered {what} with something that is not JSON"
            ) from None

    def _can_refresh(self) -> bool:
        return self.credentials.credential_type is CredentialType.OAUTH2 and self.credentials.refresh_token is not None

    def _error(self, exc: BaseException, what: str, *, search: bool = False) -> SourceError | None:
        from urllib3.exceptions import HTTPError

        # The SDK turns a TLS failure into ApiException(status=0), and then, reading that
        # exception's empty body, into an AttributeError: the cause is found down the chain.
        if any(isinstance(link, HTTPError) for link in _chain(exc)):
            return unreachable(PROVIDER, what)
        status = getattr(exc, "status", None)
        if not type(exc).__module__.startswith("hubspot.") or not isinstance(status, int):
            return None
        if status == 0:  # the SDK's code for a TLS failure
            return unreachable(PROVIDER, what)
        headers: Mapping[str, str] = getattr(exc, "headers", None) or {}
        body = _json_body(getattr(exc, "body", None))
        detail = body.get("category") or body.get("errorType")
        if status == 429:
            policy = body.get("policyName")
            if policy == "DAILY":  # the account's daily allowance is spent: wait for it, keep the run
                return SourcePausedError(
                    CheckStatus.ERROR,
                    f"HubSpot's daily API limit is spent ({what}); the sync stops at its last checkpoint"
                    " and resumes from it when the step is retried",
                    retry_after=DAILY_PAUSE_SECONDS,
                    details={"http_status": status, "paused": "daily_limit"},
                )
            retry_after = retry_after_seconds(headers.get("Retry-After"))
            if retry_after is None:  # HubSpot names the window it counted; wait for it to turn
                retry_after = SEARCH_RATE[1] if search else self._windows["interval"].seconds
            return ThrottledError(
                CheckStatus.ERROR,
                f"HubSpot rate-limited {what}{f' ({policy})' if policy else ''}; it is retried after {retry_after:g} s",
                retry_after=retry_after,
                details={"http_status": status},
            )
        return http_error(status, headers, PROVIDER, what, detail if isinstance(detail, str) else None)

    def translate(self, exc: BaseException) -> SourceError | None:
        return self._error(exc, "a request")

    def close(self) -> None:
        super().close()
        for api in self._apis.values():
            api.api_client.rest_client.pool_manager.clear()
        self._client = None
        self._apis = {}

    # ------------------------------------------------------------ requests

    def _property_types_of(self, object_type: str) -> dict[str, str]:
        """Property name → HubSpot type, from the properties API once per connector."""
        known = self._property_types.get(object_type)
        if known is None:
            body = self._send(
                f"reading the {object_type} properties",
                lambda api: api.get_all_with_http_info(
                    object_type, archived=False, _preload_content=False, _request_timeout=DEFAULT_TIMEOUT
                ),
                "properties",
            )
            known = {p["name"]: str(p.get("type") or "string") for p in body.get("results", []) if p.get("name")}
            self._property_types[object_type] = known
        return known

    def _search(self, stream: Stream, properties: list[str], since: int | None, after_id: int) -> dict[str, Any]:
        filters: list[dict[str, str]] = [{"propertyName": "hs_object_id", "operator": "GT", "value": str(after_id)}]
        if since is not None and stream.cursor_field:
            filters.append({"propertyName": stream.cursor_field, "operator": "GTE", "value": str(since)})
        request = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "properties": properties,
            "limit": SEARCH_PAGE,
        }
        body: dict[str, Any] = self._send(
            f"searching {stream.source}",
            lambda api: api.do_search_with_http_info(
                stream.source, request, _preload_content=False, _request_timeout=DEFAULT_TIMEOUT
            ),
            "search",
            search=True,
        )
        return body

    def _list(self, object_type: str, after: str | None, *, archived: bool, limit: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"limit": limit, "archived": archived, "_preload_content": False}
        if after is not None:
            kwargs["after"] = after
        body: dict[str, Any]
        if object_type == "owners":
            body = self._send(
                "listing owners",
                lambda api: api.get_page_with_http_info(_request_timeout=DEFAULT_TIMEOUT, **kwargs),
                "owners",
            )
        else:
            body = self._send(
                f"listing {'archived ' if archived else ''}{object_type}",
                lambda api: api.get_page_with_http_info(object_type, _request_timeout=DEFAULT_TIMEOUT, **kwargs),
                "objects",
            )
        return body

    def _associations(self, object_type: str, target: str, ids: list[str]) -> dict[str, list[str]]:
        """Associated `target` ids of each of `ids`, following HubSpot's per-id paging."""
        found: dict[str, list[str]] = {i: [] for i in ids}
        pending: list[dict[str, str]] = [{"id": i} for i in ids]
        while pending:
            request = {"inputs": pending[:ASSOCIATION_BATCH]}
            pending = pending[ASSOCIATION_BATCH:]

            def call(api: Any, request: dict[str, Any] = request) -> Any:
                return api.get_page_with_http_info(
                    object_type, target, request, _preload_content=False, _request_timeout=DEFAULT_TIMEOUT
                )

            body = self._send(f"reading {object_type} → {target} associations", call, "associations")
            for result in body.get("results", []):
                source = str(result.get("from", {}).get("id"))
                found.setdefault(source, []).extend(str(to["toObjectId"]) for to in result.get("to", []))
                after = ((result.get("paging") or {}).get("next") or {}).get("after")
                if after:
                    pending.append({"id": source, "after": after})
        return found

    def current_object(self, entity: str, object_id: str) -> tuple[str, dict[str, Any]] | None:
        """One object as its canonical mapping reads it: the properties it maps and, where it
        maps them, its associations (one GET, plus one associations read per linked type)."""
        source = self.default_entities.get(entity)
        fields = SOURCE_FIELDS.get(source or "")
        if source is None or fields is None:
            raise ReReadUnavailable(f"HubSpot objects of the entity {entity!r} are not re-read")
        properties = sorted(fields - {ASSOCIATIONS})
        try:
            obj = self._send(
                f"re-reading a changed {source[:-1]}",
                lambda api: api.get_by_id_with_http_info(
                    source,
                    object_id,
                    properties=properties,
                    archived=False,
                    _preload_content=False,
                    _request_timeout=DEFAULT_TIMEOUT,
                ),
                "objects",
            )
        except SourceError as exc:
            if exc.kind is CheckStatus.MISSING_OBJECT:
                return None
            raise
        row = _row(obj, {})
        if ASSOCIATIONS in fields:
            row[ASSOCIATIONS] = {
                target: self._associations(source, target, [row["id"]]).get(row["id"], [])
                for target in _ASSOCIATED.get(source, ())
            }
        return source, row

    # ------------------------------------------------------------ the connector SDK

    def _ping(self) -> None:
        """Proves the token with a request the first read needs anyway (cached)."""
        for entity in self.entity_names():
            source = self.source_of(entity)
            if source is not None and source != "owners" and source in self.objects:
                self._property_types_of(source)
                return
        self._list("owners", None, archived=False, limit=1)

    def _discover(
        self, entity: str, source: str | None, options: SourceOptions, wanted: frozenset[str] | None
    ) -> Stream:
        stream = super()._discover(entity, source, options, wanted)
        if stream.source == "owners":
            return stream
        types = self._property_types_of(stream.source)
        if stream.cursor_field and types.get(stream.cursor_field) not in ("datetime", "date"):
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                f"{stream.source} has no date property {stream.cursor_field!r} to read changes by",
            )
        if wanted is None:
            return stream
        fields = {name for name in wanted if name in types or name == ASSOCIATIONS}
        fields |= {"hs_object_id", *(f for f in (stream.cursor_field,) if f)}
        kinds = {name: _KINDS.get(types[name], "text") for name in fields if name in types}
        return stream.model_copy(update={"fields": tuple(sorted(fields)), "column_kinds": kinds})

    def _probe(self, stream: Stream) -> None:
        self._list(stream.source, None, archived=False, limit=1)

    def _pages(self, stream: Stream, position: Position, page_size: int, encoded: bool) -> Generator[Page, None, None]:
        """Pages of HubSpot's own sizes (searches 200 rows, five to a page so one associations
        batch covers them; owners 500; archived 100): `page_size` is ignored, since the limits
        count requests, not rows."""
        state = self._start(stream, position)
        if state["phase"] == "search":
            yield from self._search_pages(stream, state)
        elif state["phase"] == "list":
            yield from self._owner_pages(state)
        else:
            yield from self._archived_pages(None if stream.source == "owners" else stream, state)

    def _start(self, stream: Stream, position: Position) -> dict[str, Any]:
        """The state to read from: a checkpoint resumes; a finished read's state, a datetime
        (`last_sync_timestamp`) or nothing starts a new read."""
        cursor = position.cursor
        if isinstance(cursor, dict) and cursor.get("phase") not in (None, "done"):
            return dict(cursor)
        since: int | None = None
        if isinstance(cursor, dict) and isinstance(cursor.get("next"), int):
            since = cursor["next"]
        elif isinstance(cursor, datetime):
            since = _millis(cursor)
        began = int((time.time() - self.search_lag) * 1000)
        if stream.source == "owners":  # no search: the whole list every time
            return {"phase": "list", "since": None, "next": began, "after": None}
        return {"phase": "search", "since": since, "next": began, "id": 0}

    def _shape(self, stream: Stream) -> tuple[list[str], dict[str, Callable[[str], Any]]]:
        """The properties to request and their converters: the stream's own when mappings
        chose them (no request), else every property HubSpot lists for the object."""
        if stream.fields is not None:
            kinds = stream.column_kinds
            properties = [name for name in stream.fields if name != ASSOCIATIONS]
        else:
            types = self._property_types_of(stream.source)
            kinds = {name: _KINDS.get(kind, "text") for name, kind in types.items()}
            properties = sorted(types)
        return properties, {name: _CONVERTERS[kind] for name, kind in kinds.items() if kind in _CONVERTERS}

    def _search_pages(self, stream: Stream, state: dict[str, Any]) -> Generator[Page, None, None]:
        properties, converters = self._shape(stream)
        fields = stream.fields
        associated = _ASSOCIATED.get(stream.source, ()) if fields is None or ASSOCIATIONS in fields else ()
        last_id: int = state["id"]
        more = True
        while more:
            results: list[dict[str, Any]] = []
            throttled: ThrottledError | None = None
            while more and len(results) < ASSOCIATION_BATCH:
                try:
                    body = self._search(stream, properties, state["since"], last_id)
                except ThrottledError as exc:
                    if not results:
                        raise
                    # Answered searches are kept: they go out as a page, then the wait begins.
                    throttled = exc
                    break
                found = body.get("results", [])
                results += found
                if found:
                    last_id = int(found[-1]["id"])
                more = bool(found) and bool((body.get("paging") or {}).get("next"))
            rows = [_row(obj, converters) for obj in results]
            if rows and associated:
                ids = [row["id"] for row in rows]
                linked = {target: self._associations(stream.source, target, ids) for target in associated}
                for row in rows:
                    row[ASSOCIATIONS] = {target: linked[target].get(row["id"], []) for target in associated}
            state = {**state, "id": last_id} if more else _archived_phase(state)
            yield Page(rows, Position(cursor=state))
            if throttled is not None:
                raise throttled
        yield from self._archived_pages(stream, state)

    def _owner_pages(self, state: dict[str, Any]) -> Generator[Page, None, None]:
        after = state["after"]
        while True:
            body = self._list("owners", after, archived=False, limit=OWNERS_PAGE)
            after = ((body.get("paging") or {}).get("next") or {}).get("after")
            state = {**state, "after": after} if after else _archived_phase(state)
            yield Page(list(body.get("results", [])), Position(cursor=state))
            if not after:
                break
        yield from self._archived_pages(None, state)

    def _archived_pages(self, stream: Stream | None, state: dict[str, Any]) -> Generator[Page, None, None]:
        """Archived records (of `stream`, None: owners) as deletes: all of them in a full read,
        those archived since the read's start in an incremental one. The last page carries the
        finished state."""
        converters = {} if stream is None else self._shape(stream)[1]
        object_type, limit = ("owners", OWNERS_PAGE) if stream is None else (stream.source, LIST_PAGE)
        since: int | None = state["since"]
        after = state["after"]
        while True:
            body = self._list(object_type, after, archived=True, limit=limit)
            after = ((body.get("paging") or {}).get("next") or {}).get("after")
            deleted = [_row(obj, converters) for obj in body.get("results", []) if _archived_since(obj, since)]
            if not after:
                yield Page([], Position(cursor={"phase": "done", "next": state["next"]}), deleted=deleted)
                return
            yield Page([], Position(cursor={**state, "after": after}), deleted=deleted)


def _archived_phase(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"phase": "archived", "since": state["since"], "next": state["next"], "after": None}


def _archived_since(obj: Mapping[str, Any], since: int | None) -> bool:
    """Whether an archived record belongs to a read from `since` (None: a full read)."""
    text = obj.get("archivedAt")
    if since is None or not isinstance(text, str):
        return True
    try:
        return _millis(datetime.fromisoformat(text.replace("Z", "+00:00"))) >= since
    except ValueError:
        return True


def _row(obj: Mapping[str, Any], converters: Mapping[str, Callable[[str], Any]]) -> dict[str, Any]:
    """A HubSpot object as a flat row: its properties (typed by their definitions), then its
    own fields, which win over a property of the same name."""
    properties = obj.get("properties")
    row: dict[str, Any] = {}
    if isinstance(properties, Mapping):
        for name, value in properties.items():
            convert = converters.get(name)
            row[name] = convert(value) if convert is not None and isinstance(value, str) else value
    for name, value in obj.items():
        if name != "properties":
            row[name] = value
    return row


def _json_body(body: Any) -> dict[str, Any]:
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
