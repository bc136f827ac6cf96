"""Salesforce, with simple-salesforce: SOQL over REST (`queryAll`, `nextRecordsUrl` paging) and
Bulk API 2.0 query jobs for large full reads.

What it reads, its limits and quirks: README.md in this folder."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import requests
from simple_salesforce.api import DEFAULT_API_VERSION, Salesforce
from simple_salesforce.bulk2 import Operation, QueryResult, _Bulk2Client
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from churnguard.connectors.api import DEFAULT_TIMEOUT, ApiConnector, http_error, retry_after_seconds, unreachable
from churnguard.connectors.base import (
    CheckStatus,
    Page,
    Position,
    QuotaReading,
    SourceError,
    SourcePausedError,
    Stream,
    ThrottledError,
    TransientSourceError,
)
from churnguard.connectors.lookback import start_of_next_read
from churnguard.models import DataSyncMode, ProviderName, SourceOptions
from churnguard.providers.salesforce.canonical import MAPPING
from churnguard.resilience import ProviderLimits

T = TypeVar("T")

PROVIDER = "Salesforce"
PAGE_SIZE = 2_000  # Sforce-Query-Options batchSize maximum
DEFAULT_BULK_THRESHOLD = 100_000
DEFAULT_USAGE_THRESHOLD = 0.9
USAGE_PAUSE_SECONDS = 3_600.0
BULK_POLL_MAX_SECONDS = 10.0
LOGIN_HOSTS = {"login": "https://login.salesforce.com", "test": "https://test.salesforce.com"}
TOKEN_PATH = "/services/oauth2/token"  # noqa: S105 - a URL path, not a secret

# API names of objects and fields, custom ones included (Churn_Risk__c, ns__Score__c).
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_LOCATOR = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
_ERROR_CODE = re.compile(r"^[A-Z_]{1,64}$")
_VERSION = re.compile(r"^v?([0-9]{2,3}\.[0-9])$")
_API_USAGE = re.compile(r"(?:^|[\s,;])api-usage=([0-9]+)/([0-9]+)")
_CURSOR_FIELDS = ("SystemModstamp", "LastModifiedDate")
_SKIPPED_TYPES = frozenset({"address", "location", "base64"})
# describe() type → the kind of Python value a row holds (pipeline.validation.KIND_TYPES).
_KINDS = {
    "boolean": "bool",
    "int": "int",
    "long": "int",
    "double": "float",
    "currency": "float",
    "percent": "float",
    "datetime": "datetime",
}
_DEFAULT_ENTITIES = {
    "company": "Account",
    "contact": "Contact",
    "lead": "Lead",
    "deal": "Opportunity",
    "ticket": "Case",
    "task": "Task",
}


def _parse_datetime(value: str) -> datetime:
    """Salesforce's `2024-01-31T10:00:00.000+0000` (REST) or `…Z` (Bulk CSV), as aware UTC."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _state_time(value: datetime) -> str:
    """A time as the state keeps it (a naive one, as from a hand-set last_sync_timestamp, is UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _soql_datetime(text: Any) -> str:
    """A SOQL dateTime literal (unquoted, UTC) for a time from the state; never the text as is."""
    if not isinstance(text, str):
        raise _bad_state()
    try:
        value = _parse_datetime(text)
    except ValueError:
        raise _bad_state() from None
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _soql_id(value: Any) -> str:
    if not isinstance(value, str) or not _RECORD_ID.match(value):
        raise _bad_state()
    return f"'{value}'"


def _bad_state() -> SourceError:
    return SourceError(CheckStatus.ERROR, "the Salesforce checkpoint is not one this connector wrote; run a full sync")


def _first_error(content: Any) -> dict[str, Any]:
    """Salesforce's error body: `[{"message": …, "errorCode": …}]` (or one object)."""
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return content[0]
    return content if isinstance(content, dict) else {}


def _error_code(content: Any) -> str | None:
    code = _first_error(content).get("errorCode")
    return code if isinstance(code, str) and _ERROR_CODE.match(code) else None


def _response_content(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _named_instance(token: dict[str, Any]) -> dict[str, str]:
    """The instance URL a token answer names, as the custom field it is stored in."""
    named = token.get("instance_url")
    instance = _http_url(named) if isinstance(named, str) else None
    return {"instance_url": instance} if instance is not None else {}


def _http_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.username or parts.password:
        return None
    return value.rstrip("/")


def _csv_bool(value: str) -> bool:
    return value.lower() == "true"


_CSV_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "bool": _csv_bool,
    "int": int,
    "float": float,
    "datetime": _parse_datetime,
}


class _MeteredSession(requests.Session):
    """The session the SDK sends every request through: one rate-limit slot per request, the
    org's API usage read from every response, and throttling and outages raised with their
    Retry-After (the SDK's exceptions keep the body but drop the headers)."""

    def __init__(self, connector: SalesforceConnector) -> None:
        super().__init__()
        self.headers["User-Agent"] = "ChurnGuard-Integrations/1.0"
        self._connector = connector

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = DEFAULT_TIMEOUT
        # The REST API does not redirect: a redirect means base_url is wrong, and following it
        # would send a request outside this request's rate-limit slot.
        kwargs["allow_redirects"] = False
        connector = self._connector
        bundle = connector.ca_bundle_file()
        if bundle is not None:
            kwargs["verify"] = bundle
        with connector.guard.limiter.slot():
            try:
                response = super().send(request, **kwargs)
            except requests.RequestException:
                raise unreachable(PROVIDER, connector.doing) from None
        connector.observe(response)
        connector.raise_for_limits(response)
        return response


class SalesforceConnector(ApiConnector):
    provider = ProviderName.SALESFORCE
    # No per-second limit: 25 long-running requests at once and a rolling daily allocation,
    # which `api_usage_threshold` guards.
    limits = ProviderLimits(3_000, 5, "25 concurrent long-running requests; the org's daily API allocation")
    # SystemModstamp is set when a save starts; a long transaction commits (becomes visible) later.
    lookback_seconds = 600
    canonical_mapping = MAPPING
    provider_label: ClassVar[str] = PROVIDER
    default_entities: ClassVar[dict[str, str]] = _DEFAULT_ENTITIES
    # Rows per Bulk API 2.0 results request (the response is cut into PAGE_SIZE pages).
    bulk_result_records: ClassVar[int] = 50_000

    doing = "calling Salesforce"  # what the current call does, for error messages
    _sf: Salesforce | None = None
    _instance_url: str | None = None
    _usage: tuple[int, int] | None = None

    # ------------------------------------------------------------ settings

    def _setting(self, name: str) -> str | None:
        secret = self.credentials.custom_fields.get(name)
        return None if secret is None else secret.get_secret_value().strip()

    def bulk_threshold(self) -> int:
        text = self._setting("bulk_threshold")
        if text is None:
            return DEFAULT_BULK_THRESHOLD
        if not text.isdigit():
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION, "custom_fields.bulk_threshold must be a whole number of rows"
            )
        return int(text)

    def usage_threshold(self) -> float:
        text = self._setting("api_usage_threshold")
        if text is None:
            return DEFAULT_USAGE_THRESHOLD
        try:
            share = float(text)
        except ValueError:
            share = -1.0
        if not 0.0 < share <= 1.0:
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                "custom_fields.api_usage_threshold must be a share of the daily API limit between 0 and 1, e.g. 0.9",
            )
        return share

    def api_version(self) -> str:
        if not self.config.api_version:
            return DEFAULT_API_VERSION
        matched = _VERSION.match(self.config.api_version)
        if matched is None:
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION, "api_version must be a Salesforce API version, e.g. 59.0"
            )
        return matched[1]

    def token_url(self) -> str:
        """Where refresh tokens are exchanged: the configured My Domain or login host."""
        base = self.config.base_url.rstrip("/")
        if base:
            return base + TOKEN_PATH
        domain = self._setting("domain") or "login"
        host = LOGIN_HOSTS.get(domain)
        if host is None:
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                "custom_fields.domain must be login (production) or test (sandbox); or set base_url",
            )
        return host + TOKEN_PATH

    def configured_instance(self) -> str | None:
        """The instance URL the credentials or base_url name; None when only a login host is known."""
        stored = self._setting("instance_url")
        if stored:
            url = _http_url(stored)
            if url is None:
                raise SourceError(CheckStatus.INVALID_CONFIGURATION, "custom_fields.instance_url must be an https URL")
            return url
        base = self.config.base_url.rstrip("/")
        if base and base not in LOGIN_HOSTS.values():
            return base
        return None

    # ------------------------------------------------------------ the SDK client

    def _client(self) -> Salesforce:
        if self._sf is None:
            if self._instance_url is None:
                self._instance_url = self.configured_instance()
            if self._instance_url is None and self.credentials.refresh_token is None:
                raise SourceError(
                    CheckStatus.INVALID_CONFIGURATION,
                    "base_url is a Salesforce login host: set it to the org's My Domain URL, or set"
                    " custom_fields.instance_url, or add a refresh_token",
                )
            if self._instance_url is None or self.token_needs_refresh():
                self._refresh()
            token = self.credentials.access_token
            instance = self._instance_url
            if instance is not None:
                self.check_address(instance, "the Salesforce instance URL")
            if token is None or instance is None:
                raise SourceError(
                    CheckStatus.AUTHENTICATION_FAILED,
                    "the Salesforce credentials hold no access token; authorise again",
                )
            version = self.api_version()
            client = Salesforce(
                instance_url=instance,
                session_id=token.get_secret_value(),
                version=version,
                session=_MeteredSession(self),
                object_pairs_hook=None,
            )
            # The SDK builds https://host URLs; keep the instance URL's own scheme and port.
            client.base_url = f"{instance}/services/data/v{version}/"
            client.bulk2_url = f"{client.base_url}jobs/"
            self._sf = client
        return self._sf

    def _refresh(self) -> None:
        """Renews the access token; stores the instance URL the token response names."""
        token = self.refresh_oauth2(self.token_url(), remember=_named_instance)
        instance = _named_instance(token).get("instance_url")
        if instance is not None:
            self._instance_url = instance
        elif self._instance_url is None:
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                "Salesforce's token response named no instance URL; set base_url to the org's My Domain URL",
            )
        if self._sf is not None:
            self._sf.session.close()
        self._sf = None

    def _sdk(self, doing: str, call: Callable[[Salesforce], T]) -> T:
        """One SDK call. An expired session (INVALID_SESSION_ID) is renewed with the refresh
        token and the call retried once; a second refusal is authentication_failed."""
        self.doing = doing
        try:
            return call(self._client())
        except SalesforceExpiredSession:
            if self.credentials.refresh_token is None:
                raise SourceError(
                    CheckStatus.AUTHENTICATION_FAILED,
                    "Salesforce refused the access token (INVALID_SESSION_ID) and the credentials hold no"
                    " refresh_token; authorise the integration again",
                ) from None
        self._refresh()
        self.doing = doing
        return call(self._client())

    def _bulk(self, client: Salesforce, stream: Stream) -> _Bulk2Client:
        return _Bulk2Client(stream.source, client.bulk2_url, dict(client.headers), client.session)

    def close(self) -> None:
        if self._sf is not None:
            self._sf.session.close()
            self._sf = None
        super().close()

    # ------------------------------------------------------------ limits and errors

    def observe(self, response: requests.Response) -> None:
        """Keeps the org's API usage from `Sforce-Limit-Info: api-usage=N/M`."""
        info = response.headers.get("Sforce-Limit-Info")
        matched = _API_USAGE.search(info) if info else None
        if matched is not None:
            self._usage = (int(matched[1]), int(matched[2]))

    def quota(self) -> QuotaReading | None:
        if self._usage is None:
            return None
        return QuotaReading(used=self._usage[0], limit=self._usage[1], what="daily API requests")

    def raise_for_limits(self, response: requests.Response) -> None:
        """Raises for throttling, outages and a spent daily allocation, with the headers at hand."""
        status = response.status_code
        if response.is_redirect:
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                f"Salesforce redirected {self.doing} (HTTP {status}); set base_url to the org's https My Domain URL",
                details={"http_status": status},
            )
        if status == 429 or status >= 500:
            code = _error_code(_response_content(response))
            raise http_error(status, response.headers, PROVIDER, self.doing, code)
        if status == 403:
            error = _first_error(_response_content(response))
            if error.get("errorCode") != "REQUEST_LIMIT_EXCEEDED":
                return
            said = str(error.get("message", ""))
            if "TotalRequests" in said:
                raise self._paused(
                    "Salesforce refused the request: the org has used its daily API allocation"
                    f" (REQUEST_LIMIT_EXCEEDED: {said[:200]})"
                )
            raise ThrottledError(
                CheckStatus.ERROR,
                f"Salesforce refused {self.doing}: too many concurrent long-running requests"
                " (REQUEST_LIMIT_EXCEEDED); it is retried",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                details={"http_status": status},
            )

    def _paused(self, reason: str) -> SourcePausedError:
        # The allocation is a rolling 24-hour window: the state machine retries the step hourly.
        return SourcePausedError(
            CheckStatus.ERROR,
            f"{reason}; the sync stops at its last checkpoint and resumes from it when the step is retried",
            retry_after=USAGE_PAUSE_SECONDS,
            details={"paused": "api_usage"},
        )

    def check_usage(self) -> None:
        """Pauses before the next request once the org's API usage passed the threshold."""
        if self._usage is None:
            return
        used, limit = self._usage
        share = self.usage_threshold()
        if limit > 0 and used >= share * limit:
            raise self._paused(
                f"Salesforce API usage is {used * 100 // limit}% of the org's daily limit ({used} of {limit}"
                f" requests; this integration pauses at {share:.0%})"
            )

    def translate(self, exc: BaseException) -> SourceError | None:
        if isinstance(exc, SalesforceExpiredSession):
            return SourceError(
                CheckStatus.AUTHENTICATION_FAILED,
                f"Salesforce refused the renewed session for {self.doing} (INVALID_SESSION_ID);"
                " authorise the integration again",
                details={"http_status": 401},
            )
        if isinstance(exc, SalesforceError):
            code = _error_code(exc.content)
            if isinstance(exc, SalesforceMalformedRequest) and code == "INVALID_QUERY_LOCATOR":
                return TransientSourceError(
                    CheckStatus.ERROR, f"Salesforce's query locator expired while {self.doing}; the read resumes"
                )
            return http_error(exc.status, {}, PROVIDER, self.doing, code)
        if isinstance(exc, requests.RequestException):
            return unreachable(PROVIDER, self.doing)
        return None

    # ------------------------------------------------------------ connector primitives

    def connect(self, *, deadline: float | None = None) -> None:
        """Readies the client without a request of its own (renewing a token that expired): the
        describe that follows proves the session, and a ping would cost an API call per sync."""
        self.preflight()
        self._call(self._client, deadline=deadline, limited=False)

    def _ping(self) -> None:
        self._sdk("testing the connection", lambda client: client.limits())

    def _discover(
        self, entity: str, source: str | None, options: SourceOptions, wanted: frozenset[str] | None
    ) -> Stream:
        name = source or ""
        if not _NAME.match(name):
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                f"entity {entity!r} must map to a Salesforce object API name (letters, digits and _,"
                " e.g. Account or Churn_Risk__c)",
            )
        if options.query is not None or options.primary_key not in (None, ["Id"]):
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                f"entity {entity!r}: Salesforce objects are read whole by their Id; drop query and primary_key",
            )
        described = self._sdk(f"describing {name}", lambda client: client.restful(f"sobjects/{name}/describe"))
        if not isinstance(described, dict):
            raise TransientSourceError(CheckStatus.ERROR, f"Salesforce answered the describe of {name} without fields")
        if not described.get("queryable", False):
            raise SourceError(CheckStatus.MISSING_PRIVILEGES, f"the Salesforce integration user may not query {name}")
        kinds: dict[str, str] = {}
        required: set[str] = set()
        for spec in described.get("fields") or []:
            field_name, kind = spec.get("name"), spec.get("type")
            if isinstance(field_name, str) and _NAME.match(field_name) and kind not in _SKIPPED_TYPES:
                kinds[field_name] = _KINDS.get(str(kind), "text")
                if not spec.get("nillable", True):
                    required.add(field_name)
        if "Id" not in kinds:
            raise SourceError(CheckStatus.MISSING_OBJECT, f"Salesforce's describe of {name} has no Id field")
        cursor = self._cursor_of(entity, name, options, kinds, required)
        keep = {"Id", "IsDeleted", cursor}
        fields = tuple(f for f in kinds if wanted is None or f in wanted or f in keep)
        modes = {DataSyncMode.FULL_SYNC} | ({DataSyncMode.INCREMENTAL} if cursor else set())
        return Stream(
            entity=entity,
            source=str(described.get("name") or name),
            primary_key=("Id",),
            cursor_field=cursor,
            sync_modes=frozenset(modes),
            fields=fields,
            column_kinds={f: kinds[f] for f in fields},
            lookback_seconds=self.lookback_for(entity) if cursor else 0,
        )

    @staticmethod
    def _cursor_of(
        entity: str, name: str, options: SourceOptions, kinds: dict[str, str], required: set[str]
    ) -> str | None:
        """SystemModstamp, else LastModifiedDate, or a non-null datetime field the options name."""
        if options.cursor_field is None:
            return next((f for f in _CURSOR_FIELDS if kinds.get(f) == "datetime"), None)
        if kinds.get(options.cursor_field) != "datetime" or options.cursor_field not in required:
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                f"entity {entity!r}: cursor_field must be a datetime field of {name} that is never empty",
            )
        return options.cursor_field

    def _probe(self, stream: Stream) -> None:
        """Nothing to do: the describe in `_discover` already proved the object is queryable."""

    def next_read_start(self, stream: Stream, position: Position) -> Position:
        cursor, recent = position.cursor, position.recent
        # A finished read's state is {"ts", "id"} or {"ts"}; a bulk job's is not final.
        if stream.lookback_seconds and recent is not None and isinstance(cursor, dict) and "job" not in cursor:
            try:
                last = _parse_datetime(cursor["ts"]) if isinstance(cursor.get("ts"), str) else None
            except ValueError:
                raise _bad_state() from None
            start, rewound = start_of_next_read(last, recent, stream.lookback_seconds)
            if rewound:
                return Position(cursor={"ts": _state_time(start)}, recent=recent.next_read())
        return super().next_read_start(stream, position)

    def _pages(self, stream: Stream, position: Position, page_size: int, encoded: bool) -> Generator[Page, None, None]:
        cursor = position.cursor
        if cursor is None:
            state: dict[str, Any] = {"full": True}
        elif isinstance(cursor, datetime):  # sync_config.last_sync_timestamp
            state = {"ts": _state_time(cursor)}
        elif isinstance(cursor, dict):
            state = dict(cursor)
        else:
            raise _bad_state()
        if state.get("job"):
            yield from self._bulk_pages(stream, state)
        else:
            yield from self._rest_pages(stream, state)

    # ------------------------------------------------------------ REST

    def _soql(self, stream: Stream, state: dict[str, Any], *, ordered: bool) -> str:
        fields = stream.fields or ()
        names = (stream.source, *fields, *([stream.cursor_field] if stream.cursor_field else []))
        if not fields or not all(_NAME.match(n) for n in names):
            raise _bad_state()
        cursor, ts, last_id = stream.cursor_field, state.get("ts"), state.get("id")
        where = ""
        if cursor is None:
            where = f"Id > {_soql_id(last_id)}" if last_id else ""
        elif last_id:
            at = _soql_datetime(ts)
            where = f"{cursor} > {at} OR ({cursor} = {at} AND Id > {_soql_id(last_id)})"
        elif ts is not None:
            where = f"{cursor} >= {_soql_datetime(ts)}"
        # Names are checked API names and literals are formatted above: nothing else reaches SOQL.
        soql = f"SELECT {', '.join(fields)} FROM {stream.source}"  # noqa: S608
        if where:
            soql += f" WHERE {where}"
        if ordered:
            soql += f" ORDER BY {cursor} ASC, Id ASC" if cursor else " ORDER BY Id ASC"
        return soql

    def _after(self, stream: Stream, row: dict[str, Any]) -> dict[str, Any]:
        value = row.get(stream.cursor_field) if stream.cursor_field else None
        return {"ts": _state_time(value) if isinstance(value, datetime) else None, "id": row.get("Id")}

    def _rows(self, stream: Stream, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Records as rows (datetimes parsed, `attributes` dropped) and the deleted ones apart."""
        times = [name for name, kind in stream.column_kinds.items() if kind == "datetime"]
        rows: list[dict[str, Any]] = []
        deleted: list[dict[str, Any]] = []
        for record in records:
            record.pop("attributes", None)
            for name in times:
                value = record.get(name)
                if isinstance(value, str):
                    try:
                        record[name] = _parse_datetime(value)
                    except ValueError:
                        raise SourceError(
                            CheckStatus.ERROR, f"Salesforce answered a {stream.source}.{name} that is not a datetime"
                        ) from None
            (deleted if record.get("IsDeleted") is True else rows).append(record)
        return rows, deleted

    def _rest_pages(self, stream: Stream, state: dict[str, Any]) -> Generator[Page, None, None]:
        full = bool(state.get("full"))
        include_deleted = not full and "IsDeleted" in stream.column_kinds
        soql = self._soql(stream, state, ordered=True)
        headers = {"Sforce-Query-Options": f"batchSize={PAGE_SIZE}"}
        doing = f"reading {stream.source}"
        self.check_usage()
        result = self._sdk(doing, lambda client: client.query(soql, include_deleted=include_deleted, headers=headers))
        first = True
        while True:
            records = result.get("records") or []
            done = bool(result.get("done", True)) or not result.get("nextRecordsUrl")
            rows, deleted = self._rows(stream, records)
            if records:
                after = self._after(stream, records[-1])
                total = int(result.get("totalSize") or 0)
                job = self._bulk_instead(stream, after, total) if first and full and not done else None
                if job is not None:
                    yield Page(rows, Position(cursor=job), deleted)
                    yield from self._bulk_pages(stream, job)
                    return
                yield Page(rows, Position(cursor={**after, "full": True} if full and not done else after), deleted)
            if done:
                return
            locator = str(result["nextRecordsUrl"]).rsplit("/", 1)[-1]
            if not _LOCATOR.match(locator):
                raise TransientSourceError(CheckStatus.ERROR, f"Salesforce answered {doing} with an odd nextRecordsUrl")

            def more(client: Salesforce, locator: str = locator) -> Any:
                return client.query_more(
                    locator, identifier_is_url=False, include_deleted=include_deleted, headers=headers
                )

            self.check_usage()
            result = self._sdk(doing, more)
            first = False

    # ------------------------------------------------------------ Bulk API 2.0

    def _bulk_instead(self, stream: Stream, after: dict[str, Any], total: int) -> dict[str, Any] | None:
        """A query job for the rows after the first page of a full read that reports more rows
        than bulk_threshold; None (paging on over REST) for fewer, or for an object or user the
        Bulk API refuses."""
        if total <= self.bulk_threshold():
            return None
        try:
            return self._new_job(stream, after)
        except (SalesforceMalformedRequest, SalesforceRefusedRequest):
            return None

    def _new_job(self, stream: Stream, after: dict[str, Any] | None) -> dict[str, Any]:
        soql = self._soql(stream, after or {}, ordered=False)
        self.check_usage()
        job = self._sdk(
            f"starting a Bulk API 2.0 query of {stream.source}",
            lambda client: self._bulk(client, stream).create_job(Operation.query, soql),
        )
        job_id, created = job.get("id"), job.get("createdDate")
        if not isinstance(job_id, str) or not _RECORD_ID.match(job_id) or not isinstance(created, str):
            raise TransientSourceError(
                CheckStatus.ERROR, f"Salesforce answered the Bulk API 2.0 query of {stream.source} oddly"
            )
        return {"job": job_id, "locator": "", "skip": 0, "since": _state_time(_parse_datetime(created)), "after": after}

    def _job_state(self, stream: Stream, job_id: str) -> str:
        """The job's state; "Expired" when Salesforce no longer has it (results live 7 days)."""
        try:
            info = self._sdk(
                f"waiting for the Bulk API 2.0 query of {stream.source}",
                lambda client: self._bulk(client, stream).get_job(job_id, True),
            )
        except SalesforceResourceNotFound:
            return "Expired"
        return str(info.get("state"))

    def _bulk_pages(self, stream: Stream, job: dict[str, Any]) -> Generator[Page, None, None]:
        """Waits for the job, then reads its results. Every page carries the job's state, so a
        step that ends meanwhile checkpoints it and the next step goes on with the same job."""
        replaced, wait = False, 0.5
        while (status := self._job_state(stream, job["job"])) != "JobComplete":
            if status in {"Failed", "Aborted", "Expired"}:
                if replaced:
                    raise TransientSourceError(
                        CheckStatus.ERROR,
                        f"Salesforce's Bulk API 2.0 query of {stream.source} ended {status}; a retry starts a new one",
                    )
                job, replaced = self._new_job(stream, job.get("after")), True
                yield Page([], Position(cursor=job))  # checkpointed before it is waited for
                continue
            # An empty page lets the engine stop at its time budget while the job runs.
            yield Page([], Position(cursor=job))
            self.guard.retry.sleep(wait)
            wait = min(wait * 2, BULK_POLL_MAX_SECONDS)
        yield from self._bulk_results(stream, job)

    def _bulk_results(self, stream: Stream, job: dict[str, Any]) -> Generator[Page, None, None]:
        final = {"ts": job["since"]} if stream.cursor_field else {}
        locator, skip = str(job.get("locator") or ""), int(job.get("skip") or 0)
        doing = f"reading the Bulk API 2.0 results of {stream.source}"
        while True:

            def fetch(client: Salesforce, locator: str = locator) -> QueryResult:
                return self._bulk(client, stream).get_query_results(job["job"], locator, self.bulk_result_records)

            self.check_usage()
            result = self._sdk(doing, fetch)
            following = result["locator"]
            rows = self._csv_rows(stream, str(result["records"]))
            if skip >= len(rows) and not following:
                yield Page([], Position(cursor=final))
            for start in range(skip, len(rows), PAGE_SIZE):
                end = min(start + PAGE_SIZE, len(rows))
                if end < len(rows):
                    at: dict[str, Any] = {**job, "locator": locator, "skip": end}
                elif following:
                    at = {**job, "locator": following, "skip": 0}
                else:
                    at = final
                yield Page(rows[start:end], Position(cursor=at))
            if not following:
                return
            locator, skip = following, 0

    def _csv_rows(self, stream: Stream, text: str) -> list[dict[str, Any]]:
        """Bulk results as rows typed like the REST API's (empty cells are null)."""
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None:
            return []
        converters = [_CSV_CONVERTERS.get(stream.column_kinds.get(name, "text")) for name in header]
        rows: list[dict[str, Any]] = []
        try:
            for values in reader:
                rows.append(
                    {
                        name: None if value == "" else (convert(value) if convert is not None else value)
                        for name, convert, value in zip(header, converters, values, strict=True)
                    }
                )
        except ValueError:
            raise SourceError(
                CheckStatus.ERROR, f"Salesforce's Bulk API 2.0 results of {stream.source} do not match its fields"
            ) from None
        return rows
