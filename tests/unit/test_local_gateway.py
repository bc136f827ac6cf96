"""The local HTTP API gateway without sockets: routing, v2 events, authorizers, response mapping."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import pytest

from local.gateway import (
    ApiGateway,
    Authorizer,
    HttpApi,
    HttpRequest,
    Route,
    RouteTable,
    build_http_api,
    to_http_response,
)
from local.runtime import Invocation


class Functions:
    """A fake invoker: records events and answers per function."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.events: dict[str, list[dict[str, Any]]] = {}

    def __call__(self, function: str, event: Any) -> Invocation:
        self.events.setdefault(function, []).append(event)
        answer = self.answers[function]
        if isinstance(answer, Exception):
            return Invocation({"errorType": type(answer).__name__, "errorMessage": str(answer)}, True)
        return Invocation(answer(event) if callable(answer) else answer, False)


def request(
    target: str, *, method: str = "GET", headers: list[tuple[str, str]] | None = None, body: bytes = b""
) -> HttpRequest:
    return HttpRequest(
        method=method,
        target=target,
        headers=[("Host", "127.0.0.1:9999"), *(headers or [])],
        body=body,
        source_ip="10.0.0.7",
    )


def gateway(routes: list[Route], answers: dict[str, Any], authorizers: Sequence[Authorizer] = ()) -> ApiGateway:
    api = HttpApi("Api", "abc123", RouteTable(routes), {a.name: a for a in authorizers})
    return ApiGateway(api, Functions(answers), region="us-east-1", account_id="123456789012")


def events(api: ApiGateway, function: str = "Fn") -> list[dict[str, Any]]:
    invoker = api._invoke
    assert isinstance(invoker, Functions)
    return invoker.events.get(function, [])


ROUTES = RouteTable(
    [
        Route("GET", "/items/{id}", "param"),
        Route("ANY", "/items/{id}", "any-param"),
        Route("GET", "/items/special", "literal"),
        Route("GET", "/items/{id}/{proxy+}", "greedy-under-param"),
        Route("GET", "/{proxy+}", "root-greedy"),
        Route("GET", "/", "root"),
    ]
)


@pytest.mark.parametrize(
    ("method", "path", "function", "parameters"),
    [
        ("GET", "/items/special", "literal", {}),
        ("GET", "/items/42", "param", {"id": "42"}),
        ("DELETE", "/items/42", "any-param", {"id": "42"}),
        ("GET", "/items/a%20b", "param", {"id": "a b"}),
        ("GET", "/items/42/x/y", "greedy-under-param", {"id": "42", "proxy": "x/y"}),
        ("GET", "/other/deep/path", "root-greedy", {"proxy": "other/deep/path"}),
        ("GET", "/", "root", {}),
    ],
)
def test_most_specific_route_wins(method: str, path: str, function: str, parameters: dict[str, str]) -> None:
    match = ROUTES.match(method, path)
    assert match is not None
    assert (match.route.function, match.path_parameters) == (function, parameters)


def test_no_route_and_default_route() -> None:
    assert ROUTES.match("POST", "/items") is None
    assert RouteTable([Route("GET", "/x/{proxy+}", "greedy")]).match("GET", "/x/") is None
    with_default = RouteTable([Route("GET", "/x", "x"), Route("ANY", "$default", "fallback")])
    match = with_default.match("PUT", "/anything")
    assert match is not None
    assert match.route.function == "fallback"
    assert match.route.route_key == "$default"


def test_payload_v2_event_fields() -> None:
    api = gateway([Route("POST", "/items/{id}", "Fn")], {"Fn": {"ok": True}})
    api.handle(
        request(
            "/items/7?tag=a&tag=b&empty=&q=x%20y",
            method="POST",
            headers=[
                ("Content-Type", "application/json"),
                ("X-Multi", "one"),
                ("X-Multi", "two"),
                ("Cookie", "session=abc; theme=dark"),
                ("User-Agent", "tests/1.0"),
            ],
            body=b'{"name": "x"}',
        )
    )
    (event,) = events(api)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /items/{id}"
    assert event["rawPath"] == "/items/7"
    assert event["rawQueryString"] == "tag=a&tag=b&empty=&q=x%20y"
    assert event["queryStringParameters"] == {"tag": "a,b", "empty": "", "q": "x y"}
    assert event["pathParameters"] == {"id": "7"}
    assert event["cookies"] == ["session=abc", "theme=dark"]
    assert event["headers"]["x-multi"] == "one,two"
    assert event["headers"]["content-type"] == "application/json"
    assert "cookie" not in event["headers"]
    assert event["body"] == '{"name": "x"}'
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["accountId"] == "123456789012"
    assert context["apiId"] == "abc123"
    assert context["stage"] == "$default"
    assert context["routeKey"] == "POST /items/{id}"
    assert context["domainName"] == "127.0.0.1:9999"
    assert context["http"] == {
        "method": "POST",
        "path": "/items/7",
        "protocol": "HTTP/1.1",
        "sourceIp": "10.0.0.7",
        "userAgent": "tests/1.0",
    }
    assert context["requestId"]
    assert isinstance(context["timeEpoch"], int)
    assert "authorizer" not in context


@pytest.mark.parametrize(
    ("content_type", "body", "encoded"),
    [
        ("application/octet-stream", b"\x00\x01\x02", True),
        ("image/png", b"png", True),
        ("text/plain; charset=utf-8", "héllo".encode(), False),
        ("application/vnd.api+json", b"{}", False),
        ("application/x-www-form-urlencoded", b"a=1&b=2", False),
        (None, "plain ütf-8".encode(), False),
        (None, b"\xff\xfe\x00", True),
    ],
)
def test_body_encoding(content_type: str | None, body: bytes, encoded: bool) -> None:
    api = gateway([Route("POST", "/up", "Fn")], {"Fn": {}})
    headers = [("Content-Type", content_type)] if content_type else []
    api.handle(request("/up", method="POST", headers=headers, body=body))
    (event,) = events(api)
    assert event["isBase64Encoded"] is encoded
    assert (base64.b64decode(event["body"]) if encoded else event["body"].encode()) == body


def test_event_omits_absent_optional_fields() -> None:
    api = gateway([Route("GET", "/x", "Fn")], {"Fn": {}})
    api.handle(request("/x"))
    (event,) = events(api)
    for absent in ("body", "cookies", "queryStringParameters", "pathParameters"):
        assert absent not in event


def test_response_mapping() -> None:
    response = to_http_response(
        {
            "statusCode": 201,
            "headers": {"x-one": "1", "content-type": "image/png"},
            "cookies": ["a=1", "b=2; Path=/"],
            "body": base64.b64encode(b"\x89PNG").decode(),
            "isBase64Encoded": True,
        }
    )
    assert response.status == 201
    assert ("x-one", "1") in response.headers
    assert [value for name, value in response.headers if name == "Set-Cookie"] == ["a=1", "b=2; Path=/"]
    assert response.body == b"\x89PNG"
    assert to_http_response({"statusCode": 204}).body == b""
    assert to_http_response({"statusCode": "200", "body": "text"}).body == b"text"


@pytest.mark.parametrize("payload", [["a", 1], "hello", {"no": "status"}, None, 42])
def test_results_without_status_code_are_json_200(payload: Any) -> None:
    response = to_http_response(payload)
    assert response.status == 200
    assert ("Content-Type", "application/json") in response.headers
    assert json.loads(response.body) == payload


def test_malformed_response_and_handler_error_are_500() -> None:
    assert to_http_response({"statusCode": "abc"}).status == 500
    assert to_http_response({"statusCode": 200, "body": {"not": "a string"}}).status == 500
    api = gateway([Route("GET", "/x", "Fn")], {"Fn": RuntimeError("boom")})
    response = api.handle(request("/x"))
    assert (response.status, json.loads(response.body)) == (500, {"message": "Internal Server Error"})


def test_not_found() -> None:
    response = gateway([Route("GET", "/x", "Fn")], {"Fn": {}}).handle(request("/y"))
    assert (response.status, json.loads(response.body)) == (404, {"message": "Not Found"})


SIMPLE = Authorizer("Keys", "AuthFn", simple_responses=True, identity_headers=("X-Api-Key",), ttl_seconds=300)


def simple_decision(event: dict[str, Any]) -> dict[str, Any]:
    key = event["headers"].get("x-api-key")
    return {"isAuthorized": key == "good", "context": {"key": key, "sources": event["identitySource"]}}


def test_simple_authorizer_allows_with_context_and_denies() -> None:
    api = gateway([Route("GET", "/x", "Fn", "Keys")], {"Fn": {}, "AuthFn": simple_decision}, [SIMPLE])
    allowed = api.handle(request("/x", headers=[("X-Api-Key", "good")]))
    assert allowed.status == 200
    (event,) = events(api)
    assert event["requestContext"]["authorizer"] == {"lambda": {"key": "good", "sources": ["good"]}}
    (authorizer_event,) = events(api, "AuthFn")
    assert authorizer_event["type"] == "REQUEST"
    assert authorizer_event["version"] == "2.0"
    assert authorizer_event["routeKey"] == "GET /x"
    assert authorizer_event["routeArn"] == "arn:aws:execute-api:us-east-1:123456789012:abc123/$default/GET/x"
    denied = api.handle(request("/x", headers=[("X-Api-Key", "bad")]))
    assert (denied.status, json.loads(denied.body)) == (403, {"message": "Forbidden"})


def test_missing_identity_source_is_401_without_calling_the_authorizer() -> None:
    api = gateway([Route("GET", "/x", "Fn", "Keys")], {"Fn": {}, "AuthFn": simple_decision}, [SIMPLE])
    response = api.handle(request("/x"))
    assert (response.status, json.loads(response.body)) == (401, {"message": "Unauthorized"})
    assert events(api, "AuthFn") == []


def test_authorizer_results_are_cached_per_identity() -> None:
    api = gateway([Route("GET", "/x", "Fn", "Keys")], {"Fn": {}, "AuthFn": simple_decision}, [SIMPLE])
    for key in ("good", "good", "bad", "bad", "good"):
        api.handle(request("/x", headers=[("X-Api-Key", key)]))
    assert [e["headers"]["x-api-key"] for e in events(api, "AuthFn")] == ["good", "bad"]


def test_uncached_authorizer_runs_every_time_even_without_identity() -> None:
    uncached = Authorizer("Keys", "AuthFn", simple_responses=True, identity_headers=("X-Api-Key",), ttl_seconds=0)
    api = gateway(
        [Route("GET", "/x", "Fn", "Keys")], {"Fn": {}, "AuthFn": {"isAuthorized": True, "context": {}}}, [uncached]
    )
    assert api.handle(request("/x")).status == 200
    assert api.handle(request("/x")).status == 200
    assert len(events(api, "AuthFn")) == 2
    assert events(api, "AuthFn")[0]["identitySource"] == []


@pytest.mark.parametrize("answer", [RuntimeError("down"), {"isAuthorized": "yes"}, ["not", "a", "dict"]])
def test_failing_or_malformed_authorizer_is_500(answer: Any) -> None:
    api = gateway([Route("GET", "/x", "Fn", "Keys")], {"Fn": {}, "AuthFn": answer}, [SIMPLE])
    response = api.handle(request("/x", headers=[("X-Api-Key", "k")]))
    assert (response.status, json.loads(response.body)) == (500, {"message": "Internal Server Error"})
    assert events(api) == []


def policy(effect: str, resource: str, *extra: dict[str, Any]) -> dict[str, Any]:
    statement = {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}
    return {
        "principalId": "user-9",
        "policyDocument": {"Version": "2012-10-17", "Statement": [statement, *extra]},
        "context": {"tier": "gold"},
    }


POLICY = Authorizer("Iam", "AuthFn", simple_responses=False, identity_headers=("Authorization",), ttl_seconds=0)
ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123"


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (policy("Allow", f"{ARN}/$default/GET/x"), 200),
        (policy("Allow", f"{ARN}/*/GET/*"), 200),
        (policy("Allow", f"{ARN}/*/POST/*"), 403),
        (policy("Deny", f"{ARN}/*"), 403),
        (policy("Allow", "*", {"Action": "execute-api:*", "Effect": "Deny", "Resource": f"{ARN}/*/GET/x"}), 403),
        ({"policyDocument": {}}, 500),
    ],
)
def test_iam_policy_authorizer(answer: dict[str, Any], status: int) -> None:
    api = gateway([Route("GET", "/x", "Fn", "Iam")], {"Fn": {}, "AuthFn": answer}, [POLICY])
    assert api.handle(request("/x", headers=[("Authorization", "t")])).status == status
    if status == 200:
        assert events(api)[0]["requestContext"]["authorizer"] == {"lambda": {"tier": "gold"}, "principalId": "user-9"}


def test_build_http_api_from_sam_properties() -> None:
    auth = {
        "DefaultAuthorizer": "Keys",
        "Authorizers": {
            "Keys": {
                "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:auth",
                "AuthorizerPayloadFormatVersion": "2.0",
                "EnableSimpleResponses": True,
                "Identity": {"Headers": ["X-Key"], "QueryStrings": ["key"], "ReauthorizeEvery": 60},
            },
            "Jwt": {"JwtConfiguration": {"issuer": "x"}, "IdentitySource": "$request.header.Authorization"},
        },
    }
    sam_events = [
        ("A", {"Path": "/a", "Method": "get"}),
        ("B", {"Path": "/b", "Method": "POST", "Auth": {"Authorizer": "NONE"}}),
        ("C", {"Path": "$default", "Method": "ANY"}),
    ]
    api = build_http_api("Api", "id1", auth, sam_events)
    assert [(r.method, r.path, r.function, r.authorizer) for r in api.routes.routes] == [
        ("GET", "/a", "A", "Keys"),
        ("POST", "/b", "B", None),
        ("ANY", "$default", "C", "Keys"),
    ]
    keys = api.authorizers["Keys"]
    assert (keys.simple_responses, keys.identity_headers, keys.identity_query, keys.ttl_seconds) == (
        True,
        ("X-Key",),
        ("key",),
        60,
    )
    assert api.authorizers["Jwt"].problem is not None
    with pytest.raises(ValueError, match="unknown authorizer"):
        build_http_api("Api", "id1", auth, [("A", {"Path": "/a", "Method": "GET", "Auth": {"Authorizer": "Nope"}})])


@pytest.fixture
def served() -> Any:
    """A gateway server on an ephemeral 127.0.0.1 port, with one route that echoes its query."""
    from local.gateway import GatewayServer

    server = GatewayServer("Api", 0)
    answers = {"Fn": lambda event: {"statusCode": 200, "body": event.get("rawQueryString", "")}}
    server.start(gateway([Route("GET", "/x", "Fn")], answers))
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "BREW"])
def test_unsupported_methods_get_the_gateways_405_json_not_an_html_501(served: Any, method: str) -> None:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)
    try:
        connection.request(method, "/x")
        response = connection.getresponse()
        assert response.status == 405
        assert response.getheader("Content-Type") == "application/json"
        assert response.getheader("Allow") == "GET", "RFC 9110: a 405 lists the methods the path serves"
        assert json.loads(response.read()) == {"message": "Method Not Allowed"}
    finally:
        connection.close()


def test_the_gateway_logs_the_path_but_never_the_query(served: Any, caplog: pytest.LogCaptureFixture) -> None:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)
    try:
        with caplog.at_level("INFO", logger="local.gateway"):
            connection.request("GET", "/x?token=mailchimp-secret-token-1234")
            response = connection.getresponse()
            assert response.read() == b"token=mailchimp-secret-token-1234"
    finally:
        connection.close()
    assert any("GET /x -> 200" in message for message in caplog.messages), caplog.messages
    assert "mailchimp-secret-token-1234" not in caplog.text


def test_the_authorizer_cache_is_bounded_however_many_keys_are_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    from local import gateway as gateway_module

    monkeypatch.setattr(gateway_module, "MAX_CACHED_DECISIONS", 10)
    api = gateway([Route("GET", "/x", "Fn", authorizer="Keys")], {"Fn": {}, "AuthFn": simple_decision}, [SIMPLE])
    for n in range(50):
        api.handle(request("/x", headers=[("X-Api-Key", f"made-up-{n}")]))
    assert len(api._cache) == 10
    api.handle(request("/x", headers=[("X-Api-Key", "made-up-49")]))
    assert len(events(api, "AuthFn")) == 50, "the newest decisions are still cached"
