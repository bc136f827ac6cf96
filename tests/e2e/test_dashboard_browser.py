"""The dashboard page end to end in real Chromium (Debian's, driven by Playwright) against the
local cloud over HTTP: sign in with a key, register integrations through the generated form,
watch a sync reach 100%, see a broken one turn red, acknowledge an alert, redrive a dead letter,
and check that a hostile name renders as text. A screenshot of each view is saved under the
test's tmp dir (CHURNGUARD_DOCS_SCREENSHOT=1 also refreshes docs/dashboard.png)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.e2e.conftest import REPO, Tenant
from tests.e2e.test_webhooks_e2e import dead_letters_in_queue, post, wait_until
from tests.support.sync import POSTGRES_URL, DatabaseUrl
from tests.support.webhooks import STRIPE_SECRET, stripe_event

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
XSS_NAME = "<img src=x onerror=alert(1)>"
WAIT_MS = 120_000

pytestmark = pytest.mark.skipif(
    not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM}: run `make chromium` (CI installs it)"
)


@pytest.fixture
def database() -> Iterator[tuple[DatabaseUrl, str]]:
    """A schema with a 2,000-row customers table on the test PostgreSQL."""
    url = DatabaseUrl.parse(POSTGRES_URL, 5432)
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.user, dbname=url.database)
    conn.autocommit = True
    schema = f"dash_{secrets.token_hex(4)}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
        cur.execute(
            f'CREATE TABLE "{schema}".customers (id bigint PRIMARY KEY, email text, updated_at timestamptz NOT NULL)'
        )
        cur.execute(
            f"""INSERT INTO "{schema}".customers SELECT i, 'c' || i || '@example.com', now() - i * interval '1 s'
            FROM generate_series(1, 2000) AS i"""
        )
    try:
        yield url, schema
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def register_through_the_form(page: Any, name: str, url: DatabaseUrl, table: str) -> tuple[str, str]:
    """Fills the generated form, tests the connection, registers; (integration id, test result)."""
    page.goto(page.url.split("#")[0] + "#/new")
    form = page.locator("#new-integration")
    form.wait_for()
    page.fill("#f-integration_name", name)
    page.select_option("#f-provider_name", "postgresql")
    page.select_option("#f-status", "active")
    page.fill("#f-base_url", url.address)
    page.fill("#f-entity_mappings", f"customer = {table}")
    page.select_option("#f-credentials-credential_type", "oauth2")
    assert page.locator("#f-credentials-access_token").is_visible()
    assert not page.locator("#f-credentials-password").is_visible(), "a form per credential type"
    page.select_option("#f-credentials-credential_type", "basic_auth")
    page.fill("#f-credentials-username", url.user)
    page.fill("#f-credentials-password", url.password or "trust-auth-ignores-this")
    page.fill("#f-credentials-custom_fields", f"database = {url.database}")
    assert page.get_attribute("#f-credentials-password", "type") == "password"
    assert page.locator("label[for=f-integration_name].required").count() == 1
    # Tested before it is saved, then registered.
    page.locator("#test-draft").click()
    page.locator("#connection-result").wait_for(timeout=WAIT_MS)
    tested = page.inner_text("#connection-result")
    form.locator("button[type=submit]").click()
    page.locator("#open-new").wait_for(timeout=WAIT_MS)
    href = page.get_attribute("#open-new", "href") or ""
    return href.rsplit("/", 1)[-1], tested


@pytest.mark.timeout(600)
def test_the_dashboard_in_a_real_browser(
    cloud: Any,
    new_tenant: Any,
    database: tuple[DatabaseUrl, str],
    browser: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from playwright.sync_api import expect

    from churnguard.webhooks.processor import EventProcessor

    tenant: Tenant = new_tenant(f"org_ui_{secrets.token_hex(4)}")
    url, schema = database
    shots = tmp_path / "screenshots"
    shots.mkdir()
    dialogs: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    requests_seen: list[str] = []
    page.on("request", lambda request: requests_seen.append(request.url))

    # Sign in with the keyboard alone: the key field has focus, Enter submits.
    page.goto(f"{tenant.base_url}/dashboard")
    page.locator("#api-key").wait_for()
    assert not page.locator("#nav").is_visible(), "no navigation before signing in"
    page.screenshot(path=shots / "sign-in.png")
    page.keyboard.type("cg_not_a_real_key")
    page.keyboard.press("Enter")
    page.locator("#login .notice.bad").wait_for()
    page.fill("#api-key", tenant.api_key)
    page.keyboard.press("Enter")
    page.locator("#metrics").wait_for()
    assert page.evaluate("sessionStorage.getItem('churnguard.apiKey')") == tenant.api_key
    assert page.evaluate("localStorage.length") == 0

    # A healthy integration through the form, with its connection test.
    healthy, tested = register_through_the_form(page, "Warehouse", url, f"{schema}.customers")
    assert tested.startswith("Connection test: ok")
    page.screenshot(path=shots / "new-integration.png", full_page=True)
    # A field error appears next to the field it names.
    page.goto(f"{tenant.base_url}/dashboard#/new")
    page.locator("#new-integration").wait_for()
    page.fill("#f-integration_name", "Broken address")
    page.select_option("#f-provider_name", "postgresql")
    page.fill("#f-base_url", "not a host:port:x")
    page.locator("#new-integration button[type=submit]").click()
    page.locator("#new-integration .form-error").wait_for()
    assert page.locator("[data-field=base_url] .field-error, .form-error").count() >= 1

    # A broken one (its table is missing) turns red with its error once a sync fails.
    broken, tested = register_through_the_form(page, "Old CRM", url, f"{schema}.missing")
    assert "missing_object" in tested and "does not exist" in tested
    page.goto(f"{tenant.base_url}/dashboard#/integration/{broken}")
    page.locator("#start-sync").click()
    page.locator("#last-error").wait_for(timeout=WAIT_MS)
    assert "does not exist" in page.inner_text("#last-error")
    assert "stackTrace" not in page.inner_text("#last-error"), "the error, not Lambda's stack trace"
    page.goto(f"{tenant.base_url}/dashboard#/")
    row = page.locator(f"tr[data-integration='{broken}']")
    row.wait_for()
    assert row.locator(".badge").get_attribute("data-state") == "failing"
    assert "does not exist" in row.locator(".problem").inner_text()

    # Start a sync of the healthy one and watch the progress bar reach 100%.
    page.goto(f"{tenant.base_url}/dashboard#/integration/{healthy}")
    page.locator("#start-sync").click()
    # (The page's policy forbids eval, which wait_for_function needs: the strict CSP at work.)
    expect(page.locator("#sync-progress-text")).to_have_text("Last sync succeeded: 100%", timeout=WAIT_MS)
    assert page.locator("#sync-progress").evaluate("bar => bar.value") == 100
    page.locator("#records-chart svg rect.bar").last.wait_for()  # today: 2,000 records
    page.screenshot(path=shots / "integration.png", full_page=True)

    # An alert: the broken integration failed once; with the threshold at 1 the evaluator opens one.
    page.goto(f"{tenant.base_url}/dashboard#/settings")
    page.locator("#alert-settings").wait_for()
    page.fill("#f-consecutive_failures", "1")
    page.locator("#alert-settings button[type=submit]").click()
    expect(page.locator("#alert-settings .form-error")).to_have_count(0)
    wait_until(lambda: tenant.request("GET", "/api/dashboard/alert-settings").json()["version"] >= 1, "saved settings")
    cloud.invoke("AlertsFunction", {})
    page.goto(f"{tenant.base_url}/dashboard#/")
    alert_row = page.locator("#alerts tr[data-alert]").first
    alert_row.wait_for()
    assert alert_row.locator(".alert-message").inner_text().startswith("Old CRM: the last sync failed (SourceError:")
    alert_row.locator("button.acknowledge").click()
    page.goto(f"{tenant.base_url}/dashboard#/alerts?state=acknowledged")
    page.locator("#alerts .alert-state", has_text="acknowledged").first.wait_for()
    page.screenshot(path=shots / "alerts.png", full_page=True)

    # A dead letter: a Stripe endpoint made on the page, an event that fails every attempt.
    page.goto(f"{tenant.base_url}/dashboard#/webhooks")
    page.locator("#new-endpoint").wait_for()
    page.select_option("#f-provider", "sendgrid")
    assert page.locator("#f-sendgrid_public_key").is_visible() and not page.locator("#f-secret_key").is_visible()
    page.select_option("#f-provider", "stripe")
    assert (
        not page.locator("#f-sendgrid_public_key").is_visible() and not page.locator("#f-signature_header").is_visible()
    )
    page.fill("#f-secret_key", STRIPE_SECRET)
    page.locator("#new-endpoint button[type=submit]").click()
    page.locator("#webhook-result .secret-once").wait_for()
    original = EventProcessor.process

    def poisoned(self: EventProcessor, queued: Any) -> Any:
        if queued.event.event_id == "evt_ui_poison":
            raise ValueError("the plan is unknown")
        return original(self, queued)

    monkeypatch.setattr(EventProcessor, "process", poisoned)
    body = stripe_event("evt_ui_poison", "customer.updated", {"id": "cus_ui", "object": "customer"})
    assert post(cloud, tenant, body).status_code == 200
    wait_until(
        lambda: bool(tenant.request("GET", "/api/dlq").json()["items"]) and dead_letters_in_queue(cloud) >= 1,
        "the poison event in the DLQ",
    )
    monkeypatch.setattr(EventProcessor, "process", original)
    page.goto(f"{tenant.base_url}/dashboard#/")
    page.goto(f"{tenant.base_url}/dashboard#/webhooks")
    page.locator("#dead-letters-table").wait_for()
    page.screenshot(path=shots / "webhooks.png", full_page=True)
    page.locator("#redrive").click()
    page.locator("#webhook-result", has_text="Redriven: 1").wait_for()
    page.locator("#no-dead-letters").wait_for(timeout=WAIT_MS)

    # A hostile name is text, never markup.
    created = tenant.request(
        "POST", "/api/integrations", json={"integration_name": XSS_NAME, "provider_name": "stripe"}
    )
    assert created.status_code == 201
    page.goto(f"{tenant.base_url}/dashboard#/")
    name = page.locator(".integration-name", has_text=XSS_NAME)
    name.wait_for()
    assert name.inner_text() == XSS_NAME
    assert page.locator("main img").count() == 0
    page.screenshot(path=shots / "overview.png", full_page=True)
    if os.environ.get("CHURNGUARD_DOCS_SCREENSHOT"):
        page.screenshot(path=REPO / "docs" / "dashboard.png")

    # Phone width: nothing overflows the screen sideways (wide tables scroll inside their box).
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    page.locator("#metrics").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=shots / "overview-phone.png", full_page=True)

    assert dialogs == [], "a script ran from data"
    origin = tenant.base_url
    assert all(seen.startswith(origin) for seen in requests_seen), "everything loads from the same origin"
    context.close()


@pytest.mark.timeout(300)
def test_a_real_time_database_shows_its_change_capture(
    cloud: Any, new_tenant: Any, database: tuple[DatabaseUrl, str], browser: Any, tmp_path: Path
) -> None:
    """The guardian's figures on the integration page: what the database holds for us."""
    from playwright.sync_api import expect

    from tests.e2e.conftest import register_postgres

    tenant: Tenant = new_tenant(f"org_ui_{secrets.token_hex(4)}")
    url, schema = database
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.user, dbname=url.database)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'ALTER TABLE "{schema}".customers REPLICA IDENTITY FULL')
    integration_id = register_postgres(tenant, {"customer": f"{schema}.customers"})
    try:
        switched = tenant.request(
            "PATCH", f"/api/integrations/{integration_id}", json={"sync_config": {"sync_mode": "real_time"}}
        )
        assert switched.status_code == 200, switched.text

        def measured() -> bool:
            status = tenant.request("GET", f"/api/integrations/{integration_id}/sync/status").json()
            guardian = (status.get("change_capture") or {}).get("guardian") or {}
            return guardian.get("retained_bytes") is not None

        wait_until(measured, "the guardian's first reading")
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(f"{tenant.base_url}/dashboard")
        page.fill("#api-key", tenant.api_key)
        page.keyboard.press("Enter")
        page.locator("#metrics").wait_for()
        page.goto(f"{tenant.base_url}/dashboard#/integration/{integration_id}")
        figures = page.locator("#change-capture-figures")
        expect(figures).to_contain_text("streaming", timeout=WAIT_MS)
        expect(figures).to_contain_text("0 changes landed")  # the 2,000 rows came in the snapshot
        expect(figures).to_contain_text("of log held for us")
        page.screenshot(path=tmp_path / "change-capture.png", full_page=True)
    finally:
        tenant.request("DELETE", f"/api/integrations/{integration_id}")
        conn.close()
