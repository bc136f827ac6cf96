"""Sinks against real endpoints: the Analytics API sink against an HTTP server started here on
127.0.0.1, and the S3 sink against moto."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from churnguard.pipeline.core import Batch, StreamContext, StreamPipeline
from churnguard.pipeline.sinks import AnalyticsApiSink, Part, PartKey, S3DataLakeSink, SinkError
from churnguard.resilience import RetryPolicy
from tests.support.sync import BUCKET

TOKEN = "analytics-token-0123456789abcdef"


class AnalyticsServer:
    """Records every request; answers from a script of statuses (then 202)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, headers = server.script.pop(0) if server.script else (202, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                """Quiet: the test reads `requests` instead."""

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/records"


@pytest.fixture
def analytics() -> Iterator[AnalyticsServer]:
    server = AnalyticsServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(timeout=5)


def make_part(rows: int, *, seq: int = 0, bad: int = 0) -> Part:
    pipeline = StreamPipeline(
        StreamContext("org_s", "int_s", "postgresql", "customer", "public.customers", "syn_test", ("id",), "updated_at")
    )
    batch = Batch()
    pipeline.process([{"id": i, "email": f"u{i}@example.com"} for i in range(rows)], batch)
    pipeline.process([{"id": None} for _ in range(bad)], batch)
    key = PartKey("org_s", "postgresql", "customer", "2024-05-01", "syn_test", seq)
    return Part(key, batch.payload(), batch.accepted, batch.rejects_payload(), batch.rejected)


def test_analytics_sink_batches_authenticates_and_retries(analytics: AnalyticsServer) -> None:
    sleeps: list[float] = []
    retry = RetryPolicy(attempts=3, base_delay=1.0, sleep=sleeps.append)
    sink = AnalyticsApiSink(analytics.url, SecretStr(TOKEN), retry, batch_records=40)
    analytics.script = [(503, {"Retry-After": "7"}), (429, {})]

    sink.write(make_part(100))

    # 100 records in 3 batches; the first batch took three tries.
    assert len(analytics.requests) == 5
    assert sleeps[0] == 7.0 and 0.0 <= sleeps[1] <= 2.0
    first = analytics.requests[0]["headers"]
    assert first["Authorization"] == f"Bearer {TOKEN}"
    assert first["Content-Type"] == "application/x-ndjson" and first["Content-Encoding"] == "gzip"
    keys = [r["headers"]["Idempotency-Key"] for r in analytics.requests]
    assert keys[0] == keys[1] == keys[2] and len(set(keys)) == 3
    delivered = [json.loads(line) for r in analytics.requests[2:] for line in gzip.decompress(r["body"]).splitlines()]
    assert [r["record_id"] for r in delivered] == [str(i) for i in range(100)]


def test_analytics_sink_fails_on_a_refusal_without_retrying(analytics: AnalyticsServer) -> None:
    sink = AnalyticsApiSink(analytics.url, SecretStr(TOKEN), RetryPolicy(attempts=3, base_delay=0.0))
    analytics.script = [(400, {})]
    with pytest.raises(SinkError) as raised:
        sink.write(make_part(3))
    assert len(analytics.requests) == 1 and TOKEN not in str(raised.value) + str(raised.value.details)


def test_s3_sink_overwrites_a_retried_part_and_keeps_rejects_apart(lake: Any) -> None:
    sink = S3DataLakeSink(lake, BUCKET, RetryPolicy(attempts=0, base_delay=0.0))
    sink.write(make_part(10, bad=2))
    sink.write(make_part(6))  # the same key again, as a retried step writes it

    def objects(prefix: str) -> dict[str, bytes]:
        listed = lake.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        return {o["Key"]: lake.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}

    data = objects("org=")
    assert list(data) == ["org=org_s/provider=postgresql/entity=customer/dt=2024-05-01/syn_test-000000.jsonl.gz"]
    assert len(gzip.decompress(next(iter(data.values()))).splitlines()) == 6
    assert objects("rejects/") == {}  # the retry had no rejects, so the first attempt's are gone

    sink.write(make_part(1, bad=1))
    (rejects,) = objects("rejects/").values()
    (reject,) = [json.loads(line) for line in gzip.decompress(rejects).splitlines()]
    assert reject["reason"] == "primary key is null or missing" and reject["raw"] == {"id": None}
