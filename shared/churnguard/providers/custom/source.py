"""REST API ingestion rules: one polled HTTP endpoint feeding one entity.

What it reads, its limits and quirks: README.md in this folder."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import NewConnectionError

from churnguard import netguard
from churnguard.connectors.api import ApiConnector, ApiObject
from churnguard.connectors.base import CheckStatus, Page, Position, SourceError, Stream, TransientSourceError
from churnguard.models import (
    REST_SOURCE_OBJECT,
    PaginationType,
    ProviderName,
    RestAuthType,
    RestIncremental,
    RestSource,
    SourceOptions,
    secret_query_field,
)
from churnguard.resilience import ProviderLimits

DEFAULT_ENTITY = "event"
MAX_BOUNDARY_KEYS = 250
TOKEN_MARGIN = timedelta(seconds=30)
_REDIRECTS = (301, 302, 303, 307, 308)
_OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)


# ---------------------------------------------------------------- connect-time address check


class _Refusal(threading.local):
    reason: str | None = None


_refusal = _Refusal()


def _checked_socket(connection: HTTPConnection, sock: Any) -> Any:
    """Refuses a connection whose peer is an address sources may not reach."""
    peer = str(sock.getpeername()[0])
    reason = netguard.refusal_for_address(peer)
    if reason is not None:
        sock.close()
        _refusal.reason = f"host {connection.host!r} connected to {reason}"
        raise NewConnectionError(connection, "refused by the network guard")
    return sock


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> Any:
        return _checked_socket(self, super()._new_conn())


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> Any:
        return _checked_socket(self, super()._new_conn())


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    """An adapter whose connections check the address they reached."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


# ---------------------------------------------------------------- cursor values


def _as_time(value: Any, fmt: str) -> datetime | None:
    """A cursor value as an aware datetime: numbers are Unix seconds (milliseconds with
    unix_ms), strings ISO 8601 or digits; None when it is neither."""
    if isinstance(value, str):
        return _text_time(value.strip(), fmt)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    try:
        return datetime.fromtimestamp(value / 1000 if fmt == "unix_ms" else value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _text_time(text: str, fmt: str) -> datetime | None:
    try:
        return _as_time(float(text), fmt)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _comparable(value: Any, fmt: str) -> Any:
    """What cursor values are compared as: times for time formats, else numbers or strings."""
    if value is None:
        return None
    if fmt != "raw":
        return _as_time(value, fmt)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | str):
        return value
    return None


def compare(left: Any, right: Any, fmt: str) -> int | None:
    """-1, 0 or 1; None when the two cannot be compared (missing, or of different kinds)."""
    a, b = _comparable(left, fmt), _comparable(right, fmt)
    if a is None or b is None:
        return None
    numbers = (int, float)
    if not (isinstance(a, numbers) and isinstance(b, numbers)) and type(a) is not type(b):
        return None
    return int(a > b) - int(a < b)


def render(value: Any, fmt: str) -> Any:
    """The incremental parameter's value for cursor `value`."""
    if fmt == "raw":
        return value
    moment = _as_time(value, fmt)
    if moment is None:
        return value
    if fmt == "unix":
        return math.floor(moment.timestamp())
    if fmt == "unix_ms":
        return math.floor(moment.timestamp() * 1000)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def value_at(document: Any, path: str) -> tuple[bool, Any]:
    """(found, value) at a dotted path; the literal key wins over a nested lookup."""
    if not path:
        return True, document
    if isinstance(document, Mapping) and path in document:
        return True, document[path]
    node = document
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


# ---------------------------------------------------------------- poll state


@dataclass(frozen=True)
class PollState:
    bound: Any = None
    bound_keys: frozenset[str] = frozenset()
    max: Any = None
    max_keys: frozenset[str] = frozenset()
    page: Any = None
    done: bool = False

    @classmethod
    def at(cls, position: Position) -> PollState:
        """The state a read starts from: a fresh full read, a first incremental poll from
        `last_sync_timestamp`, the next poll after a finished one, or a poll to resume."""
        cursor = position.cursor
        if cursor is None:
            return cls()
        if isinstance(cursor, datetime):
            moment = cursor if cursor.tzinfo is not None else cursor.replace(tzinfo=UTC)
            return cls(bound=moment.isoformat(), max=moment.isoformat())
        if not isinstance(cursor, Mapping):
            return cls(bound=cursor, max=cursor)
        state = cls(
            bound=cursor.get("bound"),
            bound_keys=frozenset(cursor.get("bound_keys") or ()),
            max=cursor.get("max"),
            max_keys=frozenset(cursor.get("max_keys") or ()),
            page=cursor.get("page"),
            done=bool(cursor.get("done")),
        )
        if state.done:
            return cls(bound=state.max, bound_keys=state.max_keys, max=state.max, max_keys=state.max_keys)
        return state

    def to_json(self) -> dict[str, Any]:
        return {
            "bound": self.bound,
            "bound_keys": sorted(self.bound_keys),
            "max": self.max,
            "max_keys": sorted(self.max_keys),
            "page": self.page,
            "done": self.done,
        }


@dataclass
class _Tracker:
    """Filters one page's records against the bound and moves the maximum."""

    incremental: RestIncremental | None
    primary_key: tuple[str, ...]
    state: PollState
    max: Any = None
    max_keys: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.max, self.max_keys = self.state.max, set(self.state.max_keys)

    def keep(self, record: Mapping[str, Any]) -> bool:
        if self.incremental is None:
            return True
        fmt = self.incremental.format
        found, cursor = value_at(record, self.incremental.cursor_field)
        if not found or cursor is None:
            return True
        key = json.dumps([record.get(name) for name in self.primary_key], separators=(",", ":"), default=str)
        if self.state.bound is not None:
            order = compare(cursor, self.state.bound, fmt)
            if order is not None and (order < 0 or (order == 0 and key in self.state.bound_keys)):
                return False
        order = None if self.max is None else compare(cursor, self.max, fmt)
        if self.max is None or order == 1:
            self.max, self.max_keys = cursor, {key}
        elif order == 0 and len(self.max_keys) < MAX_BOUNDARY_KEYS:
            self.max_keys.add(key)
        return True

    def after(self, page: Any, done: bool) -> PollState:
        return replace(self.state, max=self.max, max_keys=frozenset(self.max_keys), page=page, done=done)


# ---------------------------------------------------------------- the connector


class RestConnector(ApiConnector):
    provider: ClassVar[ProviderName] = ProviderName.CUSTOM
    # An API we know nothing about: one request a second unless the rule says otherwise.
    limits = ProviderLimits(60, 5, "unknown: a rule's requests_per_minute (60 unless set)")
    provider_label: ClassVar[str] = "the REST API"
    default_entities: ClassVar[Mapping[str, str]] = {DEFAULT_ENTITY: REST_SOURCE_OBJECT}

    # ------------------------------------------------------------ configuration

    @property
    def spec(self) -> RestSource:
        if self.config.rest_source is None:
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                "this custom integration has no REST source to poll; create it as an ingestion rule",
            )
        return self.config.rest_source

    def source_of(self, entity: str) -> str | None:
        return REST_SOURCE_OBJECT

    def _discover(
        self, entity: str, source: str | None, options: SourceOptions, wanted: frozenset[str] | None
    ) -> Stream:
        spec = self.spec
        incremental = spec.incremental
        return Stream(
            entity=entity,
            source=REST_SOURCE_OBJECT,
            primary_key=tuple(spec.primary_key),
            cursor_field=incremental.cursor_field if incremental is not None else None,
            sync_modes=ApiObject(incremental=incremental is not None).sync_modes(),
        )

    def translate(self, exc: BaseException) -> SourceError | None:
        if isinstance(exc, netguard.BlockedAddressError):
            return SourceError(CheckStatus.INVALID_CONFIGURATION, f"the rule's address is refused: {exc}")
        return None

    def _secret(self, name: str) -> str:
        secret = self.credentials.custom_fields.get(name)
        if secret is None:
            raise SourceError(
                CheckStatus.AUTHENTICATION_FAILED,
                f"the rule's credentials lack auth.{name} for auth type {self.spec.auth.type.value}; set it",
            )
        return secret.get_secret_value()

    # ------------------------------------------------------------ SDK primitives

    def _ping(self) -> None:
        """Checks the addresses (DNS may have changed since registration) and, for OAuth2,
        that a token can be had; the endpoint itself is first called by the read."""
        spec = self.spec
        netguard.check_url(spec.url)
        if spec.auth.type is RestAuthType.OAUTH2_CLIENT_CREDENTIALS:
            netguard.check_url(spec.auth.token_url)
            self._access_token()

    def _probe(self, stream: Stream) -> None:
        spec = self.spec
        response = self._send(*self._request_parts(spec, PollState()))
        self._records(spec, self.json_of(response, "the first page"))

    def _pages(self, stream: Stream, position: Position, page_size: int, encoded: bool) -> Generator[Page, None, None]:
        """Pages from `position`; the rule's own page size applies (see RestPagination)."""
        spec = self.spec
        state = PollState.at(position)
        while True:
            response = self._send(*self._request_parts(spec, state))
            payload = self.json_of(response, "a page")
            records = self._records(spec, payload)
            tracker = _Tracker(spec.incremental, tuple(spec.primary_key), state)
            rows = [record for record in records if tracker.keep(record)]
            following = self._next_page(spec, state, response, payload, len(records))
            state = tracker.after(following, following is None)
            yield Page(rows, Position(cursor=state.to_json()))
            if following is None:
                return

    # ------------------------------------------------------------ requests

    def session(self) -> requests.Session:
        if self._session is None:
            session = super().session()
            session.trust_env = False  # no proxies or .netrc from the environment
            adapter = _GuardedAdapter()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            return session
        return self._session

    def request(
        self, method: str, url: str, *, what: str, expected: tuple[int, ...] = (200,), **kwargs: Any
    ) -> requests.Response:
        """ApiConnector.request without redirects, where a refused address is a configuration
        error rather than an outage."""
        _refusal.reason = None
        try:
            response = super().request(
                method, url, what=what, expected=(*expected, *_REDIRECTS), allow_redirects=False, **kwargs
            )
        except TransientSourceError:
            reason, _refusal.reason = _refusal.reason, None
            if reason is None:
                raise
            raise SourceError(CheckStatus.INVALID_CONFIGURATION, f"the rule's address is refused: {reason}") from None
        if response.status_code in _REDIRECTS and response.status_code not in expected:
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                f"{self.provider_label} redirected {what} (HTTP {response.status_code}); redirects are not"
                " followed, so set the rule's url to the final address",
                details={"http_status": response.status_code},
            )
        return response

    def _request_parts(self, spec: RestSource, state: PollState) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
        """URL, query parameters and JSON body of the request for `state`'s page."""
        query: dict[str, Any] = dict(spec.query)
        body = dict(spec.body) if spec.body is not None else ({} if spec.method == "POST" else None)
        extra: dict[str, Any] = {}
        paging = spec.pagination
        if spec.incremental is not None and state.bound is not None:
            extra[spec.incremental.param] = render(state.bound, spec.incremental.format)
        if paging.size_param and paging.type is not PaginationType.NONE:
            extra[paging.size_param] = paging.page_size
        url = spec.url
        if paging.type is PaginationType.CURSOR and state.page is not None:
            extra[paging.cursor_param] = state.page
        elif paging.type is PaginationType.OFFSET:
            extra[paging.offset_param] = state.page or 0
        elif paging.type is PaginationType.PAGE:
            extra[paging.page_param] = paging.start_page if state.page is None else state.page
        elif paging.type is PaginationType.LINK_HEADER and state.page is not None:
            url, query, extra = str(state.page), {}, {}  # the next link carries its parameters
            self._same_origin(spec, url)  # a checkpoint from before the rule's URL changed
            netguard.check_url(url)
        if spec.params_in == "body" and body is not None:
            body.update(extra)
        else:
            query.update(extra)
        return url, query, body

    def _send(self, url: str, query: dict[str, Any], body: dict[str, Any] | None) -> requests.Response:
        """One page request with the rule's auth; an OAuth2 token the API refuses is renewed once."""
        if self.spec.auth.type is not RestAuthType.OAUTH2_CLIENT_CREDENTIALS:
            return self._attempt(url, query, body, None)
        try:
            return self._attempt(url, query, body, self._access_token())
        except SourceError as exc:
            if exc.kind is not CheckStatus.AUTHENTICATION_FAILED:
                raise
        return self._attempt(url, query, body, self._access_token(renew=True))

    def _attempt(
        self, url: str, query: dict[str, Any], body: dict[str, Any] | None, access_token: str | None
    ) -> requests.Response:
        spec = self.spec
        headers = dict(spec.headers)
        params = dict(query)
        params.update({name: self._secret(secret_query_field(name)) for name in spec.secret_query})
        basic: tuple[str, str] | None = None
        kind = spec.auth.type
        if kind is RestAuthType.BEARER:
            headers["Authorization"] = f"Bearer {self._secret('token')}"
        elif kind is RestAuthType.API_KEY:
            target = headers if spec.auth.api_key_in == "header" else params
            target[spec.auth.api_key_name] = self._secret("api_key")
        elif kind is RestAuthType.BASIC:
            basic = (self._secret("username"), self._secret("password"))
        elif access_token is not None:
            headers["Authorization"] = f"Bearer {access_token}"
        return self.request(
            spec.method,
            url,
            what=f"polling {urlsplit(url).hostname}",
            headers=headers,
            params=params or None,
            json=body,
            auth=basic,
        )

    def _records(self, spec: RestSource, payload: Any) -> list[dict[str, Any]]:
        found, records = value_at(payload, spec.data_path)
        where = f"data_path {spec.data_path!r}" if spec.data_path else "the response"
        if not found:
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                f"{self.provider_label} answered without a field at {where}; check the rule's data_path",
            )
        if records is None:
            return []
        if not isinstance(records, list):
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                f"{where} in {self.provider_label}'s answer is not an array of records; check the rule's data_path",
            )
        if not all(isinstance(record, dict) for record in records):
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION, f"the records at {where} must be JSON objects; check data_path"
            )
        return records

    def _next_page(
        self, spec: RestSource, state: PollState, response: requests.Response, payload: Any, count: int
    ) -> Any:
        """Where the next page starts, or None after the last one. Offset and page paging end at
        a short page, saving the empty request; cursor paging at a page without records or a
        cursor, or one that repeats."""
        paging = spec.pagination
        if paging.type is PaginationType.CURSOR:
            _, token = value_at(payload, paging.cursor_path)
            ended = not count or token in (None, "", state.page) or isinstance(token, dict | list)
            return None if ended else token
        if paging.type is PaginationType.LINK_HEADER:
            return self._next_link(spec, response, count)
        if paging.type is PaginationType.NONE or count < paging.page_size:
            return None
        if paging.type is PaginationType.OFFSET:
            return int(state.page or 0) + count
        return (paging.start_page if state.page is None else int(state.page)) + 1

    def _next_link(self, spec: RestSource, response: requests.Response, count: int) -> str | None:
        link = response.links.get("next", {}).get("url")
        if not link or not count:
            return None
        following = urljoin(response.url, link)
        self._same_origin(spec, following)
        secret = set(spec.secret_query)
        if spec.auth.type is RestAuthType.API_KEY and spec.auth.api_key_in == "query":
            secret.add(spec.auth.api_key_name)
        if secret:
            # The link may echo secrets; it is stored in the checkpoint, and they are added again.
            parts = urlsplit(following)
            kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in secret]
            following = urlunsplit(parts._replace(query=urlencode(kept)))
        return following

    def _same_origin(self, spec: RestSource, url: str) -> None:
        """Credentials are only ever sent to the configured scheme, host and port."""
        here, there = urlsplit(spec.url), urlsplit(url)
        if (here.scheme, here.netloc) != (there.scheme, there.netloc):
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                f"{self.provider_label}'s next link leads to another host ({there.hostname}); it is not"
                " followed, so that credentials are only sent to the configured host",
            )

    # ------------------------------------------------------------ OAuth2 client credentials

    def _access_token(self, *, renew: bool = False) -> str:
        """The cached token while it has TOKEN_MARGIN left, else a new one from token_url,
        stored (encrypted) with the credentials so the next invocation reuses it."""
        token = self.credentials.access_token
        expires = self.credentials.token_expires_at
        if not renew and token is not None and (expires is None or expires - TOKEN_MARGIN > datetime.now(UTC)):
            return token.get_secret_value()
        auth = self.spec.auth
        netguard.check_url(auth.token_url)
        client_id, client_secret = self._secret("client_id"), self._secret("client_secret")
        form = {"grant_type": "client_credentials", **({"scope": auth.scope} if auth.scope else {})}
        basic: tuple[str, str] | None = None
        if auth.client_auth == "basic":
            basic = (client_id, client_secret)
        else:
            form.update(client_id=client_id, client_secret=client_secret)
        response = self.request(
            "POST",
            auth.token_url,
            what="fetching an OAuth2 token",
            expected=(200, 400, 401),
            data=form,
            auth=basic,
            headers={"Accept": "application/json"},
        )
        if response.status_code != 200:
            try:
                refusal = response.json()
            except ValueError:
                refusal = None
            code = refusal.get("error") if isinstance(refusal, dict) else None
            detail = f": {code}" if code in _OAUTH_ERRORS else ""
            raise SourceError(
                CheckStatus.AUTHENTICATION_FAILED,
                f"the OAuth2 token endpoint refused the client credentials (HTTP {response.status_code}{detail});"
                " replace client_id and client_secret",
                details={"http_status": response.status_code},
            )
        document = self.json_of(response, "the token request")
        access = document.get("access_token") if isinstance(document, dict) else None
        if not isinstance(access, str) or not access:
            raise SourceError(CheckStatus.AUTHENTICATION_FAILED, "the OAuth2 token endpoint answered without a token")
        renewed = {k: v for k, v in self.credentials.to_plaintext().items() if k != "token_expires_at"}
        renewed["access_token"] = access
        try:
            lifetime = float(document.get("expires_in"))
        except (TypeError, ValueError):
            lifetime = math.nan
        if math.isfinite(lifetime):  # no lifetime: the token is used until the API refuses it
            renewed["token_expires_at"] = (datetime.now(UTC) + timedelta(seconds=lifetime)).isoformat()
        self.credentials = self.credentials.model_validate(renewed)
        if self.save_credentials is not None:
            self.save_credentials(self.credentials)
        return access
