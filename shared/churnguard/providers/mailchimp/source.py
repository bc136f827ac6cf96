"""Mailchimp Marketing API v3 over `requests`: audiences, members, campaigns, reports and
per-member email activity.

What it reads, its limits and quirks: README.md in this folder."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Generator, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from churnguard.connectors.api import ApiConnector, ApiObject
from churnguard.connectors.base import CheckStatus, Page, Position, SourceError, Stream
from churnguard.models import CredentialType, ProviderName
from churnguard.providers.mailchimp.canonical import MAPPING
from churnguard.resilience import ProviderLimits

MAX_COUNT = 1000
# Ids of the last items read, kept in the state to skip them when the offset is moved back.
_RECENT = 50
_DATA_CENTRE = re.compile(r"^[a-z]{2,8}[0-9]{1,4}$")
_METADATA_URL = "https://login.mailchimp.com/oauth2/metadata"
_SECOND = timedelta(seconds=1)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _in_window(value: Any, since: datetime | None, until: datetime) -> bool:
    """Whether a Mailchimp time is in [since, until). The API does not say whether its bounds
    are inclusive, so the lower one is sent a second early and this decides."""
    moment = _parse(value)
    if moment is None:
        return True
    return (since is None or moment >= since) and moment < until


def _until(run: Mapping[str, Any]) -> datetime:
    until = _parse(run.get("until"))
    if until is None:
        raise SourceError(CheckStatus.ERROR, "the Mailchimp sync checkpoint is damaged; run a full sync")
    return until


def _activity_id(*parts: Any) -> str:
    """A stable key for one action: Mailchimp gives actions no id of their own."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class MailchimpConnector(ApiConnector):
    provider = ProviderName.MAILCHIMP
    canonical_mapping = MAPPING
    # No request rate: at most 10 simultaneous connections per user.
    limits = ProviderLimits(6_000, 10, "10 simultaneous connections per user, no request rate")
    provider_label = "Mailchimp"
    page_size: ClassVar[int] = MAX_COUNT
    objects: ClassVar[Mapping[str, ApiObject]] = {
        "lists": ApiObject(incremental=False),
        "members": ApiObject(primary_key=("list_id", "id"), cursor_field="last_changed"),
        "campaigns": ApiObject(incremental=False),
        "reports": ApiObject(incremental=False),
        "email_activity": ApiObject(cursor_field="occurred_at"),
    }
    ping_before_sync = False
    default_entities: ClassVar[Mapping[str, str]] = {
        "audience": "lists",
        "member": "members",
        "campaign": "campaigns",
        "campaign_report": "reports",
        "campaign_activity": "email_activity",
    }
    # Collection path and the key its items are under, per whole-read object.
    _COLLECTIONS: ClassVar[Mapping[str, tuple[str, str, dict[str, str]]]] = {
        "lists": ("lists", "lists", {"sort_field": "date_created", "sort_dir": "ASC"}),
        "campaigns": ("campaigns", "campaigns", {"sort_field": "create_time", "sort_dir": "ASC"}),
        "reports": ("reports", "reports", {}),
    }

    _api_base: str | None = None
    # Audience ids, when this connector has just read every audience (the audience stream): the
    # member stream then needs no listing request of its own.
    _audiences: list[str] | None = None

    # ------------------------------------------------------------ HTTP

    def _auth(self) -> dict[str, Any]:
        creds = self.credentials
        if creds.credential_type is CredentialType.OAUTH2 and creds.access_token is not None:
            return {"headers": {"Authorization": f"Bearer {creds.access_token.get_secret_value()}"}}
        return {"auth": ("churnguard", self._api_key())}

    def _api_key(self) -> str:
        creds = self.credentials
        secret = creds.api_key or (creds.password if creds.credential_type is CredentialType.BASIC_AUTH else None)
        if secret is None:
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                "Mailchimp needs an api_key (or basic_auth with the key as password) or an oauth2 access_token",
            )
        return secret.get_secret_value()

    def _base(self) -> str:
        if self._api_base is None:
            if self.config.base_url:
                self._api_base = self.config.base_url.rstrip("/")
            else:
                self._api_base = f"https://{self._data_centre()}.api.mailchimp.com/3.0"
        return self._api_base

    def _data_centre(self) -> str:
        creds = self.credentials
        dc: str | None = None
        if "dc" in creds.custom_fields:
            dc = creds.custom_fields["dc"].get_secret_value()
        elif creds.credential_type is CredentialType.OAUTH2 and creds.access_token is not None:
            response = self.request(
                "GET",
                _METADATA_URL,
                what="looking up the account's data centre",
                headers={"Authorization": f"OAuth {creds.access_token.get_secret_value()}"},
            )
            body = self.json_of(response, "the metadata lookup")
            dc = body.get("dc") if isinstance(body, dict) else None
        else:
            dc = self._api_key().rpartition("-")[2]
        if not dc or not _DATA_CENTRE.match(dc):
            raise SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                "the Mailchimp data centre is unknown: the API key should end in one (like -us21),"
                " or set custom_fields.dc or base_url",
            )
        return dc

    def error_detail(self, response: Any) -> str | None:
        """Mailchimp's problem document title ("API Key Invalid", "Resource Not Found")."""
        try:
            body = response.json()
        except ValueError:
            return None
        title = body.get("title") if isinstance(body, dict) else None
        return title[:200] if isinstance(title, str) else None

    def _get(self, path: str, what: str, **params: Any) -> dict[str, Any]:
        response = self.request("GET", f"{self._base()}/{path}", what=what, params=params, **self._auth())
        body = self.json_of(response, what)
        if not isinstance(body, dict):
            raise SourceError(CheckStatus.ERROR, f"Mailchimp answered {what} with an unexpected document")
        return body

    def _walk(
        self, path: str, key: str, params: Mapping[str, Any], at: Mapping[str, Any], what: str, id_field: str = "id"
    ) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any], bool]]:
        """Pages of a collection from `at` ({offset, total, recent}): (items not read before,
        where the next page starts, whether the collection ended). When `total_items` shrank
        since the last page, the offset moves back by as much and items already read are skipped."""
        offset, total, recent = int(at.get("offset", 0)), at.get("total"), list(at.get("recent", []))
        count = self.page_size
        while True:
            body = self._get(path, what, count=count, offset=offset, **params)
            items = [item for item in body.get(key) or [] if isinstance(item, dict)]
            now_total = int(body.get("total_items") or 0)
            if total is not None and now_total < total and offset > 0:
                offset, total = max(0, offset - (total - now_total)), now_total
                continue
            seen = set(recent)
            fresh = [item for item in items if item.get(id_field) not in seen]
            offset += len(items)
            total = now_total
            recent = [*recent, *(item.get(id_field) for item in items)][-_RECENT:]
            done = len(items) < count or offset >= now_total
            yield fresh, {"offset": offset, "total": total, "recent": recent}, done
            if done:
                return

    def close(self) -> None:
        super().close()
        self._audiences = None

    # ------------------------------------------------------------ connector

    def _ping(self) -> None:
        self._get("ping", "checking the connection")

    def _probe(self, stream: Stream) -> None:
        path = {"members": "lists", "email_activity": "campaigns"}.get(stream.source, stream.source)
        self._get(path, f"reading {stream.source}", count=1, fields="total_items")

    def _pages(self, stream: Stream, position: Position, page_size: int, encoded: bool) -> Generator[Page, None, None]:
        state = position.cursor if isinstance(position.cursor, dict) else {}
        if stream.source == "members":
            yield from self._members(state, position.cursor if isinstance(position.cursor, datetime) else None)
        elif stream.source == "email_activity":
            yield from self._activity(state, position.cursor if isinstance(position.cursor, datetime) else None)
        else:
            path, key, params = self._COLLECTIONS[stream.source]
            excluded = f"{key}._links,_links"
            seen: list[str] | None = [] if stream.source == "lists" and not state else None
            for items, at, done in self._walk(
                path, key, {**params, "exclude_fields": excluded}, state, f"reading {key}"
            ):
                if seen is not None:
                    seen += [str(item["id"]) for item in items if item.get("id")]
                    if done:
                        self._audiences = sorted(set(seen))
                yield Page(items, Position(cursor=at))

    def _ids(self, path: str, key: str, what: str, **params: Any) -> list[str]:
        """Every id in a collection, sorted: the order a run visits audiences or campaigns in."""
        ids: list[str] = []
        for items, _, _ in self._walk(path, key, {"fields": f"{key}.id,total_items", **params}, {}, what):
            ids += [str(item["id"]) for item in items if item.get("id")]
        return sorted(set(ids))

    def _run(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """This run's bookmark: resumed, or a new one whose window ends now, to the second (what
        changes from then on, even within that second, is the next run's)."""
        run = state.get("run")
        if isinstance(run, dict):
            return dict(run)
        return {"until": _iso(_now()), "at": None, "phase": None}

    # ------------------------------------------------------------ members

    def _members(self, state: dict[str, Any], since_all: datetime | None) -> Generator[Page, None, None]:
        bounds: dict[str, str] = dict(state.get("since") or {})
        default = state.get("default_since") or (_iso(since_all) if since_all else None)
        run = self._run(state)
        until = _until(run)
        audiences = self._audiences or self._ids("lists", "lists", "listing audiences")

        def bookmark(**changes: Any) -> Position:
            return Position(cursor={"since": bounds, "default_since": default, "run": {**run, **changes}})

        for list_id in audiences:
            if run["at"] is not None and (list_id < run["at"] or (list_id == run["at"] and run["phase"] == "done")):
                continue
            resuming = list_id == run["at"]
            since = _parse(bounds.get(list_id, default))
            phase = run["phase"] if resuming else "members"
            at = run.get("page", {}) if resuming else {}
            window: dict[str, Any] = {"before_last_changed": run["until"], "exclude_fields": "members._links,_links"}
            if since is not None:
                window["since_last_changed"] = _iso(since - _SECOND)
            path = f"lists/{list_id}/members"
            if phase == "members":
                params = {**window, "sort_field": "last_changed", "sort_dir": "ASC"}
                for items, where, done in self._walk(path, "members", params, at, "reading audience members"):
                    rows = [m for m in items if _in_window(m.get("last_changed"), since, until)]
                    for row in rows:
                        row.setdefault("list_id", list_id)
                    if done:
                        phase = "archived" if since is not None else "done"
                        if phase == "done":
                            bounds[list_id] = run["until"]
                    yield Page(rows, bookmark(at=list_id, phase=phase, page={} if done else where))
                at = {}
            if phase == "archived":
                params = {**window, "status": "archived"}
                for items, where, done in self._walk(path, "members", params, at, "reading archived members"):
                    gone = [m for m in items if _in_window(m.get("last_changed"), since, until)]
                    for row in gone:
                        row.setdefault("list_id", list_id)
                    if done:
                        phase, bounds[list_id] = "done", run["until"]
                    yield Page([], bookmark(at=list_id, phase=phase, page={} if done else where), deleted=gone)
        kept = {list_id: bound for list_id, bound in bounds.items() if list_id in audiences}
        yield Page([], Position(cursor={"since": kept, "default_since": default}))

    # ------------------------------------------------------------ campaign activity

    def _activity(self, state: dict[str, Any], since_all: datetime | None) -> Generator[Page, None, None]:
        since_text = state.get("since") or (_iso(since_all) if since_all else None)
        since = _parse(since_text)
        run = self._run(state)
        until = _until(run)
        campaigns = self._ids("campaigns", "campaigns", "listing sent campaigns", status="sent")

        def bookmark(**changes: Any) -> Position:
            return Position(cursor={"since": since_text, "run": {**run, **changes}})

        for campaign_id in campaigns:
            if run["at"] is not None and (
                campaign_id < run["at"] or (campaign_id == run["at"] and run["phase"] == "done")
            ):
                continue
            resuming = campaign_id == run["at"]
            phase = run["phase"] if resuming else "activity"
            at = run.get("page", {}) if resuming else {}
            if phase == "activity":
                params: dict[str, Any] = {"exclude_fields": "emails._links,_links"}
                if since is not None:
                    params["since"] = _iso(since - _SECOND)
                path = f"reports/{campaign_id}/email-activity"
                for items, where, done in self._walk(
                    path, "emails", params, at, "reading campaign email activity", "email_id"
                ):
                    rows = [
                        action
                        for member in items
                        for action in self._actions(campaign_id, member)
                        if _in_window(action["occurred_at"], since, until)
                    ]
                    if done:
                        phase = "unsubscribes"
                    yield Page(rows, bookmark(at=campaign_id, phase=phase, page={} if done else where))
                at = {}
            if phase == "unsubscribes":
                path = f"reports/{campaign_id}/unsubscribed"
                params = {"exclude_fields": "unsubscribes._links,_links"}
                for items, where, done in self._walk(
                    path, "unsubscribes", params, at, "reading campaign unsubscribes", "email_id"
                ):
                    rows = [
                        self._action(campaign_id, item, "unsubscribe", item.get("timestamp"), reason=item.get("reason"))
                        for item in items
                        if _in_window(item.get("timestamp"), since, until)
                    ]
                    if done:
                        phase = "done"
                    yield Page(rows, bookmark(at=campaign_id, phase=phase, page={} if done else where))
        yield Page([], Position(cursor={"since": run["until"]}))

    def _actions(self, campaign_id: str, member: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        for action in member.get("activity") or []:
            if isinstance(action, dict):
                yield self._action(
                    campaign_id,
                    member,
                    str(action.get("action") or ""),
                    action.get("timestamp"),
                    url=action.get("url"),
                    ip=action.get("ip"),
                    type=action.get("type"),
                )

    @staticmethod
    def _action(campaign_id: str, member: Mapping[str, Any], action: str, at: Any, **extra: Any) -> dict[str, Any]:
        email_id = member.get("email_id")
        return {
            "id": _activity_id(campaign_id, email_id, action, at, extra.get("url")),
            "campaign_id": campaign_id,
            "list_id": member.get("list_id"),
            "email_id": email_id,
            "email": member.get("email_address"),
            "action": action,
            "occurred_at": at,
            **extra,
        }
