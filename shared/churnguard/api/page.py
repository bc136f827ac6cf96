"""The dashboard page and its two assets, served by the management API from this package.

Public: the page holds no data (it asks for an API key and calls the API with it). Everything it
loads comes from this origin, and the Content-Security-Policy forbids anything else: no inline
script or style, no other origin, no framing.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from churnguard.config import env_int
from churnguard.errors import NotFoundError

router = Router()

ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ChurnGuard operations</title>
<link rel="stylesheet" href="/dashboard/assets/app.css">
</head>
<body data-refresh="{refresh}">
<header>
<h1>ChurnGuard operations</h1>
<nav id="nav" aria-label="views" hidden>
<a href="#/">Overview</a>
<a href="#/alerts">Alerts</a>
<a href="#/webhooks">Webhooks and dead letters</a>
<a href="#/new">New integration</a>
<a href="#/settings">Alert settings</a>
<button id="sign-out" class="link" type="button">Sign out</button>
</nav>
</header>
<main id="view" tabindex="-1"></main>
<script type="module" src="/dashboard/assets/app.js"></script>
</body>
</html>
"""


@cache
def _asset(name: str) -> str:
    return resources.files("churnguard.dashboard").joinpath("static", name).read_text(encoding="utf-8")


@router.get("/dashboard", include_in_schema=False)
def page() -> Response[str]:
    refresh = max(5, env_int("DASHBOARD_UPDATE_INTERVAL", 60))
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=_PAGE.format(refresh=refresh),
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


@router.get("/dashboard/assets/<name>", include_in_schema=False)
def asset(name: str) -> Response[str]:
    if name not in ASSETS:
        raise NotFoundError("no such asset", {"asset": name[:64]})
    return Response(
        status_code=200,
        content_type=ASSETS[name],
        body=_asset(name),
        headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=300"},
    )
