"""A local HubSpot CRM API for connector tests, reproducing HubSpot's documented behaviour.

What it serves, in HubSpot's response shapes: the properties API, the objects list endpoint
(`limit` up to 100, `paging.next.after`, `archived=true` with `archivedAt`), the CRM search API
(filter groups, one sorting rule, `limit` up to 200, offset paging and its cap: a request whose
`after` reaches 10,000 is refused with HubSpot's 400), v4 associations batch reads (up to 1,000
ids, 207 when some have none, per-id paging), owners, and the OAuth2 token endpoint (expiring
access tokens, optionally rotated refresh tokens).

Limits: with `limit_rates`, at most 100 requests per rolling 10 s (configurable) and 5 searches a
second; beyond them HubSpot's 429 body with Retry-After. Every non-search response carries
`X-HubSpot-RateLimit-*` headers (search responses carry none, as in HubSpot).
"""

from __future__ import annotations

import itertools
import math
import secrets
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from tests.support.fake_api import FakeApi, Reply, Seen, route

SEARCH_CAP = 10_000
BASE_TIME = 1_704_067_200_000  # 2024-01-01T00:00:00Z, in ms

_DEFAULT_PROPERTIES: dict[str, dict[str, str]] = {
    "contacts": {
        "email": "string",
        "firstname": "string",
        "lastname": "string",
        "associatedcompanyid": "number",
        "createdate": "datetime",
        "lastmodifieddate": "datetime",
        "hs_object_id": "number",
    },
    "companies": {
        "name": "string",
        "domain": "string",
        "numberofemployees": "number",
        "createdate": "datetime",
        "hs_lastmodifieddate": "datetime",
        "hs_object_id": "number",
    },
    "deals": {
        "dealname": "string",
        "dealstage": "enumeration",
        "amount": "number",
        "closedate": "datetime",
        "createdate": "datetime",
        "hs_lastmodifieddate": "datetime",
        "hs_object_id": "number",
    },
    "tickets": {
        "subject": "string",
        "hs_pipeline_stage": "enumeration",
        "hs_ticket_priority": "enumeration",
        "createdate": "datetime",
        "hs_lastmodifieddate": "datetime",
        "hs_object_id": "number",
    },
}
_MODIFIED = {"contacts": "lastmodifieddate"}


def iso(ms: int) -> str:
    """HubSpot's timestamp format: ISO 8601, milliseconds, Z."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def now_ms() -> int:
    return int(time.time() * 1000)


def _error(status: int, message: str, category: str, **extra: Any) -> Reply:
    body = {"status": "error", "message": message, "correlationId": secrets.token_hex(8), "category": category}
    return Reply(status, {**body, **extra})


class FakeHubSpot(FakeApi):
    def __init__(self, *, latency: float = 0.0, token: str = "pat-na1-test-token") -> None:  # noqa: S107
        super().__init__(latency=latency)
        self.tokens: dict[str, float | None] = {token: None}  # access token → expiry (epoch s)
        self.refresh_tokens: set[str] = set()
        self.clients: dict[str, str] = {}
        self.rotate_refresh_tokens = False
        self.token_lifetime = 1800
        self.properties: dict[str, dict[str, str]] = {t: dict(p) for t, p in _DEFAULT_PROPERTIES.items()}
        self.objects: dict[str, dict[int, dict[str, Any]]] = {t: {} for t in _DEFAULT_PROPERTIES}
        self.links: dict[tuple[str, str], dict[int, list[int]]] = {}
        self.owners: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._data = threading.Lock()
        self._general: deque[float] | None = None
        self._searches: deque[float] | None = None
        self.general_limit = (100, 10.0)
        self.search_limit = (5, 1.0)
        self.other_searches = 0

    # ------------------------------------------------------------ test set-up

    def limit_rates(
        self,
        general: tuple[int, float] = (100, 10.0),
        search: tuple[int, float] = (5, 1.0),
        other_searches: int = 0,
    ) -> None:
        """Enforces HubSpot's limits: general requests per rolling window, searches a second.
        `other_searches`: searches another app of the account spends in every window, out of
        the same account-wide allowance."""
        self.general_limit, self.search_limit = general, search
        self.other_searches = other_searches
        self._general, self._searches = deque(), deque()

    def add_property(self, object_type: str, name: str, kind: str) -> None:
        self.properties[object_type][name] = kind

    def oauth_client(self, client_id: str, client_secret: str, refresh_token: str) -> None:
        self.clients[client_id] = client_secret
        self.refresh_tokens.add(refresh_token)

    def expire(self, token: str) -> None:
        """The access token stops working (it expired early, as HubSpot may revoke it)."""
        self.tokens[token] = time.time() - 1

    def seed(
        self,
        count: int,
        object_type: str = "contacts",
        *,
        modified: int | None = None,
        properties: dict[str, str | None] | None = None,
    ) -> list[int]:
        """Creates `count` objects fast; each modified at `modified` (ms) or one second apart
        from BASE_TIME. Returns their ids in order."""
        ids: list[int] = []
        modified_name = _MODIFIED.get(object_type, "hs_lastmodifieddate")
        with self._data:
            for _ in range(count):
                object_id = next(self._ids)
                at = modified if modified is not None else BASE_TIME + object_id * 1000
                props = self._sample(object_type, object_id)
                props.update(properties or {})
                props.update({"createdate": iso(BASE_TIME), modified_name: iso(at), "hs_object_id": str(object_id)})
                self.objects[object_type][object_id] = {
                    "id": object_id,
                    "properties": props,
                    "created": BASE_TIME,
                    "modified": at,
                    "archived_at": None,
                }
                ids.append(object_id)
        return ids

    def modify(self, object_type: str, ids: list[int], at: int | None = None, **values: str) -> None:
        at = at if at is not None else now_ms()
        with self._data:
            for object_id in ids:
                obj = self.objects[object_type][object_id]
                obj["modified"] = at
                obj["properties"].update(values)
                obj["properties"][_MODIFIED.get(object_type, "hs_lastmodifieddate")] = iso(at)

    def archive(self, object_type: str, ids: list[int], at: int | None = None) -> None:
        at = at if at is not None else now_ms()
        with self._data:
            for object_id in ids:
                self.objects[object_type][object_id]["archived_at"] = at

    def associate(self, from_type: str, from_id: int, to_type: str, to_id: int) -> None:
        with self._data:
            self.links.setdefault((from_type, to_type), {}).setdefault(from_id, []).append(to_id)
            self.links.setdefault((to_type, from_type), {}).setdefault(to_id, []).append(from_id)

    def add_owner(self, email: str, *, archived: bool = False) -> int:
        with self._data:
            owner_id = next(self._ids)
            self.owners[owner_id] = {
                "id": str(owner_id),
                "email": email,
                "firstName": email.split("@", maxsplit=1)[0].title(),
                "lastName": "Owner",
                "userId": owner_id * 10,
                "userIdIncludingInactive": owner_id * 10,
                "createdAt": iso(BASE_TIME),
                "updatedAt": iso(BASE_TIME),
                "archived": archived,
                "teams": [{"id": "1", "name": "Success", "primary": True}],
            }
            return owner_id

    @staticmethod
    def _sample(object_type: str, object_id: int) -> dict[str, str | None]:
        if object_type == "contacts":
            return {
                "email": f"user{object_id}@example.com",
                "firstname": f"First{object_id}",
                "lastname": "Example",
                "associatedcompanyid": None,
            }
        if object_type == "companies":
            return {"name": f"Company {object_id}", "domain": f"c{object_id}.example", "numberofemployees": "42"}
        if object_type == "deals":
            return {"dealname": f"Deal {object_id}", "dealstage": "closedwon", "amount": "1250.50", "closedate": None}
        return {"subject": f"Ticket {object_id}", "hs_pipeline_stage": "1", "hs_ticket_priority": "HIGH"}

    # ------------------------------------------------------------ auth and limits

    def _auth(self, seen: Seen) -> Reply | None:
        header = seen.headers.get("authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        if token is None or token not in self.tokens:
            return _error(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find"
                " more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                "INVALID_AUTHENTICATION",
            )
        expiry = self.tokens[token]
        if expiry is not None and expiry <= time.time():
            ago = int(time.time() - expiry)
            return _error(
                401, f"The OAuth token used to make this call expired {ago} second(s) ago.", "EXPIRED_AUTHENTICATION"
            )
        return None

    def _admit(self, seen: Seen, search: bool) -> Reply | None:
        """A 429 when a limit is spent (only after `limit_rates`); else counts the request."""
        with self._data:
            arrivals = self._searches if search else self._general
            limit, window = self.search_limit if search else self.general_limit
            if arrivals is None:
                return None
            while arrivals and seen.at - arrivals[0] >= window:
                arrivals.popleft()
            others = self.other_searches if search else 0
            if len(arrivals) + others >= limit:
                self._throttled += 1
                wait = max(1, math.ceil(window - (seen.at - arrivals[0]))) if arrivals else math.ceil(window)
                policy = "SECONDLY" if search else "TEN_SECONDLY_ROLLING"
                reply = _error(
                    429,
                    f"You have reached your {policy.lower()} limit.",
                    "RATE_LIMITS",
                    errorType="RATE_LIMIT",
                    policyName=policy,
                )
                reply.headers["Retry-After"] = str(wait)
                if not search:
                    reply.headers.update(self._rate_headers(0))
                return reply
            arrivals.append(seen.at)
            return None

    def _rate_headers(self, remaining: int | None = None) -> dict[str, str]:
        limit, window = self.general_limit
        if remaining is None:
            remaining = limit - (len(self._general) if self._general is not None else 0)
        return {
            "X-HubSpot-RateLimit-Daily": "250000",
            "X-HubSpot-RateLimit-Daily-Remaining": "249000",
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(window * 1000)),
            "X-HubSpot-RateLimit-Max": str(limit),
            "X-HubSpot-RateLimit-Remaining": str(max(0, remaining)),
        }

    def _guarded(self, seen: Seen, search: bool = False) -> Reply | None:
        return self._auth(seen) or self._admit(seen, search)

    def _ok(self, body: Any, status: int = 200) -> Reply:
        with self._data:
            headers = self._rate_headers()
        return Reply(status, body, headers)

    # ------------------------------------------------------------ rendering

    def _render(self, object_type: str, obj: dict[str, Any], wanted: list[str] | None) -> dict[str, Any]:
        props: dict[str, Any] = obj["properties"]
        defaults = ["createdate", _MODIFIED.get(object_type, "hs_lastmodifieddate"), "hs_object_id"]
        names = [*defaults, *(wanted or [])]
        out: dict[str, Any] = {
            "id": str(obj["id"]),
            "properties": {n: props.get(n) for n in names if n in self.properties[object_type]},
            "createdAt": iso(obj["created"]),
            "updatedAt": iso(obj["modified"]),
            "archived": obj["archived_at"] is not None,
        }
        if obj["archived_at"] is not None:
            out["archivedAt"] = iso(obj["archived_at"])
        return out

    # ------------------------------------------------------------ routes

    @route("POST", "/oauth/v1/token")
    def token(self, seen: Seen) -> Reply:
        form = {k: v[0] for k, v in parse_qs(seen.body.decode()).items()}
        if (
            form.get("grant_type") != "refresh_token"
            or self.clients.get(form.get("client_id", "")) != form.get("client_secret")
            or form.get("refresh_token") not in self.refresh_tokens
        ):
            return Reply(
                400,
                {
                    "status": "BAD_REFRESH_TOKEN",
                    "message": "missing or unknown refresh token",
                    "correlationId": secrets.token_hex(8),
                },
            )
        access = f"oauth-{secrets.token_hex(12)}"
        refresh = form["refresh_token"]
        with self._data:
            self.tokens[access] = time.time() + self.token_lifetime
            if self.rotate_refresh_tokens:
                self.refresh_tokens.discard(refresh)
                refresh = f"refresh-{secrets.token_hex(12)}"
                self.refresh_tokens.add(refresh)
        body = {"token_type": "bearer", "refresh_token": refresh, "access_token": access}
        return Reply(200, {**body, "expires_in": self.token_lifetime})

    @route("GET", r"/crm/v3/properties/(?P<object_type>\w+)")
    def list_properties(self, seen: Seen, object_type: str) -> Reply:
        if (refused := self._guarded(seen)) is not None:
            return refused
        if object_type not in self.properties:
            return _error(404, f"Unable to infer object type from: {object_type}", "OBJECT_NOT_FOUND")
        results = [
            {
                "name": name,
                "label": name.replace("_", " ").title(),
                "type": kind,
                "fieldType": {"number": "number", "datetime": "date", "bool": "booleancheckbox"}.get(kind, "text"),
                "description": "",
                "groupName": f"{object_type[:-1]}information",
                "options": [],
                "displayOrder": -1,
                "calculated": False,
                "externalOptions": False,
                "hasUniqueValue": name == "hs_object_id",
                "hidden": False,
                "hubspotDefined": name in _DEFAULT_PROPERTIES.get(object_type, {}),
                "modificationMetadata": {"archivable": True, "readOnlyDefinition": True, "readOnlyValue": False},
                "formField": True,
                "createdAt": iso(BASE_TIME),
                "updatedAt": iso(BASE_TIME),
                "archived": False,
            }
            for name, kind in self.properties[object_type].items()
        ]
        return self._ok({"results": results})

    @route("GET", r"/crm/v3/objects/(?P<object_type>\w+)")
    def list_objects(self, seen: Seen, object_type: str) -> Reply:
        if (refused := self._guarded(seen)) is not None:
            return refused
        if object_type not in self.objects:
            return _error(400, f"Unable to infer object type from: {object_type}", "VALIDATION_ERROR")
        limit = int(seen.param("limit", "10") or 10)
        if not 1 <= limit <= 100:
            return _error(400, "limit must be between 1 and 100", "VALIDATION_ERROR")
        archived = (seen.param("archived", "false") or "").lower() == "true"
        after = int(seen.param("after", "0") or 0)
        wanted = [p for value in seen.query.get("properties", []) for p in value.split(",") if p]
        with self._data:
            matching = sorted(
                (
                    o
                    for i, o in self.objects[object_type].items()
                    if i >= after and (o["archived_at"] is not None) == archived
                ),
                key=lambda o: o["id"],
            )[: limit + 1]
            results = [self._render(object_type, o, wanted) for o in matching[:limit]]
        body: dict[str, Any] = {"results": results}
        if len(matching) > limit:
            nxt = str(matching[limit]["id"])
            body["paging"] = {"next": {"after": nxt, "link": f"{self.url}{seen.path}?after={nxt}"}}
        return self._ok(body)

    @route("GET", r"/crm/v3/objects/(?P<object_type>\w+)/(?P<object_id>\d+)")
    def get_object(self, seen: Seen, object_type: str, object_id: str) -> Reply:
        if (refused := self._guarded(seen)) is not None:
            return refused
        wanted = [p for value in seen.query.get("properties", []) for p in value.split(",") if p]
        archived = (seen.param("archived", "false") or "").lower() == "true"
        with self._data:
            obj = self.objects.get(object_type, {}).get(int(object_id))
            found = obj is not None and (obj["archived_at"] is not None) == archived
            rendered = self._render(object_type, obj, wanted) if obj is not None and found else None
        if rendered is None:
            return _error(404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND")
        return self._ok(rendered)

    @route("POST", r"/crm/v3/objects/(?P<object_type>\w+)/search")
    def search(self, seen: Seen, object_type: str) -> Reply:
        if (refused := self._guarded(seen, search=True)) is not None:
            return refused
        request = seen.json() or {}
        limit = int(request.get("limit", 10))
        after = int(request.get("after") or 0)
        sorts = request.get("sorts") or []
        if not 1 <= limit <= 200 or len(sorts) > 1:
            return _error(400, "There was a problem with the request.", "VALIDATION_ERROR")
        if after >= SEARCH_CAP:
            return _error(400, "There was a problem with the request.", "VALIDATION_ERROR")
        kinds = self.properties[object_type]
        groups = request.get("filterGroups") or []
        with self._data:
            live = [o for o in self.objects[object_type].values() if o["archived_at"] is None]
            matching = [o for o in live if not groups or any(self._matches(o, g, kinds) for g in groups)]
            if sorts:
                name, descending = sorts[0]["propertyName"], sorts[0].get("direction") == "DESCENDING"
                # Ties come back in no defined order, as in HubSpot: here, by a hash of the id.
                matching.sort(key=lambda o: (self._value(o, name, kinds), hash((o["id"], 7919))), reverse=descending)
            else:
                matching.sort(key=lambda o: o["id"])
            chunk = matching[after : after + limit]
            results = [self._render(object_type, o, request.get("properties")) for o in chunk]
        body: dict[str, Any] = {"total": len(matching), "results": results}
        if after + limit < len(matching):
            body["paging"] = {"next": {"after": str(after + limit)}}
        return Reply(200, body)

    def _value(self, obj: dict[str, Any], name: str, kinds: dict[str, str]) -> Any:
        if name == "hs_object_id":
            return obj["id"]
        raw = obj["properties"].get(name)
        kind = kinds.get(name)
        if raw is None:
            return -math.inf if kind in ("number", "datetime") else ""
        if kind == "number":
            return float(raw)
        if kind == "datetime":
            return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() * 1000
        return raw

    def _matches(self, obj: dict[str, Any], group: dict[str, Any], kinds: dict[str, str]) -> bool:
        for f in group.get("filters", []):
            name, op = f["propertyName"], f["operator"]
            have = self._value(obj, name, kinds)
            raw = f.get("value")
            want: Any = raw
            if kinds.get(name) in ("number", "datetime"):
                want = (
                    float(raw)
                    if str(raw).lstrip("-").replace(".", "", 1).isdigit()
                    else self._value({"id": 0, "properties": {name: raw}}, name, kinds)
                )
            ok = {
                "EQ": have == want,
                "NEQ": have != want,
                "GT": have > want,
                "GTE": have >= want,
                "LT": have < want,
                "LTE": have <= want,
                "HAS_PROPERTY": obj["properties"].get(name) is not None,
            }.get(op)
            if not ok:
                return False
        return True

    @route("POST", r"/crm/v4/associations/(?P<from_type>\w+)/(?P<to_type>\w+)/batch/read")
    def read_associations(self, seen: Seen, from_type: str, to_type: str) -> Reply:
        if (refused := self._guarded(seen)) is not None:
            return refused
        inputs = (seen.json() or {}).get("inputs", [])
        if len(inputs) > 1000:
            return _error(400, "Batch read limit exceeded: at most 1000 inputs", "VALIDATION_ERROR")
        per_id = 500
        results, errors = [], []
        with self._data:
            links = self.links.get((from_type, to_type), {})
            for item in inputs:
                targets = links.get(int(item["id"]), [])
                start = int(item.get("after") or 0)
                if not targets:
                    errors.append(
                        {
                            "status": "error",
                            "category": "OBJECT_NOT_FOUND",
                            "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                            "message": f"No {to_type} is associated with {from_type} {item['id']}.",
                            "context": {"fromObjectId": [item["id"]]},
                        }
                    )
                    continue
                result: dict[str, Any] = {
                    "from": {"id": str(item["id"])},
                    "to": [
                        {
                            "toObjectId": t,
                            "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 1, "label": None}],
                        }
                        for t in targets[start : start + per_id]
                    ],
                }
                if start + per_id < len(targets):
                    result["paging"] = {"next": {"after": str(start + per_id)}}
                results.append(result)
        stamp = iso(now_ms())
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": stamp, "completedAt": stamp}
        if errors:
            body.update(numErrors=len(errors), errors=errors)
        return self._ok(body, 207 if errors else 200)

    @route("GET", "/crm/v3/owners/?")
    def list_owners(self, seen: Seen) -> Reply:
        if (refused := self._guarded(seen)) is not None:
            return refused
        limit = int(seen.param("limit", "100") or 100)
        if not 1 <= limit <= 500:
            return _error(400, "limit must be between 1 and 500", "VALIDATION_ERROR")
        archived = (seen.param("archived", "false") or "").lower() == "true"
        after = int(seen.param("after", "0") or 0)
        with self._data:
            matching = [o for i, o in sorted(self.owners.items()) if i >= after and o["archived"] == archived]
        body: dict[str, Any] = {"results": matching[:limit]}
        if len(matching) > limit:
            body["paging"] = {"next": {"after": matching[limit]["id"]}}
        return self._ok(body)
