"""What every SaaS and REST connector shares, on top of the connector SDK.

- Streams: an entity reads one provider object (`entity_mappings`: entity → object, e.g.
  `{"customer": "customers"}`); without mappings the connector reads its `default_entities`.
- State: a provider's resume point is not a (cursor, key) pair but whatever its API pages by
  (a `starting_after` id, an event id, a `nextRecordsUrl`, a modification time and an id). It
  travels as `Position.cursor`, a small JSON object the connector owns, and is stored as is.
  A cursor that is a datetime (from `sync_config.last_sync_timestamp`) is stored tagged.
- HTTP: one `requests` session per connector; every request takes a rate-limit slot, and every
  error status becomes a SourceError the retry policy and breaker understand: 429 and a
  Retry-After → ThrottledError (retried after the time the provider names, not counted by the
  breaker), 5xx and connection failures → TransientSourceError, 401 → authentication_failed
  (after one OAuth2 refresh), 403 → missing_privileges, 404 → missing_object.
- OAuth2: `refresh_oauth2` exchanges the refresh token, keeps a rotated refresh token, and hands
  the renewed credentials to `save_credentials` so the next invocation starts from them.

Connectors on a provider SDK (Stripe, HubSpot, Salesforce) use the same state, streams, error
kinds and refresh bookkeeping, translating their SDK's exceptions in `translate`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import SecretStr

from churnguard.connectors.base import (
    CheckStatus,
    Connector,
    Position,
    SourceError,
    Stream,
    ThrottledError,
    TransientSourceError,
    with_recent,
)
from churnguard.connectors.lookback import Recent
from churnguard.connectors.tls import ca_file
from churnguard.models import DataSyncMode, SourceOptions

if TYPE_CHECKING:
    import requests

DEFAULT_TIMEOUT = (10.0, 60.0)  # connect, read
REFRESH_MARGIN = timedelta(seconds=120)
_STATE_TAG = "$state"


@dataclass(frozen=True)
class ApiObject:
    """A provider object a connector can read: its key, its change cursor, its sync modes."""

    primary_key: tuple[str, ...] = ("id",)
    cursor_field: str | None = None
    incremental: bool = True

    def sync_modes(self) -> frozenset[DataSyncMode]:
        modes = {DataSyncMode.FULL_SYNC}
        if self.incremental:
            modes.add(DataSyncMode.INCREMENTAL)
        return frozenset(modes)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def http_error(
    status: int, headers: Mapping[str, str], provider: str, what: str, detail: str | None = None
) -> SourceError:
    """The SourceError for an HTTP error status from `provider` while doing `what`.

    `detail` is the provider's own error code or short message, when it names no secret."""
    suffix = f": {detail}" if detail else ""
    if status == 429:
        return ThrottledError(
            CheckStatus.ERROR,
            f"{provider} rate-limited {what}{suffix}; it is retried after the time {provider} asks for",
            retry_after=retry_after_seconds(headers.get("Retry-After")),
            details={"http_status": status},
        )
    if status in (408, 425) or status >= 500:
        return TransientSourceError(
            CheckStatus.ERROR,
            f"{provider} failed {what} (HTTP {status}){suffix}; it is retried",
            retry_after=retry_after_seconds(headers.get("Retry-After")),
            details={"http_status": status},
        )
    if status == 401:
        return SourceError(
            CheckStatus.AUTHENTICATION_FAILED,
            f"{provider} refused the configured credentials{suffix}; replace them and test the connection",
            details={"http_status": status},
        )
    if status == 403:
        return SourceError(
            CheckStatus.MISSING_PRIVILEGES,
            f"the configured {provider} credentials may not do {what}{suffix}; grant the missing scope",
            details={"http_status": status},
        )
    if status == 404:
        return SourceError(
            CheckStatus.MISSING_OBJECT,
            f"{provider} has no such object for {what}{suffix}",
            details={"http_status": status},
        )
    return SourceError(
        CheckStatus.INVALID_CONFIGURATION,
        f"{provider} rejected {what} (HTTP {status}){suffix}",
        details={"http_status": status},
    )


def unreachable(provider: str, what: str) -> TransientSourceError:
    return TransientSourceError(CheckStatus.UNREACHABLE, f"{provider} could not be reached for {what}; it is retried")


def _verified_session(ca_bundle: str) -> requests.Session:
    """A session that checks every certificate against `ca_bundle`, whatever a client passes
    as `verify` (the stripe SDK passes its own bundle with every request)."""
    import requests

    class VerifiedSession(requests.Session):
        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            kwargs["verify"] = ca_bundle
            return super().send(request, **kwargs)

    return VerifiedSession()


class ApiConnector(Connector):
    """Base of the SaaS and REST connectors. Subclasses declare `objects` and `default_entities`
    and implement `_ping`, `_probe`, `_pages` and `translate` (for their SDK's exceptions;
    `requests` errors are translated here)."""

    slot_per_read = False
    # A sync's first read proves the credentials as well as a ping does, so a connector whose
    # ping is a request of its own skips it before a sync (a request fewer per sync); the
    # connection test still pings. Connectors whose ping fetches what the read needs keep it.
    ping_before_sync: ClassVar[bool] = True
    objects: ClassVar[Mapping[str, ApiObject]] = {}
    default_entities: ClassVar[Mapping[str, str]] = {}
    provider_label: ClassVar[str] = "the provider"

    _session: requests.Session | None = None

    # ------------------------------------------------------------ address

    def preflight(self) -> None:
        """A `base_url` pointing at the provider's API may be changed (an EU host, a proxy, the
        tests' fakes), so it gets the same guard as ingestion rules: no loopback, private,
        link-local or metadata address unless the deployment allows private networks. The
        credentials are sent to that address."""
        if self.config.base_url:
            self.check_address(self.config.base_url, "base_url")

    def check_address(self, url: str, label: str) -> None:
        """Refuses an address the credentials would be sent to (also one the provider names,
        like Salesforce's instance URL) when the deployment must not reach it."""
        from churnguard.netguard import BlockedAddressError, check_url

        try:
            check_url(url)
        except BlockedAddressError as exc:
            raise SourceError(CheckStatus.INVALID_CONFIGURATION, f"{label} {exc}") from None

    def connect(self, *, deadline: float | None = None) -> None:
        if self.ping_before_sync:
            super().connect(deadline=deadline)
        else:
            self.preflight()

    def open_session(self, *, deadline: float | None = None) -> None:
        """HTTP requests stand alone: nothing to open, only the address to check."""
        self.preflight()

    # ------------------------------------------------------------ streams

    def entity_names(self) -> list[str]:
        return list(self.config.entity_mappings or self.default_entities)

    def source_of(self, entity: str) -> str | None:
        return self.config.entity_mappings.get(entity) or self.default_entities.get(entity)

    def _discover(
        self, entity: str, source: str | None, options: SourceOptions, wanted: frozenset[str] | None
    ) -> Stream:
        spec = self.objects.get(source or "")
        if spec is None:
            known = ", ".join(sorted(self.objects))
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                f"{self.provider_label} has no object {source!r} to read for entity {entity!r}; known: {known}",
            )
        return Stream(
            entity=entity,
            source=source or "",
            primary_key=tuple(options.primary_key or spec.primary_key),
            cursor_field=options.cursor_field or spec.cursor_field,
            sync_modes=spec.sync_modes(),
        )

    def _count(self, stream: Stream, position: Position) -> int | None:
        return None

    # ------------------------------------------------------------ state: the provider's own

    def state_of(self, stream: Stream, position: Position) -> dict[str, Any]:
        cursor = position.cursor
        encoded = {_STATE_TAG: cursor} if isinstance(cursor, dict) else self.encode_value(cursor)
        return with_recent(
            {"cursor_field": stream.cursor_field, "primary_key": list(stream.primary_key), "cursor": encoded}, position
        )

    def position_of(self, stream: Stream, state: dict[str, Any]) -> Position | None:
        if not state:
            return Position()
        if state.get("cursor_field") != stream.cursor_field or state.get("primary_key") != list(stream.primary_key):
            return None
        cursor = state.get("cursor")
        recent = Recent.from_json(state.get("recent"))
        if isinstance(cursor, dict) and _STATE_TAG in cursor:
            return Position(cursor=dict(cursor[_STATE_TAG]), recent=recent)
        return Position(cursor=self.decode_value(cursor), recent=recent)

    # ------------------------------------------------------------ HTTP

    def session(self) -> requests.Session:
        if self._session is None:
            import requests

            bundle = self.ca_bundle_file()
            self._session = requests.Session() if bundle is None else _verified_session(bundle)
            self._session.headers["User-Agent"] = "ChurnGuard-Integrations/1.0"
        return self._session

    def ca_bundle_file(self) -> str | None:
        """The CA bundle (a file) the credentials give for the source's certificate; None: the
        public CAs. Verification itself is never switched off."""
        bundle = self.credentials.ca_bundle
        return None if bundle is None else ca_file(bundle.get_secret_value())

    def request(
        self, method: str, url: str, *, what: str, expected: tuple[int, ...] = (200,), **kwargs: Any
    ) -> requests.Response:
        """One HTTP request, taking a rate-limit slot; an unexpected status raises its SourceError."""
        import requests

        kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        with self.guard.limiter.slot():
            try:
                response = self.session().request(method, url, **kwargs)
            except requests.RequestException:
                raise unreachable(self.provider_label, what) from None
        self.observe(response)
        if response.status_code not in expected:
            raise http_error(
                response.status_code, response.headers, self.provider_label, what, self.error_detail(response)
            )
        return response

    def observe(self, response: requests.Response) -> None:
        """Hook for rate-limit headers on every response (e.g. pausing before a window is spent)."""

    def error_detail(self, response: requests.Response) -> str | None:
        """The provider's error code from an error response; subclasses know where it is."""
        return None

    def json_of(self, response: requests.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise TransientSourceError(
                CheckStatus.ERROR, f"{self.provider_label} answered {what} with something that is not JSON"
            ) from None

    def translate(self, exc: BaseException) -> SourceError | None:
        return None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # ------------------------------------------------------------ OAuth2

    def token_needs_refresh(self, now: datetime | None = None) -> bool:
        expires = self.credentials.token_expires_at
        if self.credentials.refresh_token is None:
            return False
        if self.credentials.access_token is None:
            return True
        return expires is not None and expires - REFRESH_MARGIN <= (now or datetime.now(UTC))

    def refresh_oauth2(
        self,
        token_url: str,
        extra: Mapping[str, str] | None = None,
        *,
        remember: Callable[[dict[str, Any]], Mapping[str, str]] | None = None,
    ) -> dict[str, Any]:
        """Exchanges the refresh token at `token_url` (client id and secret from
        `custom_fields.client_id` / `client_secret`), stores the renewed credentials once and
        returns the token response. `remember(token)` names custom fields to keep from the
        answer (Salesforce's `instance_url`), saved in the same write."""
        refresh = self.credentials.refresh_token
        if refresh is None:
            raise SourceError(
                CheckStatus.AUTHENTICATION_FAILED,
                f"the {self.provider_label} access token expired and the credentials hold no refresh_token",
            )
        custom = self.credentials.custom_fields
        form: dict[str, str] = {
            "grant_type": "refresh_token",
            "refresh_token": refresh.get_secret_value(),
            **{name: custom[name].get_secret_value() for name in ("client_id", "client_secret") if name in custom},
            **(extra or {}),
        }
        response = self.request(
            "POST", token_url, what="refreshing the OAuth2 token", expected=(200, 400, 401), data=form
        )
        token = self.json_of(response, "the token refresh") if response.status_code == 200 else None
        if response.status_code != 200:
            raise SourceError(
                CheckStatus.AUTHENTICATION_FAILED,
                f"{self.provider_label} refused the OAuth2 refresh token (HTTP {response.status_code});"
                " authorise the integration again",
                details={"http_status": response.status_code},
            )
        if not isinstance(token, dict) or not token.get("access_token"):
            raise SourceError(
                CheckStatus.AUTHENTICATION_FAILED, f"{self.provider_label} answered the token refresh without a token"
            )
        expires_in = token.get("expires_in")
        # A token answer without expires_in (Salesforce's) has no known expiry: clear the old one,
        # or the renewed token would look expired and be refreshed again on every call.
        update: dict[str, Any] = {
            "access_token": SecretStr(str(token["access_token"])),
            "token_expires_at": (
                datetime.now(UTC) + timedelta(seconds=float(expires_in)) if expires_in is not None else None
            ),
        }
        if token.get("refresh_token"):
            update["refresh_token"] = SecretStr(str(token["refresh_token"]))
        kept = remember(token) if remember is not None else {}
        if kept:
            update["custom_fields"] = {**self.credentials.custom_fields, **{k: SecretStr(v) for k, v in kept.items()}}
        renewed = self.credentials.model_copy(update=update)
        self.credentials = renewed
        if self.save_credentials is not None:
            self.save_credentials(renewed)
        return token
