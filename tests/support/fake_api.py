"""A local HTTP server on 127.0.0.1 to build provider fakes on.

A provider fake subclasses `FakeApi`, registers its routes with `@route`, and reproduces the
provider's documented response shapes and paging. The base adds what every connector test
needs: a fixed response latency, a log of every request with its arrival time, injected faults
(`fail_next`: a 5xx burst, a 401, a 429 with Retry-After) and a request-rate limit that answers
429 the way the provider documents it.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

Handler = Callable[..., "Reply"]


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes sent as is
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it."""

    at: float  # time.monotonic()
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode())

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class _Fault:
    remaining: int
    reply: Reply
    match: Callable[[Seen], bool] | None


@dataclass
class _RateLimit:
    limit: int
    window: float
    reply: Callable[[float], Reply]
    arrivals: deque[float] = field(default_factory=deque)


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Marks a FakeApi method as the handler of `method` on paths matching `pattern` (full
    match); named groups are passed as keyword arguments, after the Seen request."""

    def mark(fn: Handler) -> Handler:
        fn.__dict__.setdefault("_routes", []).append((method.upper(), re.compile(pattern)))
        return fn

    return mark


class FakeApi:
    def __init__(self, *, latency: float = 0.0) -> None:
        self.latency = latency
        self.requests: list[Seen] = []
        self._faults: list[_Fault] = []
        self._limits: list[_RateLimit] = []
        self._lock = threading.Lock()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        for name in dir(type(self)):
            member = getattr(type(self), name, None)
            for method, pattern in getattr(member, "_routes", ()):
                self._routes.append((method, pattern, getattr(self, name)))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._scheme = "http"

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host}:{port}"

    def serve_tls(self, cert_file: Path, key_file: Path) -> FakeApi:
        """Serves HTTPS with this certificate (before `start`)."""
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._scheme = "https"
        return self

    def start(self) -> FakeApi:
        self._thread = threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ behaviour

    def fail_next(
        self,
        count: int,
        status: int = 503,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        match: Callable[[Seen], bool] | None = None,
    ) -> None:
        """The next `count` requests (that `match`) get this reply instead of their answer."""
        with self._lock:
            self._faults.append(_Fault(count, Reply(status, body, headers or {}), match))

    def limit_rate(self, limit: int, window: float, reply: Callable[[float], Reply] | None = None) -> None:
        """At most `limit` requests per sliding `window` seconds; beyond it, `reply(retry_after)`
        (default: 429 with Retry-After in whole seconds)."""

        def default(retry_after: float) -> Reply:
            return Reply(429, {"error": "rate limited"}, {"Retry-After": str(max(1, round(retry_after)))})

        with self._lock:
            self._limits.append(_RateLimit(limit, window, reply or default))

    def seen(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and (path is None or re.fullmatch(path, r.path))
            ]

    def throttled(self) -> int:
        """How many requests this fake answered 429."""
        return self._throttled

    _throttled = 0

    # ------------------------------------------------------------ serving

    def _answer(self, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
            for fault in self._faults:
                if fault.remaining > 0 and (fault.match is None or fault.match(seen)):
                    fault.remaining -= 1
                    return fault.reply
            for rate in self._limits:
                while rate.arrivals and seen.at - rate.arrivals[0] >= rate.window:
                    rate.arrivals.popleft()
                if len(rate.arrivals) >= rate.limit:
                    self._throttled += 1
                    return rate.reply(rate.window - (seen.at - rate.arrivals[0]))
                rate.arrivals.append(seen.at)
        for method, pattern, handler in self._routes:
            if method == seen.method and (matched := pattern.fullmatch(seen.path)):
                return handler(seen, **matched.groupdict())
        return Reply(404, {"error": f"no route for {seen.method} {seen.path}"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms Nagle delay

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                seen = Seen(
                    at=time.monotonic(),
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                if fake.latency:
                    time.sleep(fake.latency)
                try:
                    reply = fake._answer(seen)
                except Exception as exc:  # a fake's bug shows as a 500 with its message
                    reply = Reply(500, {"error": f"fake failed: {exc!r}"})
                payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                headers = {"Content-Type": "application/json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return _Handler


def request_gaps(requests: list[Seen]) -> Iterator[float]:
    """Seconds between consecutive requests, for asserting a client's pacing."""
    for before, after in itertools.pairwise(requests):
        yield after.at - before.at
