"""SendGrid v3 over `requests`: global and category stats by day, and the suppression lists.

What it reads, its limits and quirks: README.md in this folder."""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from churnguard.connectors.api import ApiConnector, ApiObject
from churnguard.connectors.base import CheckStatus, Page, Position, SourceError, Stream, ThrottledError
from churnguard.models import ProviderName
from churnguard.providers.sendgrid.canonical import MAPPING
from churnguard.resilience import ProviderLimits

if TYPE_CHECKING:
    import requests

DEFAULT_BASE_URL = "https://api.sendgrid.com"
MAX_LIMIT = 500
STATS_LOOKBACK_DAYS = 730
STATS_CHUNK_DAYS = 90
REREAD_DAYS = 2
CATEGORIES_PER_REQUEST = 10
MAX_RESET_WAIT = 60.0

# Suppression object → (path, record type).
_SUPPRESSIONS: dict[str, tuple[str, str]] = {
    "bounces": ("/v3/suppression/bounces", "bounce"),
    "blocks": ("/v3/suppression/blocks", "block"),
    "spam_reports": ("/v3/suppression/spam_reports", "spam_report"),
    "invalid_emails": ("/v3/suppression/invalid_emails", "invalid_email"),
    "unsubscribes": ("/v3/suppression/unsubscribes", "unsubscribe"),
}


def _now() -> datetime:
    return datetime.now(UTC)


def _epoch_iso(value: Any) -> str | None:
    if not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value, UTC).isoformat()


class SendGridConnector(ApiConnector):
    provider = ProviderName.SENDGRID
    canonical_mapping = MAPPING
    # Per endpoint, typically 600 a minute, announced in X-RateLimit-* headers (paced by them).
    limits = ProviderLimits(600, 5, "per endpoint, typically 600 requests per minute (X-RateLimit headers)")
    provider_label = "SendGrid"
    page_size: ClassVar[int] = MAX_LIMIT
    objects: ClassVar[Mapping[str, ApiObject]] = {
        "stats": ApiObject(primary_key=("date",), cursor_field="date"),
        "category_stats": ApiObject(primary_key=("date", "category"), cursor_field="date"),
        **{name: ApiObject(primary_key=("type", "email"), cursor_field="created") for name in _SUPPRESSIONS},
    }
    ping_before_sync = False
    default_entities: ClassVar[Mapping[str, str]] = {
        "email_stat": "stats",
        "category_stat": "category_stats",
        "bounce": "bounces",
        "block": "blocks",
        "spam_report": "spam_reports",
        "invalid_email": "invalid_emails",
        "unsubscribe": "unsubscribes",
    }

    _resume_at: float = 0.0  # epoch seconds: no request before, the rate-limit window is spent

    # ------------------------------------------------------------ HTTP

    def _headers(self) -> dict[str, str]:
        key = self.credentials.api_key
        if key is None:
            raise SourceError(CheckStatus.INVALID_CONFIGURATION, "SendGrid needs api_key credentials")
        return {"Authorization": f"Bearer {key.get_secret_value()}", "Accept": "application/json"}

    def _get(self, path: str, what: str, params: Any = None) -> requests.Response:
        wait = self._resume_at - time.time()
        if wait > 0:
            self.guard.retry.sleep(min(wait, MAX_RESET_WAIT))
        base = (self.config.base_url or DEFAULT_BASE_URL).rstrip("/")
        return self.request("GET", f"{base}{path}", what=what, params=params, headers=self._headers())

    def _json(self, path: str, what: str, params: Any = None) -> tuple[Any, requests.Response]:
        response = self._get(path, what, params)
        return self.json_of(response, what), response

    def observe(self, response: requests.Response) -> None:
        """Pauses before the next request once the window is spent; a 429 waits for the reset."""
        reset = _number(response.headers.get("X-RateLimit-Reset"))
        remaining = _number(response.headers.get("X-RateLimit-Remaining"))
        if reset is not None and (remaining == 0 or response.status_code == 429):
            self._resume_at = reset
        if response.status_code == 429:
            raise ThrottledError(
                CheckStatus.ERROR,
                "SendGrid rate-limited the request; it is retried when its rate-limit window resets",
                retry_after=max(0.0, reset - time.time()) if reset is not None else None,
                details={"http_status": 429},
            )

    def error_detail(self, response: requests.Response) -> str | None:
        """The first of SendGrid's `errors[].message` ("authorization required")."""
        try:
            body = response.json()
        except ValueError:
            return None
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            message = errors[0].get("message")
            return message[:200] if isinstance(message, str) else None
        return None

    # ------------------------------------------------------------ connector

    def _ping(self) -> None:
        self._get("/v3/scopes", "checking the connection")

    def _probe(self, stream: Stream) -> None:
        if stream.source in _SUPPRESSIONS:
            self._get(_SUPPRESSIONS[stream.source][0], f"reading {stream.source}", {"limit": 1})
        elif stream.source == "category_stats":
            self._get("/v3/categories", "listing categories", {"limit": 1})
        else:
            today = _now().date().isoformat()
            self._get("/v3/stats", "reading stats", {"start_date": today, "aggregated_by": "day"})

    def _pages(self, stream: Stream, position: Position, page_size: int, encoded: bool) -> Generator[Page, None, None]:
        cursor = position.cursor
        state: dict[str, Any] = dict(cursor) if isinstance(cursor, dict) else {}
        if stream.source in _SUPPRESSIONS:
            if isinstance(cursor, datetime):
                state = {"since": int(cursor.timestamp())}
            yield from self._suppressions(stream.source, state)
        else:
            if isinstance(cursor, datetime):
                state = {"from": cursor.date().isoformat()}
            yield from self._stats(stream.source == "category_stats", state)

    # ------------------------------------------------------------ suppressions

    def _suppressions(self, source: str, state: dict[str, Any]) -> Generator[Page, None, None]:
        path, kind = _SUPPRESSIONS[source]
        since = state.get("since")
        until = state.get("until")
        if until is None:
            until = int(_now().timestamp()) - 1
        offset = int(state.get("offset", 0))
        limit = self.page_size
        while True:
            params: dict[str, Any] = {"end_time": until, "limit": limit, "offset": offset}
            if since is not None:
                params["start_time"] = since
            body, response = self._json(path, f"reading {source}", params)
            items = [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []
            rows = [{**item, "type": kind, "created_at": _epoch_iso(item.get("created"))} for item in items]
            offset += len(items)
            links = response.links
            done = len(items) < limit or (bool(links) and "next" not in links)
            if done:
                yield Page(rows, Position(cursor={"since": until + 1}))
                return
            yield Page(rows, Position(cursor={"since": since, "until": until, "offset": offset}))

    # ------------------------------------------------------------ stats

    def _stats(self, by_category: bool, state: dict[str, Any]) -> Generator[Page, None, None]:
        today = _now().date()
        start = date.fromisoformat(state["from"]) if state.get("from") else today - timedelta(STATS_LOOKBACK_DAYS)
        until = date.fromisoformat(state["until"]) if state.get("until") else today
        chunk = date.fromisoformat(state["chunk"]) if state.get("chunk") else start
        group = int(state.get("group", 0))
        groups = self._category_groups() if by_category else [[]]
        final = {"from": (until - timedelta(REREAD_DAYS)).isoformat()}
        while chunk <= until:
            end = min(chunk + timedelta(STATS_CHUNK_DAYS - 1), until)
            for index in range(group, len(groups)):
                rows = self._stats_rows(chunk, end, groups[index])
                if index + 1 < len(groups):
                    at = {"chunk": chunk.isoformat(), "group": index + 1}
                elif end < until:
                    at = {"chunk": (end + timedelta(1)).isoformat(), "group": 0}
                else:
                    yield Page(rows, Position(cursor=final))
                    return
                yield Page(rows, Position(cursor={"from": start.isoformat(), "until": until.isoformat(), **at}))
            chunk, group = end + timedelta(1), 0
        yield Page([], Position(cursor=final))

    def _category_groups(self) -> list[list[str]]:
        names: list[str] = []
        offset = 0
        while True:
            body, response = self._json(
                "/v3/categories", "listing categories", {"limit": self.page_size, "offset": offset}
            )
            items = body if isinstance(body, list) else []
            names += [str(item["category"]) for item in items if isinstance(item, dict) and item.get("category")]
            offset += len(items)
            if len(items) < self.page_size or (response.links and "next" not in response.links):
                break
        ordered = sorted(set(names))
        return [ordered[i : i + CATEGORIES_PER_REQUEST] for i in range(0, len(ordered), CATEGORIES_PER_REQUEST)]

    def _stats_rows(self, start: date, end: date, categories: list[str]) -> list[dict[str, Any]]:
        params: list[tuple[str, str]] = [
            ("start_date", start.isoformat()),
            ("end_date", end.isoformat()),
            ("aggregated_by", "day"),
        ]
        if categories:
            params += [("categories", name) for name in categories]
            body, _ = self._json("/v3/categories/stats", "reading category stats", params)
        else:
            body, _ = self._json("/v3/stats", "reading global stats", params)
        rows: list[dict[str, Any]] = []
        for day in body if isinstance(body, list) else []:
            if not isinstance(day, dict):
                continue
            for entry in day.get("stats") or []:
                if not isinstance(entry, dict):
                    continue
                row: dict[str, Any] = {"date": day.get("date"), **(entry.get("metrics") or {})}
                if categories:
                    row["category"] = entry.get("name")
                rows.append(row)
        return rows


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
