"""The Stripe API emulator for connector tests: localstripe (PyPI `localstack-localstripe`) served
in a thread of the test process, behind `StripeProxy`, a FakeApi that forwards to it.

Why in-process: localstripe pickles its whole store to /tmp after every write, which makes
seeding thousands of objects quadratic, and it keeps everything in one module-level dict; here
the store stays in memory, `seed` creates objects directly in it (in the emulator's own thread),
and the proxy can read its events.

What the proxy adds, each the way Stripe documents it and localstripe does not do it:
- `GET /v1/events`: newest first, `types[]` (and `type` with a `*` wildcard), `created[gte|gt|lt|lte]`,
  `starting_after` / `ending_before` (a cursor naming an event that no longer exists is a 400
  `resource_missing` on that parameter), `limit` up to 100. `expire_events` drops events, as
  Stripe's 30-day retention does.
- `GET /v1/prices[/{id}]`: localstripe only has plans; a plan is also a price in Stripe's API
  (same id), rendered in the price shape (`unit_amount`, `recurring`).
- Subscription discounts: localstripe has none (its subscriptions carry the legacy `discount:
  null`). `discount(subscription, *coupons)` applies coupons the way Stripe's current API shows
  them: `discounts` lists discount ids, discount objects with `expand[]=discounts`, and their
  coupons too with `expand[]=discounts.source.coupon`. Expansions naming `discounts` are not
  forwarded to localstripe.
- `revoke(key)`: that key gets Stripe's 401 answer. Rate limits answer Stripe's 429 body with a
  `Retry-After`; `fail_next` bursts answer Stripe's 500 body. Every request is logged (`seen`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest
import requests

from tests.support.fake_api import FakeApi, Reply, Seen, route

T = TypeVar("T")
API_KEY = "sk_test_churnguard_0123456789abcdef"
EVENT_PAGE_MAX = 100


def stripe_error(status: int, message: str, *, code: str | None = None, param: str | None = None) -> Reply:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return Reply(status, {"error": error})


def rate_limited(retry_after: float) -> Reply:
    reply = stripe_error(429, "Request rate limit exceeded.", code="rate_limit")
    reply.headers.update({"Retry-After": str(max(1, round(retry_after))), "Stripe-Should-Retry": "true"})
    return reply


def server_error() -> dict[str, Any]:
    """Stripe's body for its own failures (the type is api_error)."""
    return {"error": {"type": "api_error", "message": "An unknown error occurred"}}


class LocalStripe:
    """localstripe's aiohttp application on 127.0.0.1, in a daemon thread with its own loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="localstripe", daemon=True)
        self._runner: Any = None
        self.url = ""

    def start(self) -> LocalStripe:
        from aiohttp import web

        with warnings.catch_warnings():  # localstripe registers plain functions as handlers
            warnings.simplefilter("ignore", DeprecationWarning)
            from localstripe.server import app

        self._thread.start()

        async def serve() -> str:
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return f"http://127.0.0.1:{port}"

        self.url = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(timeout=30)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def call(self, fn: Callable[[], T]) -> T:
        """Runs `fn` in the emulator's thread: its store is a plain dict its handlers iterate."""
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(timeout=60)

    def reset(self) -> None:
        from localstripe.resources import store

        self.call(store.clear)


@contextlib.contextmanager
def patched_localstripe() -> Iterator[None]:
    """No pickle of the store after every write, no webhook task per event (none is registered)."""
    from localstripe import resources

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(resources.Store, "dump_to_disk", lambda self: None)
        patch.setattr(resources, "schedule_webhook", lambda event: None)
        yield


class StripeProxy(FakeApi):
    """Stripe's API as the connector sees it: localstripe, plus what the module docstring lists."""

    def __init__(self, emulator: LocalStripe, *, latency: float = 0.0) -> None:
        super().__init__(latency=latency)
        self.emulator = emulator
        self.revoked: set[str] = set()
        self.throttled_requests: list[Seen] = []  # answered 429 by `limit_rate`
        self.discounts: dict[str, list[str]] = {}  # subscription id → coupon ids, by `discount`
        self._forward = requests.Session()
        # The catch-all relay answers only what no Stripe-specific route does.
        self._routes.sort(key=lambda entry: getattr(entry[2], "__name__", "") == "relay")

    def stop(self) -> None:
        super().stop()
        self._forward.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        """Headers and body leave in two writes: without TCP_NODELAY, Nagle's algorithm and the
        client's delayed ACK add about 40 ms to every answer."""
        handler = super()._handler_class()
        handler.disable_nagle_algorithm = True
        return handler

    # ------------------------------------------------------------ test helpers

    def revoke(self, key: str) -> None:
        self.revoked.add(key)

    def discount(self, subscription_id: str, *coupon_ids: str) -> None:
        """Applies coupons to a subscription (Stripe's `discounts`, in order)."""
        self.discounts[subscription_id] = list(coupon_ids)

    def expire_events(self) -> int:
        """Drops every event, as Stripe's 30-day retention eventually does; returns how many."""
        from localstripe.resources import store

        def drop() -> int:
            keys = [key for key in store if key.startswith("event:")]
            for key in keys:
                del store[key]
            return len(keys)

        return self.emulator.call(drop)

    def seed(self, count: int, *, prefix: str = "seed") -> list[str]:
        """Creates `count` customers directly in the emulator's store (each with its
        `customer.created` event), in one call: the quick way to a large account."""
        from localstripe.resources import Customer

        def create() -> list[str]:
            return [
                Customer(email=f"{prefix}{i}@example.com", name=f"Customer {i}", metadata={"n": str(i)}).id
                for i in range(count)
            ]

        return self.emulator.call(create)

    # ------------------------------------------------------------ serving

    def _answer(self, seen: Seen) -> Reply:
        key = _bearer(seen)
        if key in self.revoked:
            with self._lock:
                self.requests.append(seen)
            return stripe_error(401, f"Invalid API Key provided: {key[:8]}{'*' * 8}{key[-4:]}")
        reply = super()._answer(seen)
        if reply.status == 429:
            self.throttled_requests.append(seen)
        return reply

    @route("GET", r"/v1/events")
    def list_events(self, seen: Seen) -> Reply:
        from localstripe.resources import store

        query = _flat(seen.query)
        limit = min(int(query.get("limit", "10")), EVENT_PAGE_MAX)
        types = _array(seen.query, "types")
        pattern = query.get("type")
        created = {op: int(query[f"created[{op}]"]) for op in ("gt", "gte", "lt", "lte") if f"created[{op}]" in query}

        def matches(event: Any) -> bool:
            if types and event.type not in types:
                return False
            if pattern and not fnmatch.fnmatchcase(event.type, pattern):
                return False
            at = event.created
            return (
                at > created.get("gt", at - 1)
                and at >= created.get("gte", at)
                and at < created.get("lt", at + 1)
                and at <= created.get("lte", at)
            )

        def page() -> Reply:
            everything = [value for key, value in store.items() if key.startswith("event:")]
            everything.reverse()  # the store keeps insertion order: newest first is its reverse
            ids = [event.id for event in everything]
            for name in ("starting_after", "ending_before"):
                cursor = query.get(name)
                if cursor is not None and cursor not in ids:
                    return stripe_error(400, f"No such event: '{cursor}'", code="resource_missing", param=name)
            chosen = [event for event in everything if matches(event)]
            if "starting_after" in query:
                position = ids.index(query["starting_after"])
                older = [e for e in chosen if ids.index(e.id) > position]
                data, more = older[:limit], len(older) > limit
            elif "ending_before" in query:
                position = ids.index(query["ending_before"])
                newer = [e for e in chosen if ids.index(e.id) < position]
                data, more = newer[-limit:], len(newer) > limit
            else:
                data, more = chosen[:limit], len(chosen) > limit
            body = {"object": "list", "url": "/v1/events", "has_more": more, "data": [e._export() for e in data]}
            return Reply(200, body)

        return self.emulator.call(page)

    @route("GET", r"/v1/prices")
    def list_prices(self, seen: Seen) -> Reply:
        listed = self._relay(seen, path="/v1/plans")
        if listed.status != 200:
            return listed
        body = dict(listed.body)
        body["url"] = "/v1/prices"
        body["data"] = [_price_of(plan) for plan in body["data"]]
        return Reply(200, body)

    @route("GET", r"/v1/prices/(?P<price_id>[^/]+)")
    def retrieve_price(self, seen: Seen, price_id: str) -> Reply:
        plan = self._relay(seen, path=f"/v1/plans/{price_id}")
        return Reply(200, _price_of(plan.body)) if plan.status == 200 else plan

    @route("GET", r"/v1/subscriptions")
    @route("GET", r"/v1/subscriptions/(?P<subscription_id>[^/]+)")
    def subscriptions(self, seen: Seen, subscription_id: str | None = None) -> Reply:
        reply = self._relay(seen)
        if reply.status != 200 or not isinstance(reply.body, dict):
            return reply
        expand = [value for name, values in seen.query.items() if name.startswith("expand") for value in values]
        body = dict(reply.body)
        if body.get("object") == "list":
            body["data"] = [self._with_discounts(seen, item, expand) for item in body["data"]]
            return Reply(200, body)
        return Reply(200, self._with_discounts(seen, body, expand))

    def _with_discounts(self, seen: Seen, subscription: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        coupon_ids = self.discounts.get(subscription["id"], [])
        if not any(path.endswith("discounts") or "discounts." in path for path in expand):
            return {**subscription, "discounts": [f"di_{subscription['id']}_{n}" for n in range(len(coupon_ids))]}
        embed = any(path.endswith("discounts.source.coupon") for path in expand)
        discounts = []
        for n, coupon_id in enumerate(coupon_ids):
            coupon: Any = coupon_id
            if embed:
                coupon = self._relay(Seen(seen.at, "GET", f"/v1/coupons/{coupon_id}", {}, seen.headers, b"")).body
            discounts.append(
                {
                    "id": f"di_{subscription['id']}_{n}",
                    "object": "discount",
                    "source": {"type": "coupon", "coupon": coupon},
                    "subscription": subscription["id"],
                    "customer": subscription.get("customer"),
                    "start": subscription.get("start_date") or subscription.get("created"),
                    "end": None,
                }
            )
        return {**subscription, "discounts": discounts}

    @route("GET", r"/v1/.+")
    @route("POST", r"/v1/.+")
    @route("DELETE", r"/v1/.+")
    def relay(self, seen: Seen) -> Reply:
        """Everything else is localstripe's answer."""
        return self._relay(seen)

    def _relay(self, seen: Seen, *, path: str | None = None) -> Reply:
        query = [
            (name, value)
            for name, values in seen.query.items()
            for value in values
            if not (name.startswith("expand") and "discounts" in value)
        ]
        headers = {name: value for name, value in seen.headers.items() if name in ("authorization", "content-type")}
        url = f"{self.emulator.url}{path or seen.path}"
        if query:
            url += "?" + urlencode(query)
        response = self._forward.request(seen.method, url, data=seen.body or None, headers=headers, timeout=30)
        try:
            body: Any = response.json()
        except ValueError:
            body = response.content
        return Reply(response.status_code, body)


def _bearer(seen: Seen) -> str:
    header = seen.headers.get("authorization", "")
    return header.removeprefix("Bearer ").strip()


def _flat(query: dict[str, list[str]]) -> dict[str, str]:
    return {name: values[0] for name, values in query.items() if values}


def _array(query: dict[str, list[str]], name: str) -> list[str]:
    """An array parameter as the SDK sends it (`types[0]=…`) or as curl does (`types[]=…`)."""
    found: list[tuple[int, str]] = []
    for key, values in query.items():
        if key == f"{name}[]":
            found += [(i, v) for i, v in enumerate(values)]
        elif key.startswith(f"{name}[") and key.endswith("]") and key[len(name) + 1 : -1].isdigit():
            found += [(int(key[len(name) + 1 : -1]), v) for v in values]
    return [value for _, value in sorted(found, key=lambda item: item[0])]


def _price_of(plan: dict[str, Any]) -> dict[str, Any]:
    """A legacy plan in Stripe's price shape (both are the same object in Stripe's API)."""
    amount = plan.get("amount")
    return {
        "id": plan["id"],
        "object": "price",
        "active": plan.get("active", True),
        "billing_scheme": plan.get("billing_scheme", "per_unit"),
        "created": plan.get("created"),
        "currency": plan.get("currency"),
        "livemode": False,
        "lookup_key": None,
        "metadata": plan.get("metadata") or {},
        "nickname": plan.get("nickname"),
        "product": plan.get("product"),
        "recurring": {
            "interval": plan.get("interval"),
            "interval_count": plan.get("interval_count", 1),
            "usage_type": plan.get("usage_type", "licensed"),
        },
        "tiers_mode": plan.get("tiers_mode"),
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": amount,
        "unit_amount_decimal": None if amount is None else str(amount),
    }
