"""A generic REST API on 127.0.0.1 for ingestion-rule tests and benchmarks.

`GET /v1/events` lists records `{"id", "name", "email", "updated_at", "value"}` in (updated_at,
id) order, `{"data": [...], "meta": {"next_cursor": ...}}`, filtered by `updated_since`
(inclusive, `>=`, as many APIs do, so the connector's boundary dedupe is exercised) and paged
the way `paging` says: an opaque keyset cursor (`cursor`, `limit`), `offset`/`limit`,
`page`/`per_page` (from 1), or a `Link: <...>; rel="next"` header (`after`, `limit`). Pages
hold at most `max_page_size` records. `POST /v1/search` takes the same parameters in a JSON body.

Auth (`auth`): none, a bearer token, an API key (`X-API-Key` header or `api_key` query), HTTP
Basic, or OAuth2 client credentials from `POST /oauth/token` (client id and secret in a Basic
header or the form), issuing tokens that expire after `token_lifetime` seconds and can be
revoked. Wrong credentials get 401 (counted in `unauthorized`). `on_page(seen, reply)`, when
set, may change or observe each listing reply (revoke tokens, rewrite a Link header).
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from tests.support.fake_api import FakeApi, Reply, Seen, route

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
TOKEN = "static-bearer-token-0123456789"
API_KEY = "rest-api-key-abcdef-0123456789"
LOGIN = ("rest-user", "rest-password-0123456789")
CLIENT = ("client-id-0001", "client-secret-0123456789")


def stamp(seconds: int) -> str:
    return (EPOCH + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


class FakeRest(FakeApi):
    def __init__(
        self,
        *,
        paging: str = "cursor",
        auth: str = "none",
        max_page_size: int = 100,
        token_lifetime: float = 3600.0,
        latency: float = 0.0,
        echo_key_in_links: bool = False,
    ) -> None:
        """`echo_key_in_links`: next links repeat the request's api_key parameter, as many APIs'
        do."""
        super().__init__(latency=latency)
        self.echo_key_in_links = echo_key_in_links
        self.paging = paging
        self.auth = auth
        self.max_page_size = max_page_size
        self.token_lifetime = token_lifetime
        self.records: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, float] = {}  # issued token -> expiry (epoch seconds)
        self.unauthorized = 0
        self.on_page: Callable[[Seen, Reply], None] | None = None
        self._data_lock = threading.Lock()

    # ------------------------------------------------------------ data

    def seed(self, count: int, *, start: int = 0, updated_at: int | None = None) -> list[dict[str, Any]]:
        """Adds `count` records with ids start+1..start+count; each is updated at its own second
        unless `updated_at` (seconds after EPOCH) gives them all one."""
        made = []
        with self._data_lock:
            for number in range(start + 1, start + count + 1):
                record = {
                    "id": f"evt_{number:06d}",
                    "name": f"Event {number}",
                    "email": f"user{number}@example.com",
                    "updated_at": stamp(number if updated_at is None else updated_at),
                    "value": number,
                }
                self.records[record["id"]] = record
                made.append(record)
        return made

    def touch(self, ids: list[str], seconds: int) -> None:
        with self._data_lock:
            for record_id in ids:
                self.records[record_id] = {**self.records[record_id], "updated_at": stamp(seconds)}

    def revoke_tokens(self) -> None:
        with self._data_lock:
            self.tokens.clear()

    def _ordered(self, since: str | None) -> list[dict[str, Any]]:
        with self._data_lock:
            rows = sorted(self.records.values(), key=lambda r: (r["updated_at"], r["id"]))
        return [r for r in rows if since is None or r["updated_at"] >= since]

    # ------------------------------------------------------------ auth

    def _refused(self, seen: Seen) -> Reply | None:
        header = seen.headers.get("authorization", "")
        ok = {
            "none": lambda: True,
            "bearer": lambda: header == f"Bearer {TOKEN}",
            "api_key_header": lambda: seen.headers.get("x-api-key") == API_KEY,
            "api_key_query": lambda: seen.param("api_key") == API_KEY,
            "basic": lambda: header == _basic(*LOGIN),
            "oauth2": lambda: self._token_valid(header.removeprefix("Bearer ")),
        }[self.auth]()
        if ok:
            return None
        with self._data_lock:
            self.unauthorized += 1
        return Reply(401, {"error": "unauthorized"})

    def _token_valid(self, token: str) -> bool:
        with self._data_lock:
            expiry = self.tokens.get(token)
        return expiry is not None and expiry > time.time()

    @route("POST", "/oauth/token")
    def token(self, seen: Seen) -> Reply:
        form = {k: v[0] for k, v in seen.form().items()}
        presented = (form.get("client_id"), form.get("client_secret"))
        if seen.headers.get("authorization") == _basic(*CLIENT):
            presented = CLIENT
        if form.get("grant_type") != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type"})
        if presented != CLIENT:
            return Reply(401, {"error": "invalid_client", "error_description": f"bad secret {presented[1]}"})
        token = f"tok_{secrets.token_hex(12)}"
        with self._data_lock:
            self.tokens[token] = time.time() + self.token_lifetime
        return Reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime})

    # ------------------------------------------------------------ listing

    @route("GET", "/v1/events")
    def events(self, seen: Seen) -> Reply:
        params = {name: values[0] for name, values in seen.query.items()}
        return self._page(seen, params, "/v1/events")

    @route("POST", "/v1/search")
    def search(self, seen: Seen) -> Reply:
        body = seen.json() or {}
        return self._page(seen, {k: str(v) for k, v in body.items()}, "/v1/search")

    def _page(self, seen: Seen, params: dict[str, str], path: str) -> Reply:
        refused = self._refused(seen)
        if refused is not None:
            return refused
        rows = self._ordered(params.get("updated_since"))
        size_name = "per_page" if self.paging == "page" else "limit"
        size = min(int(params.get(size_name, 25)), self.max_page_size)
        headers: dict[str, str] = {}
        next_cursor = None
        if self.paging == "offset":
            start = int(params.get("offset", 0))
        elif self.paging == "page":
            start = (int(params.get("page", 1)) - 1) * size
        else:  # cursor and link: keyset after the (updated_at, id) the token names
            after = params.get("cursor" if self.paging == "cursor" else "after")
            start = 0
            if after:
                key = tuple(base64.urlsafe_b64decode(after.encode()).decode().split("|", 1))
                start = next((i for i, r in enumerate(rows) if (r["updated_at"], r["id"]) > key), len(rows))
        page = rows[start : start + size]
        if page and start + size < len(rows):
            last = page[-1]
            token = base64.urlsafe_b64encode(f"{last['updated_at']}|{last['id']}".encode()).decode()
            if self.paging == "cursor":
                next_cursor = token
            elif self.paging == "link":
                dropped = {"after"} if self.echo_key_in_links else {"after", "api_key"}
                query = {k: v for k, v in params.items() if k not in dropped}
                link = f"{self.url}{path}?{urlencode({**query, 'after': token, 'limit': size})}"
                headers["Link"] = f'<{link}>; rel="next"'
        reply = Reply(200, {"data": page, "meta": {"next_cursor": next_cursor, "total": len(rows)}}, headers)
        if self.on_page is not None:
            self.on_page(seen, reply)
        return reply


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
