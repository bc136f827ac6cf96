"""A Salesforce org on 127.0.0.1, for the connector's tests and the SaaS benchmark.

It reproduces the documented shapes the connector and simple-salesforce rely on:
- OAuth2 refresh at /services/oauth2/token (the token answer carries `instance_url`; a bad
  refresh token is `400 {"error": "invalid_grant", …}`); an unknown or expired bearer token is
  `401 [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]`;
- `sobjects/<name>/describe` (`name`, `queryable`, `fields` with `name`, `type`, `nillable`);
- `query` / `queryAll` with `Sforce-Query-Options: batchSize=N` (200…2000, and `batch_cap` to
  make pages smaller with little data, as Salesforce may), `totalSize`, `done`,
  `nextRecordsUrl` and `records` carrying `attributes`; queryAll also returns deleted rows
  (`IsDeleted: true`);
- Bulk API 2.0 query jobs: create (`UploadComplete`), poll (`InProgress` for `bulk_polls` polls,
  then `JobComplete`), results as CSV with `Sforce-Locator` (`null` at the end) and
  `Sforce-NumberOfRecords`; rows come in no particular order, as Bulk API 2.0 has no ORDER BY;
- `Sforce-Limit-Info: api-usage=N/M` on every API answer, and `403 REQUEST_LIMIT_EXCEEDED`
  (TotalRequests) past the daily limit.

SOQL is a tiny subset: exactly the statements the connector issues (a field list, one object, the
(cursor, Id) keyset predicates, `ORDER BY <cursor> ASC, Id ASC` or `ORDER BY Id ASC`).
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.fake_api import FakeApi, Reply, Seen, route

VERSION = "59.0"
BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)
_V = r"/services/data/v(?P<version>[0-9]+\.[0-9])"
_SELECT = re.compile(
    r"^SELECT (?P<fields>.+?) FROM (?P<object>\w+)(?: WHERE (?P<where>.+?))?(?: ORDER BY (?P<order>.+))?$"
)
_AFTER = re.compile(r"^(\w+) > (\S+) OR \(\1 = \2 AND Id > '(\w+)'\)$")
_SINCE = re.compile(r"^(\w+) >= (\S+)$")
_ID_AFTER = re.compile(r"^Id > '(\w+)'$")

# name → (key prefix, [(field, describe type, nillable)]); every object also gets the audit fields.
OBJECTS: dict[str, tuple[str, list[tuple[str, str, bool]]]] = {
    "Account": (
        "001",
        [
            ("Name", "string", False),
            ("Industry", "picklist", True),
            ("AnnualRevenue", "currency", True),
            ("NumberOfEmployees", "int", True),
            ("BillingCity", "string", True),
            ("BillingAddress", "address", True),
            ("Churn_Score__c", "double", True),
            ("Is_Strategic__c", "boolean", False),
            ("Renewal_Date__c", "date", True),
        ],
    ),
    "Contact": (
        "003",
        [
            ("AccountId", "reference", True),
            ("Email", "email", True),
            ("FirstName", "string", True),
            ("LastName", "string", False),
            ("MailingAddress", "address", True),
        ],
    ),
    "Lead": ("00Q", [("Email", "email", True), ("Company", "string", False), ("Status", "picklist", False)]),
    "Opportunity": (
        "006",
        [
            ("AccountId", "reference", True),
            ("Name", "string", False),
            ("StageName", "picklist", False),
            ("Amount", "currency", True),
            ("CloseDate", "date", False),
        ],
    ),
    "Case": (
        "500",
        [
            ("AccountId", "reference", True),
            ("Subject", "string", True),
            ("Status", "picklist", True),
            ("Priority", "picklist", True),
        ],
    ),
    "Task": ("00T", [("WhatId", "reference", True), ("Subject", "string", True), ("Status", "picklist", False)]),
    "Churn_Risk__c": (
        "a01",
        [("Name", "string", False), ("Account__c", "reference", True), ("Score__c", "double", True)],
    ),
}
_AUDIT = [
    ("Id", "id", False),
    ("IsDeleted", "boolean", False),
    ("CreatedDate", "datetime", False),
    ("LastModifiedDate", "datetime", False),
    ("SystemModstamp", "datetime", False),
]


@dataclass
class _Job:
    id: str
    operation: str
    object: str
    created: datetime
    fields: list[str]
    rows: list[dict[str, Any]]
    polls_left: int


@dataclass
class _Org:
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {name: {} for name in OBJECTS})
    counters: dict[str, itertools.count[int]] = field(
        default_factory=lambda: {name: itertools.count(1) for name in OBJECTS}
    )


def salesforce_time(value: datetime) -> str:
    """A datetime as the REST API writes it."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _bulk_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _soql_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


class FakeSalesforce(FakeApi):
    def __init__(
        self,
        *,
        latency: float = 0.0,
        batch_cap: int = 2_000,
        api_limit: int = 1_000_000,
        bulk_polls: int = 2,
        client_id: str = "cg-connected-app",
    ) -> None:
        super().__init__(latency=latency)
        self.batch_cap = batch_cap
        self.api_limit = api_limit
        self.api_used = 0
        self.bulk_polls = bulk_polls
        self.bulk_unsupported: set[str] = set()
        self.client_id = client_id
        self.tokens: set[str] = {"access-0"}
        self.refresh_tokens: set[str] = {"refresh-0"}
        self.org = _Org()
        self.clock = BASE_TIME
        self.jobs: dict[str, _Job] = {}
        self.soql: list[str] = []
        self._cursors: dict[str, tuple[list[dict[str, Any]], int]] = {}
        self._serial = itertools.count(1)
        # Records of saves not committed yet: stamped, invisible to every query until `commit`.
        self.uncommitted: set[str] = set()

    # ------------------------------------------------------------ data

    def seed(self, count: int, sobject: str = "Account", *, per_timestamp: int = 3) -> list[str]:
        """Creates `count` records; every `per_timestamp` consecutive ones share a SystemModstamp."""
        prefix, fields = OBJECTS[sobject]
        ids = []
        for index in range(count):
            number = next(self.org.counters[sobject])
            stamp = self.clock + timedelta(seconds=index // per_timestamp)
            record: dict[str, Any] = {
                "Id": f"{prefix}{number:012d}AAA",
                "IsDeleted": False,
                "CreatedDate": stamp,
                "LastModifiedDate": stamp,
                "SystemModstamp": stamp,
            }
            for name, kind, _nillable in fields:
                record[name] = _value(name, kind, number)
            self.org.records[sobject][record["Id"]] = record
            ids.append(record["Id"])
        if count:
            self.clock += timedelta(seconds=(count - 1) // per_timestamp + 1)
        return ids

    def _tick(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def update(self, sobject: str, record_id: str, **values: Any) -> None:
        record = self.org.records[sobject][record_id]
        record.update(values)
        record["LastModifiedDate"] = record["SystemModstamp"] = self._tick()

    def start_save(self, sobject: str = "Account") -> str:
        """A new record in a transaction that has not committed: Salesforce stamps SystemModstamp
        when the save starts, and the record is visible only once the transaction commits."""
        (record_id,) = self.seed(1, sobject)
        self.uncommitted.add(record_id)
        return record_id

    def commit(self, record_id: str) -> None:
        self.uncommitted.discard(record_id)

    def delete(self, sobject: str, record_id: str) -> None:
        """Moves the record to the recycle bin: only queryAll still returns it, with IsDeleted."""
        self.update(sobject, record_id, IsDeleted=True)

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def expire_jobs(self) -> None:
        self.jobs.clear()

    # ------------------------------------------------------------ plumbing

    def _api(self, seen: Seen, answer: Any) -> Reply:
        """Authenticates, counts the request against the daily limit, answers with usage."""
        auth = seen.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.tokens:
            return Reply(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
        self.api_used += 1
        usage = {"Sforce-Limit-Info": f"api-usage={self.api_used}/{self.api_limit}"}
        if self.api_used > self.api_limit:
            body = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
            return Reply(403, body, usage)
        reply = answer()
        reply.headers.update(usage)
        return reply

    @staticmethod
    def _error(status: int, code: str, message: str) -> Reply:
        return Reply(status, [{"message": message, "errorCode": code}])

    # ------------------------------------------------------------ OAuth2

    @route("POST", r"/services/oauth2/token")
    def token(self, seen: Seen) -> Reply:
        form = {k: v[0] for k, v in seen.form().items()}
        if (
            form.get("grant_type") != "refresh_token"
            or form.get("refresh_token") not in self.refresh_tokens
            or form.get("client_id") != self.client_id
        ):
            return Reply(400, {"error": "invalid_grant", "error_description": "expired access/refresh token"})
        access = f"access-{next(self._serial)}"
        self.tokens.add(access)
        return Reply(
            200,
            {
                "access_token": access,
                "signature": "c2lnbmF0dXJl",
                "scope": "api refresh_token",
                "instance_url": self.url,
                "id": f"{self.url}/id/00D000000000001AAA/005000000000001AAA",
                "token_type": "Bearer",
                "issued_at": "1704067200000",
            },
        )

    # ------------------------------------------------------------ REST

    @route("GET", _V + r"/limits/?")
    def limits(self, seen: Seen, version: str) -> Reply:
        return self._api(
            seen,
            lambda: Reply(
                200, {"DailyApiRequests": {"Max": self.api_limit, "Remaining": self.api_limit - self.api_used}}
            ),
        )

    @route("GET", _V + r"/sobjects/(?P<name>\w+)/describe/?")
    def describe(self, seen: Seen, version: str, name: str) -> Reply:
        def answer() -> Reply:
            if name not in OBJECTS:
                return self._error(404, "NOT_FOUND", "The requested resource does not exist")
            _prefix, fields = OBJECTS[name]
            described = [
                {"name": f, "type": kind, "nillable": nillable, "label": f} for f, kind, nillable in [*_AUDIT, *fields]
            ]
            return Reply(200, {"name": name, "queryable": True, "custom": name.endswith("__c"), "fields": described})

        return self._api(seen, answer)

    @route("GET", _V + r"/(?P<kind>query|queryAll)/?")
    def query(self, seen: Seen, version: str, kind: str) -> Reply:
        def answer() -> Reply:
            soql = seen.param("q") or ""
            self.soql.append(soql)
            parsed = self._select(soql, include_deleted=kind == "queryAll", ordered=True)
            if isinstance(parsed, Reply):
                return parsed
            sobject, fields, rows = parsed
            records = [self._rest_record(sobject, fields, row) for row in rows]
            locator = f"01gFAKE{next(self._serial):08d}"
            self._cursors[locator] = (records, self._batch(seen))
            return self._page(version, locator, 0)

        return self._api(seen, answer)

    @route("GET", _V + r"/(?P<kind>query|queryAll)/(?P<locator>01g\w+)-(?P<offset>[0-9]+)")
    def query_more(self, seen: Seen, version: str, kind: str, locator: str, offset: str) -> Reply:
        def answer() -> Reply:
            if locator not in self._cursors:
                return self._error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            return self._page(version, locator, int(offset))

        return self._api(seen, answer)

    def _batch(self, seen: Seen) -> int:
        options = seen.headers.get("sforce-query-options", "")
        matched = re.search(r"batchSize=([0-9]+)", options)
        size = int(matched[1]) if matched else 2_000
        return min(max(size, 200), 2_000, self.batch_cap)

    def _page(self, version: str, locator: str, offset: int) -> Reply:
        records, size = self._cursors[locator]
        end = offset + size
        body: dict[str, Any] = {"totalSize": len(records), "done": end >= len(records), "records": records[offset:end]}
        if end < len(records):
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{end}"
        return Reply(200, body)

    @staticmethod
    def _rest_record(sobject: str, fields: list[str], row: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {
            "attributes": {"type": sobject, "url": f"/services/data/v{VERSION}/sobjects/{sobject}/{row['Id']}"}
        }
        for name in fields:
            value = row.get(name)
            record[name] = salesforce_time(value) if isinstance(value, datetime) else value
        return record

    def _select(
        self, soql: str, *, include_deleted: bool, ordered: bool
    ) -> Reply | tuple[str, list[str], list[dict[str, Any]]]:
        matched = _SELECT.match(soql)
        if matched is None or matched["object"] not in OBJECTS:
            return self._error(400, "MALFORMED_QUERY", "unexpected token")
        sobject = matched["object"]
        fields = [f.strip() for f in matched["fields"].split(",")]
        known = {f for f, _kind, _nillable in [*_AUDIT, *OBJECTS[sobject][1]]}
        if any(f not in known for f in fields):
            return self._error(400, "INVALID_FIELD", "No such column on entity")
        if any(kind == "address" for f, kind, _n in OBJECTS[sobject][1] if f in fields):
            return self._error(400, "INVALID_FIELD", "compound fields cannot be queried here")
        keep = self._predicate(matched["where"])
        if keep is None:
            return self._error(400, "MALFORMED_QUERY", "unexpected token in WHERE")
        rows = [
            r
            for r in self.org.records[sobject].values()
            if (include_deleted or not r["IsDeleted"]) and r["Id"] not in self.uncommitted and keep(r)
        ]
        order = matched["order"]
        if order is None:
            if ordered:
                rows.sort(key=lambda r: r["Id"])
            else:  # Bulk API 2.0: no order at all
                rows.sort(key=lambda r: r["Id"][::-1])
        elif (by := re.fullmatch(r"(\w+) ASC, Id ASC", order)) is not None:
            rows.sort(key=lambda r: (r[by[1]], r["Id"]))
        elif order == "Id ASC":
            rows.sort(key=lambda r: r["Id"])
        else:
            return self._error(400, "MALFORMED_QUERY", "unexpected ORDER BY")
        return sobject, fields, rows

    @staticmethod
    def _predicate(where: str | None) -> Any:
        if where is None:
            return lambda row: True
        if (m := _AFTER.match(where)) is not None:
            column, at, last = m[1], _soql_time(m[2]), m[3]
            return lambda row: row[column] > at or (row[column] == at and row["Id"] > last)
        if (m := _SINCE.match(where)) is not None:
            column, since = m[1], _soql_time(m[2])
            return lambda row: row[column] >= since
        if (m := _ID_AFTER.match(where)) is not None:
            last = m[1]
            return lambda row: row["Id"] > last
        return None

    # ------------------------------------------------------------ Bulk API 2.0

    @route("POST", _V + r"/jobs/query/?")
    def create_job(self, seen: Seen, version: str) -> Reply:
        def answer() -> Reply:
            request = seen.json()
            soql = request.get("query", "")
            self.soql.append(soql)
            if " ORDER BY " in soql:
                return self._error(400, "INVALIDJOB", "ORDER BY is not supported by Bulk API 2.0 query jobs")
            parsed = self._select(soql, include_deleted=request.get("operation") == "queryAll", ordered=False)
            if isinstance(parsed, Reply):
                return parsed
            sobject, fields, rows = parsed
            if sobject in self.bulk_unsupported:
                return self._error(400, "INVALIDENTITY", f"Entity '{sobject}' is not supported by the Bulk API.")
            job = _Job(
                id=f"750FAKE{next(self._serial):08d}",
                operation=request["operation"],
                object=sobject,
                created=self._tick(),
                fields=fields,
                rows=rows,
                polls_left=self.bulk_polls,
            )
            self.jobs[job.id] = job
            return Reply(200, self._job_info(job, "UploadComplete"))

        return self._api(seen, answer)

    def _job_info(self, job: _Job, state: str) -> dict[str, Any]:
        return {
            "id": job.id,
            "operation": job.operation,
            "object": job.object,
            "createdById": "005000000000001AAA",
            "createdDate": salesforce_time(job.created),
            "systemModstamp": salesforce_time(job.created),
            "state": state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(VERSION),
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        }

    @route("GET", _V + r"/jobs/query/(?P<job_id>750\w+)")
    def get_job(self, seen: Seen, version: str, job_id: str) -> Reply:
        def answer() -> Reply:
            job = self.jobs.get(job_id)
            if job is None:
                return self._error(404, "NOT_FOUND", "The requested resource does not exist")
            if job.polls_left > 0:
                job.polls_left -= 1
                return Reply(200, self._job_info(job, "InProgress"))
            return Reply(200, {**self._job_info(job, "JobComplete"), "numberRecordsProcessed": len(job.rows)})

        return self._api(seen, answer)

    @route("GET", _V + r"/jobs/query/(?P<job_id>750\w+)/results")
    def job_results(self, seen: Seen, version: str, job_id: str) -> Reply:
        def answer() -> Reply:
            job = self.jobs.get(job_id)
            if job is None:
                return self._error(404, "NOT_FOUND", "The requested resource does not exist")
            offset = int(seen.param("locator") or "0", 36)
            size = int(seen.param("maxRecords") or "50000")
            chunk = job.rows[offset : offset + size]
            buffer = io.StringIO()
            writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
            writer.writerow(job.fields)
            for row in chunk:
                writer.writerow([_csv_value(row.get(name)) for name in job.fields])
            end = offset + len(chunk)
            locator = _base36(end) if end < len(job.rows) else "null"
            headers = {
                "Content-Type": "text/csv",
                "Sforce-Locator": locator,
                "Sforce-NumberOfRecords": str(len(chunk)),
            }
            return Reply(200, buffer.getvalue().encode(), headers)

        return self._api(seen, answer)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _bulk_time(value)
    return str(value)


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while number:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
    return text or "0"


def _value(name: str, kind: str, number: int) -> Any:
    """A plausible value of a describe type for record `number`."""
    samples: dict[str, Any] = {
        "address": None,
        "reference": None,
        "boolean": number % 2 == 0,
        "int": number * 10,
        "double": number * 1.5,
        "currency": number * 1.5,
        "date": f"2024-{number % 12 + 1:02d}-{number % 28 + 1:02d}",
        "email": f"user{number}@example.com",
        "picklist": ("New", "Working", "Closed")[number % 3],
    }
    if kind in samples:
        return samples[kind]
    return None if number % 5 == 0 and name.endswith("City") else f"{name} {number}"
