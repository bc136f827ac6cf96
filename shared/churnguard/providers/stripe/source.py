"""Stripe through its official SDK: `stripe.StripeClient` with the API version pinned
(`API_VERSION`), since the record shapes and the MRR rules depend on it.

What it reads, its limits and quirks: README.md in this folder."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from churnguard.connectors.api import DEFAULT_TIMEOUT, ApiConnector, ApiObject, http_error, unreachable
from churnguard.connectors.base import CheckStatus, Page, Position, ReReadUnavailable, SourceError, Stream
from churnguard.models import ProviderName
from churnguard.providers.stripe.canonical import MAPPING, ref, with_coupons
from churnguard.resilience import ProviderLimits

if TYPE_CHECKING:
    import stripe

API_VERSION = "2026-10-28.endive"
DEFAULT_BASE_URL = "https://api.stripe.com"
PAGE_LIMIT = 100
EVENT_RETENTION = 30 * 86_400
# A cursor this close to Stripe's retention is treated as expired: it may expire mid-run.
RETENTION_MARGIN = 3_600
# A stream with no change for this long gets its cursor moved up to now.
CURSOR_REFRESH_AGE = 7 * 86_400
# Between our clock and Stripe's, and for events that become visible a moment late.
CLOCK_MARGIN = 300
_DISCOUNT_EVENTS = ("customer.discount.created", "customer.discount.updated", "customer.discount.deleted")

logger = logging.getLogger(__name__)
T = TypeVar("T")
Row = dict[str, Any]


@dataclass(frozen=True)
class _Kind:
    """How one Stripe object is listed, re-fetched and found in events."""

    service: str  # attribute of `StripeClient.v1`
    object: str  # the `object` value of its records
    events: tuple[str, ...]  # `types[]` of the events that change it (Stripe allows 20)
    aliases: frozenset[str] = frozenset()  # other `object` values naming it in events
    list_params: tuple[tuple[str, str], ...] = ()
    expand: tuple[str, ...] = ()  # relative to the object; lists prefix `data.`
    deletes: bool = True  # whether its `*.deleted` event means it is gone


_KINDS: dict[str, _Kind] = {
    "customers": _Kind(
        "customers", "customer", ("customer.created", "customer.updated", "customer.deleted", *_DISCOUNT_EVENTS)
    ),
    "subscriptions": _Kind(
        "subscriptions",
        "subscription",
        (
            "customer.subscription.created",
            "customer.subscription.updated",
            "customer.subscription.deleted",
            "customer.subscription.paused",
            "customer.subscription.resumed",
            "customer.subscription.pending_update_applied",
            "customer.subscription.pending_update_expired",
            *_DISCOUNT_EVENTS,
        ),
        list_params=(("status", "all"),),
        expand=("discounts.source.coupon", "items.data.discounts"),
        deletes=False,
    ),
    "invoices": _Kind(
        "invoices",
        "invoice",
        tuple(
            f"invoice.{name}"
            for name in (
                "created",
                "deleted",
                "finalized",
                "finalization_failed",
                "marked_uncollectible",
                "overdue",
                "overpaid",
                "paid",
                "payment_action_required",
                "payment_failed",
                "payment_succeeded",
                "sent",
                "updated",
                "voided",
                "will_be_due",
            )
        ),
    ),
    "charges": _Kind(
        "charges",
        "charge",
        tuple(
            f"charge.{name}"
            for name in ("captured", "expired", "failed", "pending", "refunded", "succeeded", "updated")
        ),
    ),
    "refunds": _Kind(
        "refunds", "refund", ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated")
    ),
    "products": _Kind("products", "product", ("product.created", "product.updated", "product.deleted")),
    "prices": _Kind(
        "prices",
        "price",
        ("price.created", "price.updated", "price.deleted", "plan.created", "plan.updated", "plan.deleted"),
        aliases=frozenset({"plan"}),
    ),
    "coupons": _Kind("coupons", "coupon", ("coupon.created", "coupon.updated", "coupon.deleted")),
}


class StripeConnector(ApiConnector):
    provider = ProviderName.STRIPE
    # 100 reads a second in live mode, 25 in test mode (the default honours both).
    limits = ProviderLimits(1_500, 5, "reads: 100 per second in live mode, 25 in test mode")
    provider_label = "Stripe"
    ping_before_sync = False
    objects: ClassVar[Mapping[str, ApiObject]] = {name: ApiObject() for name in _KINDS}
    default_entities: ClassVar[Mapping[str, str]] = {
        "customer": "customers",
        "subscription": "subscriptions",
        "invoice": "invoices",
        "payment": "charges",
        "refund": "refunds",
        "product": "products",
        "price": "prices",
        "coupon": "coupons",
    }
    canonical_mapping = MAPPING

    _stripe: Any = None
    _coupons: dict[str, Mapping[str, Any] | None] | None = None
    _bookmarks: dict[str, dict[str, Any]] | None = None

    # ------------------------------------------------------------ the SDK

    def _client(self) -> Any:
        if self._stripe is None:
            import stripe

            key = self.credentials.api_key or self.credentials.access_token
            if key is None:
                raise SourceError(
                    CheckStatus.AUTHENTICATION_FAILED,
                    "the Stripe integration needs credentials with an api_key (a secret sk_… or restricted rk_… key)",
                )
            secret = key.get_secret_value()
            if not secret.startswith(("sk_", "rk_")):
                raise SourceError(
                    CheckStatus.AUTHENTICATION_FAILED,
                    "the configured Stripe key is neither a secret (sk_…) nor a restricted (rk_…) key;"
                    " a publishable key cannot read data",
                )
            # One requests session for every thread (the prefetch thread reads pages): `close`
            # closes its connections, which the SDK's per-thread default sessions would keep.
            http = stripe.RequestsClient(timeout=DEFAULT_TIMEOUT, session=self.session())
            self._stripe = stripe.StripeClient(
                secret,
                stripe_version=API_VERSION,
                base_addresses={"api": self._base_url()},
                max_network_retries=0,
                http_client=http,
            )
        return self._stripe

    def _base_url(self) -> str:
        base = (self.config.base_url or DEFAULT_BASE_URL).rstrip("/")
        return base.removesuffix("/v1")

    def _request(self, what: str, call: Callable[[], T]) -> T:
        """One SDK request in a rate-limit slot; a Stripe error becomes its SourceError."""
        import stripe

        with self.guard.limiter.slot():
            try:
                return call()
            except stripe.StripeError as exc:
                raise self._error(exc, what) from None

    def _error(self, exc: stripe.StripeError, what: str) -> SourceError:
        import stripe

        status = exc.http_status
        if status is None or isinstance(exc, stripe.APIConnectionError):
            return unreachable(self.provider_label, what)
        headers = {str(name).title(): str(value) for name, value in (exc.headers or {}).items()}
        code = exc.code if isinstance(exc.code, str) and exc.code else None
        if isinstance(exc, stripe.RateLimitError):
            status = 429  # Stripe once sent rate limits as 400 with code rate_limit
        return http_error(status, headers, self.provider_label, what, code)

    def translate(self, exc: BaseException) -> SourceError | None:
        import stripe

        if isinstance(exc, stripe.StripeError):
            return self._error(exc, "a request")
        return None

    def close(self) -> None:
        self._stripe = None
        super().close()

    @staticmethod
    def _body(result: Any) -> dict[str, Any]:
        """Stripe's JSON as sent: the SDK keeps the parsed response next to its objects."""
        response = getattr(result, "last_response", None)
        data = getattr(response, "data", None)
        return dict(data) if isinstance(data, Mapping) else dict(result.to_dict())

    def _list(self, kind: _Kind, what: str, **params: Any) -> dict[str, Any]:
        service = getattr(self._client().v1, kind.service)
        query = {"limit": PAGE_LIMIT, **dict(kind.list_params), **params}
        if kind.expand:
            query["expand"] = [f"data.{path}" for path in kind.expand]
        return self._body(self._request(what, lambda: service.list(params=query)))

    def _retrieve(self, kind: _Kind, object_id: str) -> dict[str, Any] | None:
        """The object now, or None when Stripe no longer has it."""
        service = getattr(self._client().v1, kind.service)
        params = {"expand": list(kind.expand)} if kind.expand else None
        try:
            result = self._request(f"re-fetching a changed {kind.object}", lambda: service.retrieve(object_id, params))
        except SourceError as exc:
            if exc.kind is CheckStatus.MISSING_OBJECT:
                return None
            raise
        return self._body(result)

    def _events(self, kind: _Kind, what: str, **params: Any) -> dict[str, Any]:
        query = {"limit": PAGE_LIMIT, "types": list(kind.events), **params}
        client = self._client()
        return self._body(self._request(what, lambda: client.v1.events.list(params=query)))

    def _events_before(self, kind: _Kind, cursor: str) -> dict[str, Any] | None:
        """The oldest page of events newer than `cursor`; None when Stripe no longer knows the
        cursor's event (it answers 400 `resource_missing` on `ending_before`)."""
        import stripe

        query = {"limit": PAGE_LIMIT, "types": list(kind.events), "ending_before": cursor}
        client = self._client()
        what = f"reading {kind.object} events"
        with self.guard.limiter.slot():
            try:
                return self._body(client.v1.events.list(params=query))
            except stripe.InvalidRequestError as exc:
                if exc.code == "resource_missing" or exc.param == "ending_before":
                    return None
                raise self._error(exc, what) from None
            except stripe.StripeError as exc:
                raise self._error(exc, what) from None

    # ------------------------------------------------------------ connector primitives

    def preflight(self) -> None:
        super().preflight()
        if self.config.api_version and self.config.api_version != API_VERSION:
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                f"the Stripe connector reads API version {API_VERSION}; clear api_version or set it to that",
            )

    def _ping(self) -> None:
        entities = self.entity_names()
        source = self.source_of(entities[0]) if entities else "customers"
        kind = _KINDS.get(source or "", _KINDS["customers"])
        self._list(kind, "checking the API key", limit=1)

    def _probe(self, stream: Stream) -> None:
        kind = _KINDS[stream.source]
        self._list(kind, f"reading {stream.source}", limit=1)
        self._events(kind, f"reading {stream.source} events (incremental syncs need them)", limit=1)

    def _pages(self, stream: Stream, position: Position, page_size: int, encoded: bool) -> Generator[Page, None, None]:
        kind = _KINDS[stream.source]
        cursor = position.cursor
        if isinstance(cursor, datetime):
            yield from self._since(kind, int(cursor.timestamp()))
            return
        state = dict(cursor) if isinstance(cursor, Mapping) else {}
        if not state or state.get("phase") == "full":
            yield from self._full(kind, state)
        elif isinstance(state.get("event"), str):
            yield from self._forward(kind, state["event"], int(state.get("event_at") or 0))
        elif isinstance(state.get("since"), int):
            yield from self._since(kind, state["since"])
        else:
            yield from self._fallback(kind, "its checkpoint names no event or time to continue from")

    # ------------------------------------------------------------ full read

    def _full(self, kind: _Kind, state: Mapping[str, Any]) -> Generator[Page, None, None]:
        if state:
            bookmark = {name: state[name] for name in ("event", "event_at", "since") if state.get(name) is not None}
        else:
            bookmark = self._bookmark(kind)
        after = state.get("starting_after")
        while True:
            body = self._list(kind, f"listing {kind.service}", **({"starting_after": after} if after else {}))
            data = body.get("data") or []
            rows = [self._record(kind, item) for item in data]
            if not body.get("has_more") or not data:
                yield Page(rows, Position(cursor=bookmark))  # done: the next run reads events
                return
            after = data[-1]["id"]
            yield Page(rows, Position(cursor={"phase": "full", "starting_after": after, **bookmark}))

    def _bookmark(self, kind: _Kind) -> dict[str, Any]:
        """Where the next incremental run starts: the newest event of the stream's types now, or
        this moment when there is none. Kept for a read re-opened after an error before its
        first page."""
        if self._bookmarks is None:
            self._bookmarks = {}
        if kind.service not in self._bookmarks:
            what = f"noting the newest {kind.object} event"
            newest = (self._events(kind, what, limit=1).get("data") or [None])[0]
            self._bookmarks[kind.service] = (
                {"since": int(time.time()) - CLOCK_MARGIN}
                if newest is None
                else {"event": newest["id"], "event_at": int(newest["created"])}
            )
        return dict(self._bookmarks[kind.service])

    def _fallback(self, kind: _Kind, reason: str) -> Generator[Page, None, None]:
        logger.warning(
            "Stripe %s are read in full instead of from events: %s",
            kind.service,
            reason,
            extra={"integration_id": self.config.integration_id, "stream": kind.service},
        )
        note = (f"Stripe {kind.service} were read in full instead of from events: {reason}",)
        for index, page in enumerate(self._full(kind, {})):
            yield replace(page, notes=note) if index == 0 else page

    # ------------------------------------------------------------ incremental: events

    def _forward(self, kind: _Kind, event_id: str, event_at: int) -> Generator[Page, None, None]:
        now = int(time.time())
        if now - event_at > EVENT_RETENTION - RETENTION_MARGIN:
            yield from self._fallback(kind, "the last event read is older than Stripe's 30-day event retention")
            return
        cursor, moved = event_id, False
        while True:
            body = self._events_before(kind, cursor)
            if body is None:
                yield from self._fallback(kind, "Stripe no longer has the last event read (30-day retention)")
                return
            events = list(reversed(body.get("data") or []))  # oldest first
            if not events:
                break
            rows, deleted = self._changes(kind, events)
            cursor, moved = events[-1]["id"], True
            yield Page(rows, Position(cursor={"event": cursor, "event_at": int(events[-1]["created"])}), deleted)
            if not body.get("has_more"):
                break
        if not moved and now - event_at > CURSOR_REFRESH_AGE:
            # Nothing happened since the cursor, up to now: "since now" is exact, and stays fresh.
            yield Page([], Position(cursor={"since": now - CLOCK_MARGIN}))

    def _since(self, kind: _Kind, since: int) -> Generator[Page, None, None]:
        """Events created since a time. Stripe lists them newest first, so the oldest is found
        first (one page when there are at most 100), then read forward from it."""
        now = int(time.time())
        if now - since > EVENT_RETENTION - RETENTION_MARGIN:
            yield from self._fallback(kind, "the sync starts before Stripe's 30-day event retention")
            return
        what = f"reading {kind.object} events"
        body = self._events(kind, what, created={"gte": since})
        data = body.get("data") or []
        if not data:
            if now - since > CURSOR_REFRESH_AGE:
                yield Page([], Position(cursor={"since": now - CLOCK_MARGIN}))
            return
        if not body.get("has_more"):
            events = list(reversed(data))
            rows, deleted = self._changes(kind, events)
            yield Page(
                rows, Position(cursor={"event": events[-1]["id"], "event_at": int(events[-1]["created"])}), deleted
            )
            return
        oldest = data[-1]
        while body.get("has_more"):
            body = self._events(kind, what, created={"gte": since}, starting_after=oldest["id"])
            oldest = (body.get("data") or [oldest])[-1]
        rows, deleted = self._changes(kind, [oldest])
        yield Page(rows, Position(cursor={"event": oldest["id"], "event_at": int(oldest["created"])}), deleted)
        yield from self._forward(kind, oldest["id"], int(oldest["created"]))

    def _changes(self, kind: _Kind, events: Iterable[Mapping[str, Any]]) -> tuple[list[Row], list[Row]]:
        """The current state of every object the events (oldest first) changed, each once."""
        latest: dict[str, Mapping[str, Any]] = {}
        for event in events:
            object_id = _changed_id(kind, event)
            if object_id is not None:
                latest.pop(object_id, None)
                latest[object_id] = event
        rows: list[Row] = []
        deleted: list[Row] = []
        for object_id, event in latest.items():
            subject = (event.get("data") or {}).get("object") or {}
            if kind.deletes and str(event.get("type", "")).endswith(".deleted") and _is_kind(kind, subject):
                deleted.append(_tombstone(kind, object_id))
                continue
            current = self._retrieve(kind, object_id)
            if current is None or current.get("deleted"):
                deleted.append(_tombstone(kind, object_id))
            else:
                rows.append(self._record(kind, current))
        return rows, deleted

    def current_object(self, entity: str, object_id: str) -> tuple[str, Row] | None:
        """The object re-read (a subscription with its items and every discount's coupon)."""
        source = self.default_entities.get(entity)
        kind = _KINDS.get(source or "")
        if source is None or kind is None:
            raise ReReadUnavailable(f"Stripe has no object for the entity {entity!r}")
        current = self._retrieve(kind, object_id)
        if current is None or current.get("deleted"):
            return None
        return source, self._record(kind, current)

    # ------------------------------------------------------------ records

    def _record(self, kind: _Kind, item: Mapping[str, Any]) -> Row:
        if kind.object == "subscription":
            return with_coupons(self._with_all_items(item), self._coupon)
        return dict(item)

    def _with_all_items(self, subscription: Mapping[str, Any]) -> Mapping[str, Any]:
        """Stripe embeds a subscription's first 10 items; the rest (rare) are listed here."""
        items = subscription.get("items") or {}
        if not items.get("has_more"):
            return subscription
        data = list(items.get("data") or [])
        client = self._client()
        while True:
            query = {
                "subscription": subscription["id"],
                "limit": PAGE_LIMIT,
                "starting_after": data[-1]["id"],
                "expand": ["data.discounts"],
            }
            body = self._body(
                self._request("listing subscription items", partial(client.v1.subscription_items.list, params=query))
            )
            data += body.get("data") or []
            if not body.get("has_more") or not body.get("data"):
                break
        return {**subscription, "items": {**items, "data": data, "has_more": False}}

    def _coupon(self, coupon_id: str) -> Mapping[str, Any] | None:
        """A coupon by id, fetched once per connector (an item discount names it by id)."""
        if self._coupons is None:
            self._coupons = {}
        if coupon_id not in self._coupons:
            found = self._retrieve(_KINDS["coupons"], coupon_id)
            self._coupons[coupon_id] = None if found is None or found.get("deleted") else found
        return self._coupons[coupon_id]


# ------------------------------------------------------------ helpers


def _is_kind(kind: _Kind, subject: Mapping[str, Any]) -> bool:
    return subject.get("object") == kind.object or subject.get("object") in kind.aliases


def _changed_id(kind: _Kind, event: Mapping[str, Any]) -> str | None:
    """The id of the stream's object an event changed (a discount event names its holder)."""
    subject = (event.get("data") or {}).get("object") or {}
    if _is_kind(kind, subject):
        return ref(subject)
    if subject.get("object") == "discount":
        return ref(subject.get(kind.object))
    return None


def _tombstone(kind: _Kind, object_id: str) -> Row:
    return {"id": object_id, "object": kind.object, "deleted": True}
