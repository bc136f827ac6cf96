"""Dashboard benchmark: each dashboard route's latency through the local cloud over HTTP, for an
organisation of 200 integrations and 10,000 runs, and the page's time to first full render in
Debian's Chromium.

Latencies are medians and p99 of N requests per route; the ratio is against the plain first page
of GET /api/integrations (one query of 100 integrations), measured in the same run. The page's
render time runs from navigation until all 200 integrations are drawn, median of the runs.

Through the local cloud, a query costs what moto's query costs: it sorts and filters every item of
the partition (10,000 runs here) whatever the key condition, where DynamoDB reads only the
matching range. So the routes are also measured in process, split into the DynamoDB calls (their
number, which DynamoDB bills and which its latency scales with) and the route's own work
(validation, health scores, aggregation), the part that does not depend on the emulator.

    .venv/bin/python -m benchmarks.dashboard [--requests 50] [--renders 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import requests

from churnguard.admin import create_api_key
from tests.support.dashboard_data import seed_organization

REPO = Path(__file__).resolve().parents[1]
ORGANIZATION = "org_bench_dashboard"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def timed(session: requests.Session, url: str, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = session.get(url, timeout=60)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return samples


def own_work(dynamodb: Any, table: str, count: int) -> None:
    """Each route's service call in process: DynamoDB calls made, and the time spent outside them."""
    from churnguard.dashboard.service import DashboardService
    from churnguard.store.activity import ActivityStore
    from churnguard.store.alerts import AlertStore
    from churnguard.store.circuit_breakers import CircuitBreakerStore
    from churnguard.store.integrations import IntegrationStore
    from churnguard.store.run_history import RunHistoryStore
    from churnguard.store.syncs import SyncStore
    from churnguard.store.webhooks import WebhookStore

    integrations = IntegrationStore(dynamodb, table)
    alerts = AlertStore(dynamodb, table)
    service = DashboardService(
        integrations=integrations,
        histories=RunHistoryStore(dynamodb, table),
        breakers=CircuitBreakerStore(dynamodb, table),
        syncs=SyncStore(dynamodb, table),
        webhooks=WebhookStore(dynamodb, table),
        activity=ActivityStore(dynamodb, table),
        alerts=alerts,
    )
    in_calls: list[float] = []
    started_call: list[float] = []
    dynamodb.meta.events.register("before-call.dynamodb", lambda **_: started_call.append(time.perf_counter()))
    dynamodb.meta.events.register(
        "after-call.dynamodb", lambda **_: in_calls.append(time.perf_counter() - started_call.pop())
    )
    some = service.summaries(ORGANIZATION).items[17].integration_id
    routes: dict[str, Any] = {
        "baseline: IntegrationStore.all (200)": lambda: integrations.all(ORGANIZATION),
        "metrics": lambda: service.metrics(ORGANIZATION),
        "integrations": lambda: service.summaries(ORGANIZATION),
        "integration/{id}": lambda: service.detail(ORGANIZATION, some),
        "alerts": lambda: alerts.page(ORGANIZATION, None, 50, None),
    }
    print(f"\nin process, {count} calls per route: DynamoDB calls, and the route's own time outside them")
    print(f"{'route':<40}{'calls':>7}{'own p50 ms':>12}{'own p99 ms':>12}{'vs baseline':>13}")
    baseline = None
    for name, call in routes.items():
        own = []
        calls = 0
        for _ in range(count):
            in_calls.clear()
            begun = time.perf_counter()
            call()
            own.append((time.perf_counter() - begun - sum(in_calls)) * 1000)
            calls = len(in_calls)
        median = statistics.median(own)
        baseline = baseline or median
        print(f"{name:<40}{calls:>7}{median:>12.2f}{percentile(own, 0.99):>12.2f}{median / baseline:>12.2f}x")


def render_times(base_url: str, api_key: str, renders: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for _ in range(renders):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            # The key, as if entered once in this tab (Playwright injects it; the page's CSP forbids inline script).
            context.add_init_script(f"sessionStorage.setItem('churnguard.apiKey', {api_key!r})")
            page = context.new_page()
            started = time.perf_counter()
            page.goto(f"{base_url}/dashboard")
            page.locator("#integrations tbody tr").nth(199).wait_for(timeout=60_000)
            times.append((time.perf_counter() - started) * 1000)
            context.close()
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--renders", type=int, default=5)
    args = parser.parse_args()

    from local.cloud import LocalCloud

    with LocalCloud(REPO / "template.yaml", ports={"ManagementApi": 0, "WebhookApi": 0}, moto_port=0) as cloud:
        table = cloud.resources["DataTable"]["physical_id"]
        dynamodb = cloud.boto3_client("dynamodb")
        key = create_api_key(table_name=table, organization_id=ORGANIZATION, name="bench", dynamodb=dynamodb)
        started = time.perf_counter()
        seed_organization(dynamodb, table, ORGANIZATION, integrations=200, runs_each=50)
        print(f"seeded 200 integrations and 10,000 runs in {time.perf_counter() - started:.0f} s")
        base = str(cloud.api_urls["ManagementApi"])
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key.api_key}"
        some = session.get(f"{base}/api/dashboard/integrations", timeout=60).json()["items"][17]["integration_id"]
        routes = {
            "baseline: GET /api/integrations (first page of 100)": "/api/integrations?limit=100",
            "GET /api/dashboard/metrics": "/api/dashboard/metrics",
            "GET /api/dashboard/integrations": "/api/dashboard/integrations",
            "GET /api/dashboard/integration/{id}": f"/api/dashboard/integration/{some}",
            "GET /api/dashboard/alerts": "/api/dashboard/alerts",
            "GET /api/dashboard/health": "/api/dashboard/health",
        }
        for path in routes.values():  # warm every code path once
            session.get(base + path, timeout=60).raise_for_status()
        results = {name: timed(session, base + path, args.requests) for name, path in routes.items()}
        baseline = statistics.median(next(iter(results.values())))
        print(f"\n{args.requests} requests per route, 200 integrations, 10,000 runs, through the local cloud")
        print(f"{'route':<55}{'p50 ms':>9}{'p99 ms':>9}{'p50 vs baseline':>17}")
        for name, samples in results.items():
            median = statistics.median(samples)
            print(f"{name:<55}{median:>9.1f}{percentile(samples, 0.99):>9.1f}{median / baseline:>16.2f}x")
        own_work(cloud.boto3_client("dynamodb"), table, max(5, args.requests // 5))
        if os.path.exists(CHROMIUM):
            renders = render_times(base, key.api_key, args.renders)
            print(
                f"\npage: first full render (200 integrations drawn), median of {args.renders}: "
                f"{statistics.median(renders):.0f} ms (min {min(renders):.0f}, max {max(renders):.0f})"
            )
        else:
            print(f"\npage render skipped: no Chromium at {CHROMIUM} (make chromium)")


if __name__ == "__main__":
    main()
