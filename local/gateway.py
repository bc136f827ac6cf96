"""API Gateway HTTP API emulation: routing, payload format 2.0 events and Lambda authorizers.

moto's API Gateway v2 is control-plane only, so requests are served here: each template HttpApi
gets a threaded HTTP server whose routes come from the functions' `HttpApi` events. Matching,
events, authorizer caching and the fixed gateway error responses follow what API Gateway does,
so handlers and their tests see the same traffic locally as in AWS.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.net import bind_listener
from local.runtime import Invocation

logger = logging.getLogger("local.gateway")

MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_CACHED_DECISIONS = 1024
DEFAULT_ROUTE = "$default"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TEXT_TYPES = frozenset(
    {"application/json", "application/xml", "application/x-www-form-urlencoded", "application/javascript"}
)
_RANK = {"literal": 3, "param": 2, "greedy": 1}
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

Invoker = Callable[[str, Any], Invocation]


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _json_response(status: int, message: str) -> HttpResponse:
    body = json.dumps({"message": message}).encode()
    return HttpResponse(status, [("Content-Type", "application/json")], body)


NOT_FOUND = _json_response(404, "Not Found")
UNAUTHORIZED = _json_response(401, "Unauthorized")
FORBIDDEN = _json_response(403, "Forbidden")
TOO_LARGE = _json_response(413, "Request Entity Too Large")
METHOD_NOT_ALLOWED = _json_response(405, "Method Not Allowed")
INTERNAL_ERROR = _json_response(500, "Internal Server Error")


@dataclass(frozen=True)
class Route:
    """One route of an HTTP API: `METHOD /path/{param}/{proxy+}` (or `$default`) -> a function."""

    method: str
    path: str
    function: str
    authorizer: str | None = None

    @property
    def route_key(self) -> str:
        return DEFAULT_ROUTE if self.path == DEFAULT_ROUTE else f"{self.method} {self.path}"

    @property
    def segments(self) -> list[tuple[str, str]]:
        parts = []
        for part in self.path.strip("/").split("/"):
            if part.startswith("{") and part.endswith("+}"):
                parts.append(("greedy", part[1:-2]))
            elif part.startswith("{") and part.endswith("}"):
                parts.append(("param", part[1:-1]))
            else:
                parts.append(("literal", part))
        return parts


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]


class RouteTable:
    """Selects a route as API Gateway does: the most specific path wins, then a method over ANY."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = list(routes)

    def methods(self, raw_path: str) -> list[str]:
        """The methods some route serves at `raw_path` (ANY: all API Gateway serves), for Allow."""
        requested = [unquote(part) for part in raw_path.lstrip("/").split("/")]
        found: set[str] = set()
        for route in self.routes:
            if route.path != DEFAULT_ROUTE and _match_segments(route.segments, requested) is not None:
                found.update(HTTP_METHODS if route.method == "ANY" else {route.method})
        return sorted(found)

    def match(self, method: str, raw_path: str) -> RouteMatch | None:
        requested = [unquote(part) for part in raw_path.lstrip("/").split("/")]
        best: tuple[tuple[tuple[int, ...], bool], RouteMatch] | None = None
        fallback: RouteMatch | None = None
        for route in self.routes:
            if route.path == DEFAULT_ROUTE:
                fallback = RouteMatch(route, {})
                continue
            if route.method not in ("ANY", method):
                continue
            parameters = _match_segments(route.segments, requested)
            if parameters is None:
                continue
            rank = (tuple(_RANK[kind] for kind, _ in route.segments), route.method != "ANY")
            if best is None or rank > best[0]:
                best = (rank, RouteMatch(route, parameters))
        return best[1] if best else fallback


def _match_segments(template: list[tuple[str, str]], requested: list[str]) -> dict[str, str] | None:
    parameters: dict[str, str] = {}
    for index, (kind, value) in enumerate(template):
        if kind == "greedy":
            rest = "/".join(requested[index:])
            if not rest:
                return None
            parameters[value] = rest
            return parameters
        if index >= len(requested):
            return None
        if kind == "literal":
            if requested[index] != value:
                return None
        elif not requested[index]:
            return None
        else:
            parameters[value] = requested[index]
    return parameters if len(requested) == len(template) else None


@dataclass(frozen=True)
class Authorizer:
    """A Lambda authorizer of an HTTP API, as configured by SAM's `Auth.Authorizers.<Name>`."""

    name: str
    function: str | None
    payload_version: str = "2.0"
    simple_responses: bool = False
    identity_headers: tuple[str, ...] = ("Authorization",)
    identity_query: tuple[str, ...] = ()
    ttl_seconds: int = 300
    problem: str | None = None

    @classmethod
    def from_sam(cls, name: str, config: dict[str, Any]) -> Authorizer:
        if "FunctionArn" not in config:
            return cls(name, None, problem=f"authorizer {name} is not a Lambda authorizer (JWT is not emulated)")
        identity = config.get("Identity")
        headers = ("Authorization",) if identity is None else tuple((identity or {}).get("Headers") or ())
        payload_version = str(config.get("AuthorizerPayloadFormatVersion", "2.0"))
        return cls(
            name=name,
            function=str(config["FunctionArn"]),
            payload_version=payload_version,
            simple_responses=_truthy(config.get("EnableSimpleResponses", False)),
            identity_headers=headers,
            identity_query=tuple((identity or {}).get("QueryStrings") or ()),
            ttl_seconds=int((identity or {}).get("ReauthorizeEvery", 300)),
            problem=None if payload_version == "2.0" else f"{name}: payload format {payload_version} is not emulated",
        )


@dataclass
class HttpApi:
    """What one gateway serves: its id, routes and authorizers."""

    logical_id: str
    api_id: str
    routes: RouteTable
    authorizers: dict[str, Authorizer] = field(default_factory=dict)


def build_http_api(
    logical_id: str, api_id: str, auth: dict[str, Any] | None, events: Iterable[tuple[str, dict[str, Any]]]
) -> HttpApi:
    """Builds an API from SAM's resolved `Auth` property and its functions' `HttpApi` events."""
    auth = auth or {}
    authorizers = {name: Authorizer.from_sam(name, config) for name, config in (auth.get("Authorizers") or {}).items()}
    default = auth.get("DefaultAuthorizer")
    routes = []
    for function, properties in events:
        path = str(properties.get("Path", DEFAULT_ROUTE))
        method = str(properties.get("Method", "ANY")).upper()
        chosen = (properties.get("Auth") or {}).get("Authorizer", default)
        if chosen in ("NONE", "AWS_IAM") or chosen is None:
            if chosen == "AWS_IAM":
                logger.warning("%s %s %s: IAM authorization is not emulated: route open", logical_id, method, path)
            chosen = None
        elif chosen not in authorizers:
            raise ValueError(f"{logical_id} {method} {path}: unknown authorizer {chosen}")
        if path == DEFAULT_ROUTE:
            method = "ANY"
        routes.append(Route(method=method, path=path, function=function, authorizer=chosen))
    return HttpApi(logical_id=logical_id, api_id=api_id, routes=RouteTable(routes), authorizers=authorizers)


@dataclass(frozen=True)
class HttpRequest:
    """An HTTP request as the gateway received it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"


class ApiGateway:
    """The request pipeline of one HTTP API: route, authorize, invoke, map the response."""

    def __init__(self, api: HttpApi, invoke: Invoker, *, region: str, account_id: str) -> None:
        self.api = api
        self._invoke = invoke
        self._region = region
        self._account_id = account_id
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[float, Any]] = {}
        self._cache_lock = threading.Lock()

    def handle(self, request: HttpRequest) -> HttpResponse:
        """Turns one HTTP request into the HTTP response API Gateway would send."""
        request_id = base64.b64encode(os.urandom(10)).decode()
        response = self._handle(request, request_id)
        return HttpResponse(response.status, [*response.headers, ("Apigw-Requestid", request_id)], response.body)

    def _handle(self, request: HttpRequest, request_id: str) -> HttpResponse:
        split = urlsplit(request.target)
        raw_path = split.path or "/"
        match = self.api.routes.match(request.method, raw_path)
        if match is None:
            return NOT_FOUND
        event = self.build_event(request, match, raw_path, split.query, request_id)
        if match.route.authorizer is not None:
            authorizer = self.api.authorizers[match.route.authorizer]
            outcome = self._authorize(authorizer, event)
            if isinstance(outcome, HttpResponse):
                return outcome
            event["requestContext"]["authorizer"] = outcome
        invocation = self._invoke(match.route.function, event)
        if invocation.errored:
            return INTERNAL_ERROR
        return to_http_response(invocation.payload)

    def build_event(
        self, request: HttpRequest, match: RouteMatch, raw_path: str, raw_query: str, request_id: str
    ) -> dict[str, Any]:
        """The API Gateway HTTP API payload format 2.0 event for a matched request."""
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in request.headers:
            key = name.lower()
            if key == "cookie":
                cookies.extend(part.strip() for part in value.split(";") if part.strip())
                continue
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        host = headers.get("host", "localhost")
        headers.setdefault("x-forwarded-for", request.source_ip)
        headers.setdefault("x-forwarded-proto", "http")
        if ":" in host:
            headers.setdefault("x-forwarded-port", host.rsplit(":", 1)[1])
        query: dict[str, str] = {}
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            query[name] = f"{query[name]},{value}" if name in query else value
        now = datetime.now(UTC)
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": match.route.route_key,
            "rawPath": raw_path,
            "rawQueryString": raw_query,
            "headers": headers,
            "requestContext": {
                "accountId": self._account_id,
                "apiId": self.api.api_id,
                "domainName": host,
                "domainPrefix": self.api.api_id,
                "http": {
                    "method": request.method,
                    "path": raw_path,
                    "protocol": request.protocol,
                    "sourceIp": request.source_ip,
                    "userAgent": headers.get("user-agent", ""),
                },
                "requestId": request_id,
                "routeKey": match.route.route_key,
                "stage": "$default",
                "time": f"{now:%d}/{_MONTHS[now.month - 1]}/{now:%Y:%H:%M:%S} +0000",
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": False,
        }
        if cookies:
            event["cookies"] = cookies
        if query:
            event["queryStringParameters"] = query
        if match.path_parameters:
            event["pathParameters"] = match.path_parameters
        if request.body:
            text = _body_text(headers.get("content-type"), request.body)
            if text is None:
                event["body"] = base64.b64encode(request.body).decode()
                event["isBase64Encoded"] = True
            else:
                event["body"] = text
        return event

    def _authorize(self, authorizer: Authorizer, event: dict[str, Any]) -> HttpResponse | dict[str, Any]:
        """Runs (or reuses) the authorizer; returns the requestContext.authorizer or a refusal."""
        if authorizer.problem is not None or authorizer.function is None:
            logger.error("%s: %s", self.api.logical_id, authorizer.problem)
            return INTERNAL_ERROR
        query = event.get("queryStringParameters") or {}
        identity = [event["headers"].get(name.lower()) for name in authorizer.identity_headers]
        identity += [query.get(name) for name in authorizer.identity_query]
        caching = authorizer.ttl_seconds > 0
        if caching and any(value is None for value in identity):
            return UNAUTHORIZED
        present = tuple(value for value in identity if value is not None)
        key = (authorizer.name, present)
        response = self._cached(key) if caching and present else None
        route_arn = (
            f"arn:aws:execute-api:{self._region}:{self._account_id}:{self.api.api_id}/$default/"
            f"{event['requestContext']['http']['method']}{event['rawPath']}"
        )
        if response is None:
            authorizer_event: dict[str, Any] = {
                "version": "2.0",
                "type": "REQUEST",
                "routeArn": route_arn,
                "identitySource": list(present),
                **{
                    name: event[name]
                    for name in (
                        "routeKey",
                        "rawPath",
                        "rawQueryString",
                        "cookies",
                        "headers",
                        "queryStringParameters",
                        "requestContext",
                        "pathParameters",
                    )
                    if name in event
                },
            }
            invocation = self._invoke(authorizer.function, authorizer_event)
            if invocation.errored:
                return INTERNAL_ERROR
            response = invocation.payload
            if caching and present:
                self._remember(key, authorizer.ttl_seconds, response)
        return _authorizer_decision(authorizer, response, route_arn)

    def _remember(self, key: tuple[str, tuple[str, ...]], ttl_seconds: int, response: Any) -> None:
        """Caches a decision; past MAX_CACHED_DECISIONS the expired ones go, then the oldest, so
        a stream of made-up keys cannot grow the cache without bound."""
        now = time.monotonic()
        with self._cache_lock:
            self._cache.pop(key, None)
            self._cache[key] = (now + ttl_seconds, response)
            if len(self._cache) > MAX_CACHED_DECISIONS:
                for stale in [k for k, (until, _) in self._cache.items() if until <= now]:
                    del self._cache[stale]
                while len(self._cache) > MAX_CACHED_DECISIONS:
                    del self._cache[next(iter(self._cache))]

    def _cached(self, key: tuple[str, tuple[str, ...]]) -> Any:
        with self._cache_lock:
            entry = self._cache.get(key)
            if entry is None or entry[0] <= time.monotonic():
                self._cache.pop(key, None)
                return None
            return entry[1]


def _authorizer_decision(authorizer: Authorizer, response: Any, route_arn: str) -> HttpResponse | dict[str, Any]:
    if not isinstance(response, dict):
        logger.error("authorizer %s returned %r, not an object", authorizer.name, response)
        return INTERNAL_ERROR
    context = response.get("context") or {}
    if authorizer.simple_responses:
        allowed = response.get("isAuthorized")
        if not isinstance(allowed, bool):
            logger.error("authorizer %s: simple response without a boolean isAuthorized", authorizer.name)
            return INTERNAL_ERROR
        return {"lambda": context} if allowed else FORBIDDEN
    policy = response.get("policyDocument")
    if not isinstance(policy, dict) or "principalId" not in response:
        logger.error("authorizer %s: IAM response needs principalId and policyDocument", authorizer.name)
        return INTERNAL_ERROR
    if not _policy_allows(policy, route_arn):
        return FORBIDDEN
    return {"lambda": context, "principalId": response["principalId"]}


def _policy_allows(policy: dict[str, Any], route_arn: str) -> bool:
    """IAM evaluation for execute-api:Invoke on the route: an explicit Deny beats any Allow."""
    statements = policy.get("Statement") or []
    allowed = False
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = _as_list(statement.get("Action"))
        resources = _as_list(statement.get("Resource"))
        if not any(fnmatchcase("execute-api:Invoke", action) for action in actions):
            continue
        if not any(fnmatchcase(route_arn, resource) for resource in resources):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def _truthy(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() == "true"


def _body_text(content_type: str | None, body: bytes) -> str | None:
    """The body as text when API Gateway would pass it as text, else None (it is base64-encoded)."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    textual = (
        not media_type
        or media_type.startswith("text/")
        or media_type in _TEXT_TYPES
        or media_type.endswith(("+json", "+xml"))
    )
    if not textual:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def to_http_response(payload: Any) -> HttpResponse:
    """Maps a function result to HTTP per payload format 2.0 (anything without statusCode is JSON 200)."""
    if not (isinstance(payload, dict) and "statusCode" in payload):
        return HttpResponse(200, [("Content-Type", "application/json")], json.dumps(payload).encode())
    try:
        status = int(payload["statusCode"])
        headers = [(str(name), str(value)) for name, value in (payload.get("headers") or {}).items()]
        headers += [("Set-Cookie", str(cookie)) for cookie in payload.get("cookies") or []]
        body = payload.get("body")
        if body is None:
            data = b""
        elif not isinstance(body, str):
            raise TypeError("body must be a string")
        elif payload.get("isBase64Encoded"):
            data = base64.b64decode(body)
        else:
            data = body.encode("utf-8")
    except (TypeError, ValueError, AttributeError) as exc:
        logger.error("malformed Lambda response %r: %s", payload, exc)
        return INTERNAL_ERROR
    return HttpResponse(status, headers, data)


class GatewayServer:
    """A threaded HTTP server for one HTTP API; binds on creation so port conflicts surface at once."""

    def __init__(self, logical_id: str, port: int) -> None:
        self.logical_id = logical_id
        self.gateway: ApiGateway | None = None
        listener = bind_listener("127.0.0.1", port, logical_id)
        self._server = ThreadingHTTPServer(listener.getsockname(), _handler_class(self), bind_and_activate=False)
        self._server.socket.close()
        self._server.socket = listener
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, gateway: ApiGateway) -> None:
        self.gateway = gateway
        name = f"gateway-{self.logical_id}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()


def _handler_class(server: GatewayServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "local-apigw"

        def _serve(self) -> None:
            gateway = server.gateway
            if gateway is None:
                self._send(_json_response(503, "Service Unavailable"))
                return
            body = self._read_body()
            if body is None:
                self.close_connection = True
                self._send(TOO_LARGE)
                return
            request = HttpRequest(
                method=self.command,
                target=self.path,
                headers=list(self.headers.items()),
                body=body,
                source_ip=self.client_address[0],
                protocol=self.request_version,
            )
            started = time.monotonic()
            response = gateway.handle(request)
            # The path only: a query string can carry a secret (Mailchimp's ?token=).
            logger.info(
                "%s %s %s -> %d (%.0f ms)",
                server.logical_id,
                self.command,
                urlsplit(self.path).path,
                response.status,
                (time.monotonic() - started) * 1000,
            )
            self._send(response)

        def _method_not_allowed(self) -> None:
            self.close_connection = True
            gateway = server.gateway
            allowed = gateway.api.routes.methods(urlsplit(self.path).path) if gateway is not None else []
            self._send(
                replace(METHOD_NOT_ALLOWED, headers=[*METHOD_NOT_ALLOWED.headers, ("Allow", ", ".join(allowed))])
            )

        def _read_body(self) -> bytes | None:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks: list[bytes] = []
                total = 0
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    total += size
                    if total > MAX_BODY_BYTES:
                        return None
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                return None
            return self.rfile.read(length) if length else b""

        def _send(self, response: HttpResponse) -> None:
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        def __getattr__(self, name: str) -> Any:
            # http.server answers a method without a do_ handler (TRACE, CONNECT, ...) with an
            # HTML 501; API Gateway answers them in its own JSON shape.
            if name.startswith("do_"):
                return self._method_not_allowed
            raise AttributeError(name)

    return Handler
