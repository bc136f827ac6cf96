"""A local Mailchimp Marketing API v3, as documented: basic auth with the API key (any user
name) or a Bearer OAuth token, `count` (at most 1000) / `offset` paging with `total_items`,
`fields` / `exclude_fields`, members filtered by `since_last_changed` / `before_last_changed` /
`status` (archived members only when asked for) and sorted by `last_changed`, campaigns by
`status` and `create_time`, email activity filtered by `since`, problem-document errors, and at
most 10 simultaneous connections (beyond: 429).

Served under /3.0, so a connector's base_url is `fake.url + "/3.0"`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.fake_api import FakeApi, Reply, Seen, route

API_KEY = "0123456789abcdef0123456789abcdef-us21"
ACCESS_TOKEN = "mc-oauth-access-token"
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
MAX_CONNECTIONS = 10


def iso(moment: datetime) -> str:
    return moment.isoformat()


def member_id(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()  # noqa: S324 - Mailchimp's subscriber hash


def problem(status: int, title: str, detail: str) -> Reply:
    return Reply(
        status,
        {
            "type": "https://mailchimp.com/developer/marketing/docs/errors/",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": "00000000-0000-0000-0000-000000000000",
        },
        {"Content-Type": "application/problem+json; charset=utf-8"},
    )


@dataclass
class Member:
    list_id: str
    email: str
    status: str
    last_changed: datetime
    merge_fields: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {
            "id": member_id(self.email),
            "email_address": self.email,
            "unique_email_id": member_id(self.email)[:10],
            "full_name": self.merge_fields.get("FNAME", ""),
            "email_type": "html",
            "status": self.status,
            "merge_fields": self.merge_fields,
            "stats": {"avg_open_rate": 0.5, "avg_click_rate": 0.1},
            "timestamp_signup": iso(EPOCH),
            "last_changed": iso(self.last_changed),
            "language": "en",
            "vip": False,
            "tags_count": 0,
            "tags": [],
            "list_id": self.list_id,
            "_links": [{"rel": "self", "href": f"/3.0/lists/{self.list_id}/members/{member_id(self.email)}"}],
        }


@dataclass
class Campaign:
    id: str
    list_id: str
    create_time: datetime
    status: str = "sent"
    send_time: datetime | None = None
    # (email, action, at, url) — action open, click or bounce
    activity: list[tuple[str, str, datetime, str | None]] = field(default_factory=list)
    unsubscribes: list[tuple[str, datetime, str]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "web_id": 1000 + int(self.id[-3:], 16),
            "type": "regular",
            "create_time": iso(self.create_time),
            "status": self.status,
            "emails_sent": len({a[0] for a in self.activity}),
            "send_time": iso(self.send_time) if self.send_time else "",
            "content_type": "template",
            "recipients": {"list_id": self.list_id, "list_is_active": True, "recipient_count": 3},
            "settings": {"subject_line": f"News {self.id}", "title": f"Campaign {self.id}"},
            "_links": [{"rel": "self", "href": f"/3.0/campaigns/{self.id}"}],
        }

    def report(self) -> dict[str, Any]:
        opens = [a for a in self.activity if a[1] == "open"]
        clicks = [a for a in self.activity if a[1] == "click"]
        return {
            "id": self.id,
            "campaign_title": f"Campaign {self.id}",
            "type": "regular",
            "list_id": self.list_id,
            "emails_sent": len({a[0] for a in self.activity}),
            "unsubscribed": len(self.unsubscribes),
            "send_time": iso(self.send_time) if self.send_time else "",
            "opens": {"opens_total": len(opens), "unique_opens": len({a[0] for a in opens})},
            "clicks": {"clicks_total": len(clicks), "unique_clicks": len({a[0] for a in clicks})},
            "_links": [],
        }


class FakeMailchimp(FakeApi):
    def __init__(self, *, latency: float = 0.0) -> None:
        """`latency`: how long each answer takes, during which its connection counts as open."""
        super().__init__()
        self.hold = latency
        self.lists: dict[str, dict[str, Any]] = {}
        self.members: dict[str, dict[str, Member]] = {}  # list id → member id → member
        self.campaigns: dict[str, Campaign] = {}
        self.clock = EPOCH + timedelta(days=30)  # Mailchimp's "now": changes are stamped with it
        self._open = 0
        self._open_lock = threading.Lock()
        self.max_open = 0

    # ------------------------------------------------------------ data

    def add_list(self, list_id: str, name: str = "Audience") -> None:
        self.lists[list_id] = {
            "id": list_id,
            "web_id": len(self.lists) + 1,
            "name": name,
            "date_created": iso(EPOCH + timedelta(minutes=len(self.lists))),
            "stats": {"member_count": 0},
            "_links": [{"rel": "self", "href": f"/3.0/lists/{list_id}"}],
        }
        self.members.setdefault(list_id, {})

    def seed(self, count: int, list_id: str = "a1b2c3d4e5", *, same_time: int = 7) -> list[str]:
        """`count` subscribed members in one audience (created if missing); every `same_time`
        members share a last_changed second, as a bulk import leaves them. Returns their ids."""
        if list_id not in self.lists:
            self.add_list(list_id)
        audience = self.members[list_id]
        ids = []
        for i in range(count):
            email = f"Member{len(audience)}@Example.com"
            member = Member(list_id, email, "subscribed", EPOCH + timedelta(seconds=i // same_time), {"FNAME": f"M{i}"})
            audience[member_id(email)] = member
            ids.append(member_id(email))
        return ids

    def tick(self) -> datetime:
        """Moves the clock on by a second and returns it: the time of the next change."""
        self.clock += timedelta(seconds=1)
        return self.clock

    def change(self, list_id: str, ident: str, *, status: str | None = None, **merge: Any) -> None:
        """A member edited now (a second after the previous change)."""
        member = self.members[list_id][ident]
        member.last_changed = self.tick()
        member.status = status or member.status
        member.merge_fields.update(merge)

    def add_campaign(self, campaign_id: str, list_id: str, *, status: str = "sent") -> Campaign:
        created = EPOCH + timedelta(hours=len(self.campaigns))
        campaign = Campaign(campaign_id, list_id, created, status, created + timedelta(minutes=5))
        self.campaigns[campaign_id] = campaign
        return campaign

    # ------------------------------------------------------------ serving

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        """The base handler with TCP_NODELAY: it writes headers and body separately, and Nagle's
        algorithm against the client's delayed ACK would add 40 ms to every answer."""
        base = super()._handler_class()
        return type("_NoDelayHandler", (base,), {"disable_nagle_algorithm": True})

    def _answer(self, seen: Seen) -> Reply:
        with self._connection() as open_now:
            if self.hold:
                time.sleep(self.hold)
            if open_now > MAX_CONNECTIONS:
                with self._lock:
                    self.requests.append(seen)
                    self._throttled += 1
                return problem(429, "Too Many Requests", "You have exceeded the limit of 10 simultaneous connections.")
            if not self._authorised(seen):
                with self._lock:
                    self.requests.append(seen)
                return problem(
                    401,
                    "API Key Invalid",
                    "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
                )
            return super()._answer(seen)

    @contextmanager
    def _connection(self) -> Iterator[int]:
        with self._open_lock:
            self._open += 1
            self.max_open = max(self.max_open, self._open)
            open_now = self._open
        try:
            yield open_now
        finally:
            with self._open_lock:
                self._open -= 1

    def _authorised(self, seen: Seen) -> bool:
        import base64

        header = seen.headers.get("authorization", "")
        if header.startswith("Bearer "):
            return header[7:] == ACCESS_TOKEN
        if header.startswith("Basic "):
            _, _, key = base64.b64decode(header[6:]).decode().partition(":")
            return key == API_KEY
        return False

    def _collection(self, seen: Seen, key: str, items: list[dict[str, Any]]) -> Reply:
        count = int(seen.param("count", "10") or 10)
        offset = int(seen.param("offset", "0") or 0)
        if count > 1000:
            return problem(400, "Invalid Resource", "count: Must be less than or equal to 1000")
        page = items[offset : offset + count]
        excluded = set((seen.param("exclude_fields") or "").split(","))
        wanted = [f for f in (seen.param("fields") or "").split(",") if f]
        inner = {f.partition(".")[2] for f in wanted if f.startswith(f"{key}.")}
        if inner:
            shaped = [{k: v for k, v in item.items() if k in inner} for item in page]
        elif f"{key}._links" in excluded:
            shaped = [{k: v for k, v in item.items() if k != "_links"} for item in page]
        else:
            shaped = page
        body: dict[str, Any] = {key: shaped, "total_items": len(items)}
        if "_links" not in excluded and not wanted:
            body["_links"] = [{"rel": "self", "href": seen.path}]
        if wanted:
            body = {k: v for k, v in body.items() if k == key or k in wanted}
        return Reply(200, body)

    @route("GET", "/3.0/ping")
    def ping(self, seen: Seen) -> Reply:
        return Reply(200, {"health_status": "Everything's Chimpy!"})

    @route("GET", "/3.0/lists")
    def get_lists(self, seen: Seen) -> Reply:
        lists = sorted(self.lists.values(), key=lambda item: item["date_created"])
        if seen.param("sort_dir") == "DESC":
            lists.reverse()
        return self._collection(seen, "lists", lists)

    @route("GET", "/3.0/lists/(?P<list_id>[^/]+)/members")
    def get_members(self, seen: Seen, list_id: str) -> Reply:
        if list_id not in self.members:
            return problem(404, "Resource Not Found", "The requested resource could not be found.")
        since = seen.param("since_last_changed")
        before = seen.param("before_last_changed")
        status = seen.param("status")
        members = [
            m
            for m in self.members[list_id].values()
            if (status == m.status if status else m.status != "archived")
            and (since is None or m.last_changed > datetime.fromisoformat(since))
            and (before is None or m.last_changed < datetime.fromisoformat(before))
        ]
        if seen.param("sort_field") == "last_changed":
            # Ties keep the audience's own order (the order members were added).
            members.sort(key=lambda m: m.last_changed, reverse=seen.param("sort_dir") == "DESC")
        reply = self._collection(seen, "members", [m.body() for m in members])
        if isinstance(reply.body, dict):
            reply.body["list_id"] = list_id
        return reply

    @route("GET", "/3.0/campaigns")
    def get_campaigns(self, seen: Seen) -> Reply:
        status = seen.param("status")
        campaigns = [c for c in self.campaigns.values() if status is None or c.status == status]
        field_name = seen.param("sort_field") or "create_time"
        campaigns.sort(key=lambda c: getattr(c, field_name) or EPOCH, reverse=seen.param("sort_dir") == "DESC")
        return self._collection(seen, "campaigns", [c.body() for c in campaigns])

    @route("GET", "/3.0/reports")
    def get_reports(self, seen: Seen) -> Reply:
        sent = sorted((c for c in self.campaigns.values() if c.status == "sent"), key=lambda c: c.send_time or EPOCH)
        return self._collection(seen, "reports", [c.report() for c in sent])

    @route("GET", "/3.0/reports/(?P<campaign_id>[^/]+)/email-activity")
    def get_email_activity(self, seen: Seen, campaign_id: str) -> Reply:
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            return problem(404, "Resource Not Found", "The requested resource could not be found.")
        since_text = seen.param("since")
        since = datetime.fromisoformat(since_text) if since_text else None
        by_email: dict[str, list[dict[str, Any]]] = {}
        for email, action, at, url in campaign.activity:
            by_email.setdefault(email, [])
            if since is None or at > since:
                entry: dict[str, Any] = {"action": action, "timestamp": iso(at), "ip": "198.51.100.7"}
                if action == "click":
                    entry["url"] = url
                if action == "bounce":
                    entry["type"] = "hard"
                by_email[email].append(entry)
        emails = [
            {
                "campaign_id": campaign_id,
                "list_id": campaign.list_id,
                "list_is_active": True,
                "email_id": member_id(email),
                "email_address": email,
                "activity": activity,
                "_links": [],
            }
            for email, activity in sorted(by_email.items())
            if activity
        ]
        reply = self._collection(seen, "emails", emails)
        if isinstance(reply.body, dict):
            reply.body["campaign_id"] = campaign_id
        return reply

    @route("GET", "/3.0/reports/(?P<campaign_id>[^/]+)/unsubscribed")
    def get_unsubscribed(self, seen: Seen, campaign_id: str) -> Reply:
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            return problem(404, "Resource Not Found", "The requested resource could not be found.")
        rows = [
            {
                "email_id": member_id(email),
                "email_address": email,
                "merge_fields": {},
                "vip": False,
                "timestamp": iso(at),
                "reason": reason,
                "campaign_id": campaign_id,
                "list_id": campaign.list_id,
                "list_is_active": True,
                "_links": [],
            }
            for email, at, reason in campaign.unsubscribes
        ]
        return self._collection(seen, "unsubscribes", rows)
