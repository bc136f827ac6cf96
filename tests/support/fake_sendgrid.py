"""A local SendGrid v3, as documented: Bearer API keys (401 `authorization required`
otherwise), suppression lists filtered by `start_time` / `end_time` (unix seconds, inclusive) and
paged by `limit` (at most 500) / `offset`, newest first, with a `Link` header (first, prev, next,
last); stats by day (`/v3/stats`, `/v3/categories/stats` with up to 10 `categories`), every day of
the range present; X-RateLimit-Limit / -Remaining / -Reset (epoch seconds) on every answer and a
429 once a window's requests are spent.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlencode

from tests.support.fake_api import FakeApi, Reply, Seen, route

API_KEY = "SG.test-key.abcdefghijklmnopqrstuvwxyz0123456789"
EPOCH = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
SUPPRESSIONS = ("bounces", "blocks", "spam_reports", "invalid_emails", "unsubscribes")
METRICS = ("requests", "delivered", "opens", "unique_opens", "clicks", "unique_clicks", "bounces", "spam_reports")


def errors(*messages: str, field: str | None = None) -> dict[str, Any]:
    return {"errors": [{"field": field, "message": message} for message in messages]}


@dataclass
class _Window:
    limit: int
    seconds: float
    started: float = 0.0  # monotonic
    used: int = 0


class FakeSendGrid(FakeApi):
    def __init__(self, *, latency: float = 0.0) -> None:
        super().__init__(latency=latency)
        self.suppressions: dict[str, list[dict[str, Any]]] = {name: [] for name in SUPPRESSIONS}
        self.stats: dict[str, dict[str, int]] = {}  # date → metrics
        self.category_stats: dict[tuple[str, str], dict[str, int]] = {}  # (date, category) → metrics
        self.categories: list[str] = []
        self._window: _Window | None = None
        self._window_lock = threading.Lock()
        # (monotonic arrival, monotonic reset) of each request that spent its window
        self.exhausted: list[tuple[float, float]] = []

    # ------------------------------------------------------------ data

    def seed(self, count: int, kind: str = "bounces", *, start: int = EPOCH, same_time: int = 3) -> list[str]:
        """`count` suppressions of `kind`; every `same_time` of them share a `created` second."""
        rows = self.suppressions[kind]
        emails = []
        for i in range(count):
            email = f"{kind}{len(rows)}@example.com"
            rows.append(self.suppression(kind, email, start + i // same_time))
            emails.append(email)
        return emails

    @staticmethod
    def suppression(kind: str, email: str, created: int) -> dict[str, Any]:
        row: dict[str, Any] = {"created": created, "email": email}
        if kind in ("bounces", "blocks"):
            row |= {"reason": "550 5.1.1 The email account does not exist.", "status": "5.1.1"}
        elif kind == "invalid_emails":
            row["reason"] = "Mail domain mentioned in email address is unknown"
        elif kind == "spam_reports":
            row["ip"] = "10.63.202.100"
        return row

    def rate_limit(self, limit: int, seconds: float) -> None:
        """Fixed windows of `limit` requests; the reset is sent rounded up to whole seconds."""
        self._window = _Window(limit, seconds)

    # ------------------------------------------------------------ serving

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        """The base handler with TCP_NODELAY (headers and body are separate writes)."""
        base = super()._handler_class()
        return type("_NoDelayHandler", (base,), {"disable_nagle_algorithm": True})

    def _answer(self, seen: Seen) -> Reply:
        headers = self._count(seen)
        if seen.headers.get("authorization") != f"Bearer {API_KEY}":
            with self._lock:
                self.requests.append(seen)
            return Reply(401, errors("authorization required"), headers)
        if headers.get("X-RateLimit-Remaining") == "-1":
            with self._lock:
                self.requests.append(seen)
                self._throttled += 1
            return Reply(429, errors("too many requests"), {**headers, "X-RateLimit-Remaining": "0"})
        reply = super()._answer(seen)
        return Reply(reply.status, reply.body, {**headers, **reply.headers})

    def _count(self, seen: Seen) -> dict[str, str]:
        window = self._window
        if window is None:
            return {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "599", "X-RateLimit-Reset": "0"}
        with self._window_lock:
            if window.used == 0 or seen.at - window.started >= window.seconds:
                window.started, window.used = seen.at, 0
            window.used += 1
            reset_mono = window.started + window.seconds
            remaining = window.limit - window.used
            if remaining == 0:
                self.exhausted.append((seen.at, reset_mono))
        reset_epoch = math.ceil(time.time() + (reset_mono - time.monotonic()))
        return {
            "X-RateLimit-Limit": str(window.limit),
            "X-RateLimit-Remaining": str(max(remaining, -1)),
            "X-RateLimit-Reset": str(reset_epoch),
        }

    @route("GET", "/v3/scopes")
    def scopes(self, seen: Seen) -> Reply:
        return Reply(200, {"scopes": ["stats.read", "categories.read", "suppression.read"]})

    @route("GET", "/v3/suppression/(?P<kind>bounces|blocks|spam_reports|invalid_emails|unsubscribes)")
    def get_suppressions(self, seen: Seen, kind: str) -> Reply:
        limit = int(seen.param("limit", "500") or 500)
        offset = int(seen.param("offset", "0") or 0)
        if limit > 500:
            return Reply(400, errors("limit must be between 1 and 500", field="limit"))
        start = int(seen.param("start_time", "0") or 0)
        end = seen.param("end_time")
        rows = [
            row
            for row in self.suppressions[kind]
            if row["created"] >= start and (end is None or row["created"] <= int(end))
        ]
        rows.sort(key=lambda row: (-row["created"], row["email"]))
        return Reply(200, rows[offset : offset + limit], {"Link": self._links(seen, len(rows), limit, offset)})

    def _links(self, seen: Seen, total: int, limit: int, offset: int) -> str:
        def link(to: int, rel: str) -> str:
            query = {k: v[0] for k, v in seen.query.items()} | {"limit": str(limit), "offset": str(to)}
            return f'<https://api.sendgrid.com{seen.path}?{urlencode(query)}>; rel="{rel}"; title="{to // limit + 1}"'

        last = max(0, (total - 1) // limit * limit)
        links = [link(0, "first")]
        if offset > 0:
            links.append(link(max(0, offset - limit), "prev"))
        if offset + limit < total:
            links.append(link(offset + limit, "next"))
        links.append(link(last, "last"))
        return ", ".join(links)

    @route("GET", "/v3/categories")
    def get_categories(self, seen: Seen) -> Reply:
        limit = int(seen.param("limit", "50") or 50)
        offset = int(seen.param("offset", "0") or 0)
        names = sorted(self.categories)
        return Reply(200, [{"category": name} for name in names[offset : offset + limit]])

    def _days(self, seen: Seen) -> list[str] | Reply:
        start_text = seen.param("start_date")
        if not start_text:
            return Reply(400, errors("start_date is required", field="start_date"))
        start = date.fromisoformat(start_text)
        end = date.fromisoformat(seen.param("end_date") or start_text)
        return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]

    @route("GET", "/v3/stats")
    def get_stats(self, seen: Seen) -> Reply:
        days = self._days(seen)
        if isinstance(days, Reply):
            return days
        zero = dict.fromkeys(METRICS, 0)
        return Reply(200, [{"date": day, "stats": [{"metrics": self.stats.get(day, zero)}]} for day in days])

    @route("GET", "/v3/categories/stats")
    def get_category_stats(self, seen: Seen) -> Reply:
        days = self._days(seen)
        if isinstance(days, Reply):
            return days
        names = seen.query.get("categories", [])
        if not names or len(names) > 10:
            return Reply(400, errors("between 1 and 10 categories", field="categories"))
        zero = dict.fromkeys(METRICS, 0)
        return Reply(
            200,
            [
                {
                    "date": day,
                    "stats": [
                        {"metrics": self.category_stats.get((day, name), zero), "name": name, "type": "category"}
                        for name in names
                    ],
                }
                for day in days
            ],
        )
