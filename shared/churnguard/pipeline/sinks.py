"""Sinks: where finished parts go. The S3 data lake always; the ChurnGuard Analytics API optionally.

A part is one batch of one stream, named deterministically by (batch id, entity, sequence):
writing the same part again, after a crash or a retried task, overwrites it rather than adding a
copy. Records land at

    org=<org>/provider=<provider>/entity=<entity>/dt=<YYYY-MM-DD>/<batch_id>-<seq>.jsonl.gz

and rejects (records that failed validation, with the reason and the raw row) at the same path
under `rejects/`. Objects are gzip-compressed JSON lines; level 1, because compression is the
costliest step per row and level 1 already shrinks record JSON several times.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, Protocol

from pydantic import SecretStr

from churnguard.errors import ChurnGuardError
from churnguard.resilience import RetryableError, RetryPolicy, is_retryable

REJECTS_AREA = "rejects/"
GZIP_LEVEL = 1


class SinkError(ChurnGuardError):
    """A sink refused a part for a reason retrying will not fix."""

    status_code = 502
    code = "sink_error"


@dataclass(frozen=True)
class PartKey:
    organization_id: str
    provider: str
    entity: str
    day: str  # YYYY-MM-DD of the batch's start, so a retry on another day writes the same key
    batch_id: str
    seq: int
    # The sync stream that wrote it, where several streams write one entity (part numbers are
    # per stream): part of the name, so their parts never share a key.
    stream: str | None = None

    def path(self, area: str = "") -> str:
        name = self.batch_id if self.stream is None else f"{self.batch_id}-{self.stream}"
        return (
            f"{area}org={self.organization_id}/provider={self.provider}/entity={self.entity}"
            f"/dt={self.day}/{name}-{self.seq:06d}.jsonl.gz"
        )


@dataclass(frozen=True)
class Part:
    key: PartKey
    records: bytes  # JSON lines, each ending in a newline
    record_count: int
    rejects: bytes
    reject_count: int


class Sink(Protocol):
    def write(self, part: Part) -> None:
        """Stores the part durably, replacing anything stored under its key before."""

    def discard(self, key: PartKey) -> None:
        """Removes what an interrupted attempt may have left under `key`."""


def gzip_bytes(payload: bytes, level: int = GZIP_LEVEL) -> bytes:
    return zlib.compress(payload, level, wbits=31)


_S3_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
    }
)


def aws_error_is_transient(exc: BaseException) -> bool:
    """Throttling, 5xx and connection trouble from botocore; anything marked retryable."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(exc, ConnectionError | HTTPClientError):
        return True
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code") in _S3_TRANSIENT_CODES or status >= 500
    return is_retryable(exc)


class S3DataLakeSink:
    def __init__(self, s3: Any, bucket: str, retry: RetryPolicy, *, level: int = GZIP_LEVEL) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._retry = retry
        self._level = level

    def write(self, part: Part) -> None:
        self._store(part.key.path(), part.records, part.record_count)
        self._store(part.key.path(REJECTS_AREA), part.rejects, part.reject_count)

    def discard(self, key: PartKey) -> None:
        for path in (key.path(), key.path(REJECTS_AREA)):
            self._call(partial(self._s3.delete_object, Bucket=self._bucket, Key=path))

    def _store(self, path: str, payload: bytes, count: int) -> None:
        if not count:
            # A retried part may hold fewer records than the attempt it replaces.
            self._call(lambda: self._s3.delete_object(Bucket=self._bucket, Key=path))
            return
        body = gzip_bytes(payload, self._level)
        self._call(
            lambda: self._s3.put_object(
                Bucket=self._bucket,
                Key=path,
                Body=body,
                ContentType="application/x-ndjson",
                ContentEncoding="gzip",
                Metadata={"records": str(count)},
            )
        )

    def _call(self, fn: Callable[[], Any]) -> None:
        self._retry.call(fn, retryable=aws_error_is_transient)


def retry_after_seconds(header: str | None, now: float) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        return max(0.0, parsedate_to_datetime(header).timestamp() - now)
    except (TypeError, ValueError):
        return None


class AnalyticsApiSink:
    """POSTs records to the ChurnGuard Analytics API in batches of gzip JSON lines.

    `POST {endpoint}` with `Authorization: Bearer <token>`, `Content-Type: application/x-ndjson`,
    `Content-Encoding: gzip` and an `Idempotency-Key` naming the part and chunk, so the API can
    drop a batch it already took; every record also carries its dedupe_key. 408, 425, 429 and 5xx
    answers and connection errors are retried by the shared policy, honouring Retry-After; other
    4xx answers fail the part. Rejects stay in the lake only.
    """

    _RETRY_STATUSES = frozenset({408, 425, 429})

    def __init__(
        self,
        endpoint: str,
        token: SecretStr,
        retry: RetryPolicy,
        *,
        batch_records: int = 500,
        timeout: float = 10.0,
        session: Any = None,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        import requests

        self._endpoint = endpoint
        self._token = token
        self._retry = retry
        self._batch_records = batch_records
        self._timeout = timeout
        self._session = session or requests.Session()
        self._now = wall_clock or time.time

    def write(self, part: Part) -> None:
        lines = part.records.splitlines(keepends=True)
        for index in range(0, len(lines), self._batch_records):
            body = gzip_bytes(b"".join(lines[index : index + self._batch_records]))
            idempotency_key = f"{part.key.path()}#{index // self._batch_records}"
            self._retry.call(partial(self._post, body, idempotency_key))

    def discard(self, key: PartKey) -> None:
        """Nothing to remove: the API keeps what it took, and drops repeats by idempotency key."""

    def _post(self, body: bytes, idempotency_key: str) -> None:
        import requests

        try:
            response = self._session.post(
                self._endpoint,
                data=body,
                headers={
                    "Authorization": f"Bearer {self._token.get_secret_value()}",
                    "Content-Type": "application/x-ndjson",
                    "Content-Encoding": "gzip",
                    "Idempotency-Key": idempotency_key,
                },
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise RetryableError(f"the Analytics API could not be reached ({type(exc).__name__})") from None
        status = response.status_code
        if status < 300:
            return
        if status in self._RETRY_STATUSES or status >= 500:
            raise RetryableError(
                f"the Analytics API answered {status}",
                retry_after=retry_after_seconds(response.headers.get("Retry-After"), self._now()),
            )
        raise SinkError(f"the Analytics API refused a batch with status {status}", {"status": status})
