"""SaaS connectors → S3 data lake: records per second and HTTP requests per 10,000 records.

Each connector syncs N records (default 10,000) of its main object from its local fake (the
same fakes the tests use, in tests/support, reproducing the provider's documented paging) with a
fixed response latency (default 20 ms), through the real engine, pipeline and S3 sink (moto,
in process). Reported per connector, medians of `--repeat` runs:

- records/s of the whole sync (prepare → extract steps → finalize);
- HTTP requests per 10,000 records, next to the minimum the provider's page size allows
  (Stripe 100 per page, HubSpot search 200, Salesforce 2,000 per query page, Mailchimp 1,000,
  SendGrid 500, the REST fake's configured page) — the bar is within 5% of it;
- 429 answers seen and left unhandled (a sync that failed on one). A second pass runs each
  connector with the fake's documented rate limit switched on, and checks every record still
  lands; for `hubspot-shared` another app spends 4 of the account's 5 searches a second.

Every integration runs with default settings: each provider's documented limits set the pace
(`hubspot-old-defaults` and `hubspot-search-old-defaults` are the same syncs at the former
global 60 requests a minute).

    .venv/bin/python -m benchmarks.saas_sync [--records 10000] [--latency 0.02] [--repeat 3]
        [--only stripe,hubspot,...] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "shared"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

BAR_REQUEST_OVERHEAD = 0.05
ORG = "org_bench"
BUCKET = "bench-lake"
TABLE = "bench"


@dataclass
class Case:
    """One connector against its fake: how to start and seed the fake and register the source."""

    key: str  # what --only takes
    name: str
    provider: str
    page_size: int  # the most records one request can return
    start: Callable[[float], Any]  # latency → a started fake (with .seen(), .stop())
    seed: Callable[[Any, int], None]
    integration: Callable[[Any], dict[str, Any]]  # fake → IntegrationConfiguration fields
    rate_limit: Callable[[Any], None] | None = None
    stop: Callable[[Any], None] = lambda fake: fake.stop()
    requests: Callable[[Any], int] = lambda fake: len(fake.seen())
    throttled: Callable[[Any], int] = lambda fake: fake.throttled()


@contextmanager
def aws() -> Iterator[dict[str, Any]]:
    """moto in process: the table, key and bucket a sync needs."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(name, value)
    import boto3
    from moto import mock_aws

    with mock_aws():
        dynamodb, kms, s3 = boto3.client("dynamodb"), boto3.client("kms"), boto3.client("s3")
        dynamodb.create_table(
            TableName=TABLE,
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            BillingMode="PAY_PER_REQUEST",
        )
        s3.create_bucket(Bucket=BUCKET)
        yield {"dynamodb": dynamodb, "kms": kms, "s3": s3, "key_arn": kms.create_key()["KeyMetadata"]["Arn"]}


def sync_once(case: Case, records: int, latency: float, *, rate_limited: bool = False) -> dict[str, Any]:
    from churnguard.crypto import CredentialCipher
    from churnguard.integrations import IntegrationService
    from churnguard.models import IntegrationConfiguration
    from churnguard.pipeline.sinks import S3DataLakeSink
    from churnguard.resilience import RetryPolicy
    from churnguard.runs import SyncRef
    from churnguard.store.circuit_breakers import CircuitBreakerStore
    from churnguard.store.integrations import IntegrationStore
    from churnguard.store.syncs import SyncStore
    from churnguard.sync.engine import SyncEngine

    fake = case.start(latency)
    try:
        case.seed(fake, records)
        if rate_limited and case.rate_limit is not None:
            case.rate_limit(fake)
        with aws() as cloud:
            integrations = IntegrationStore(cloud["dynamodb"], TABLE)
            service = IntegrationService(integrations, CredentialCipher(cloud["kms"], cloud["key_arn"]))
            fields = case.integration(fake)
            config = IntegrationConfiguration.model_validate(
                {"organization_id": ORG, "integration_name": f"bench {case.name}", **fields}
            )
            service.register(config)
            engine = SyncEngine(
                syncs=SyncStore(cloud["dynamodb"], TABLE),
                integrations=integrations,
                credentials=service.load_credentials,
                save_credentials=service.replace_credentials,
                breakers=CircuitBreakerStore(cloud["dynamodb"], TABLE),
                sinks=[S3DataLakeSink(cloud["s3"], BUCKET, RetryPolicy(attempts=3, base_delay=0.5))],
            )
            before = case.requests(fake)
            throttled_before = case.throttled(fake)
            started = time.perf_counter()
            run = engine.start_sync(ORG, config.integration_id, mode="full_sync")  # type: ignore[arg-type]
            ref = SyncRef(organization_id=ORG, integration_id=config.integration_id, sync_id=run.sync_id)
            engine.prepare(ref)
            while not engine.extract_step(ref, 600.0, 5_000_000).done:
                pass
            finished = engine.finalize(ref)
            seconds = time.perf_counter() - started
            return {
                "status": finished.status.value,
                "records": finished.records_written,
                "rejected": finished.records_rejected,
                "seconds": seconds,
                "requests": case.requests(fake) - before,
                "throttled": case.throttled(fake) - throttled_before,
                "errors": [e.message for e in finished.errors],
            }
    finally:
        case.stop(fake)


def bench(case: Case, records: int, latency: float, repeat: int) -> dict[str, Any]:
    runs = [sync_once(case, records, latency) for _ in range(repeat)]
    limited = sync_once(case, records, latency, rate_limited=True) if case.rate_limit is not None else None
    minimum = math.ceil(records / case.page_size)
    requests = statistics.median(r["requests"] for r in runs)
    per_10k = requests * 10_000 / records
    minimum_per_10k = minimum * 10_000 / records
    complete = all(r["status"] == "succeeded" and r["records"] == records for r in runs)
    return {
        "connector": case.name,
        "records": records,
        "records_per_second": statistics.median(r["records"] / r["seconds"] for r in runs),
        "requests": requests,
        "requests_per_10k": per_10k,
        "minimum_per_10k": minimum_per_10k,
        "overhead": per_10k / minimum_per_10k - 1,
        "meets_request_bar": per_10k <= minimum_per_10k * (1 + BAR_REQUEST_OVERHEAD),
        "complete": complete,
        "runs": runs,
        "rate_limited": limited,
        "unhandled_429": (
            None if limited is None else int(not (limited["status"] == "succeeded" and limited["records"] == records))
        ),
    }


def render(results: list[dict[str, Any]], latency: float) -> str:
    lines = [
        f"SaaS syncs, {results[0]['records'] if results else 0:,} records each, {latency * 1000:.0f} ms per response",
        "",
        "| connector | records/s | requests / 10k | minimum / 10k | overhead | ≤ 5%? | complete | 429 run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        limited = r["rate_limited"]
        limited_text = (
            "n/a"
            if limited is None
            else f"{limited['throttled']} × 429, {limited['records']:,} records, {limited['status']}"
        )
        lines.append(
            f"| {r['connector']} | {r['records_per_second']:,.0f} | {r['requests_per_10k']:.1f} | "
            f"{r['minimum_per_10k']:.1f} | {r['overhead'] * 100:+.1f}% | {'yes' if r['meets_request_bar'] else 'NO'} | "
            f"{'yes' if r['complete'] else 'NO'} | {limited_text} |"
        )
    return "\n".join(lines)


def _started(fake: Any) -> Any:
    fake.start()
    return fake


def _hubspot(
    mapped: bool,
    *,
    key: str | None = None,
    name: str | None = None,
    sync_config: dict[str, Any] | None = None,
    other_searches: int = 0,
    baseline: bool = False,
) -> Case:
    from tests.support.fake_hubspot import FakeHubSpot

    # Search only: the canonical contact's fields without HubSpot's object, so no associations.
    mappings = {"email": "email", "first_name": "first_name"} if mapped else {}
    lean = {"include_raw": False} if mapped else {}
    return Case(
        key=key or ("hubspot-search" if mapped else "hubspot"),
        name=name or ("hubspot (search only)" if mapped else "hubspot (with associations)"),
        provider="hubspot",
        page_size=200,
        start=lambda latency: _started(FakeHubSpot(latency=latency)),
        seed=lambda fake, n: fake.seed(n, "contacts"),
        integration=lambda fake: {
            "provider_name": "hubspot",
            "base_url": fake.url,
            "entity_mappings": {"contact": "contacts"},
            "credentials": {"credential_type": "api_key", "api_key": "pat-na1-test-token"},
            "sync_config": {"field_mappings": mappings, **lean, **(sync_config or {})},
        },
        rate_limit=None if baseline else (lambda fake: fake.limit_rates(other_searches=other_searches)),
    )


def _salesforce() -> Case:
    from tests.support.fake_salesforce import FakeSalesforce

    return Case(
        key="salesforce",
        name="salesforce",
        provider="salesforce",
        page_size=2_000,
        start=lambda latency: _started(FakeSalesforce(latency=latency)),
        seed=lambda fake, n: fake.seed(n, "Account"),
        integration=lambda fake: {
            "provider_name": "salesforce",
            "base_url": fake.url,
            "entity_mappings": {"account": "Account"},
            "credentials": {
                "credential_type": "oauth2",
                "access_token": "access-0",
                "refresh_token": "refresh-0",
                "custom_fields": {"client_id": "cg-connected-app", "client_secret": "client-secret-value-0123456789"},
            },
        },
        rate_limit=lambda fake: fake.limit_rate(3, 1.0),
    )


def _rest() -> Case:
    from pydantic import SecretStr

    from churnguard.ingestion import rule_credentials
    from churnguard.models import REST_SOURCE_OBJECT, RestAuthType
    from tests.support.fake_rest import TOKEN, FakeRest

    page = 100
    return Case(
        key="rest",
        name="rest (cursor paging)",
        provider="custom",
        page_size=page,
        start=lambda latency: _started(FakeRest(latency=latency, auth="bearer", max_page_size=page)),
        seed=lambda fake, n: fake.seed(n),
        integration=lambda fake: {
            "provider_name": "custom",
            "base_url": "",
            "entity_mappings": {"event": REST_SOURCE_OBJECT},
            "credentials": rule_credentials(RestAuthType.BEARER, {"token": SecretStr(TOKEN)}).to_plaintext(),
            "rest_source": {
                "url": f"{fake.url}/v1/events",
                "data_path": "data",
                "auth": {"type": "bearer"},
                "pagination": {
                    "type": "cursor",
                    "cursor_path": "meta.next_cursor",
                    "size_param": "limit",
                    "page_size": page,
                },
                "incremental": {"param": "updated_since", "cursor_field": "updated_at", "format": "iso8601"},
            },
        },
        rate_limit=lambda fake: fake.limit_rate(5, 1.0),
    )


class _StripeUnderTest:
    """localstripe in this process behind the tests' StripeProxy (events list, 429s). Its
    application can be served once per process, so one emulator is reset between runs."""

    _emulator: Any = None
    _patch: Any = None  # held: a dropped context manager would undo the patch when collected

    def __init__(self, latency: float) -> None:
        from tests.support.fake_stripe import LocalStripe, StripeProxy, patched_localstripe

        if _StripeUnderTest._emulator is None:
            _StripeUnderTest._patch = patched_localstripe()
            _StripeUnderTest._patch.__enter__()  # for the life of the process
            _StripeUnderTest._emulator = LocalStripe().start()
        self.emulator = _StripeUnderTest._emulator
        self.emulator.reset()
        self.proxy = StripeProxy(self.emulator, latency=latency)
        self.proxy.start()

    def stop(self) -> None:
        self.proxy.stop()


def _stripe() -> Case:
    from tests.support.fake_stripe import API_KEY

    return Case(
        key="stripe",
        name="stripe (customers)",
        provider="stripe",
        page_size=100,
        start=_StripeUnderTest,
        seed=lambda fake, n: fake.proxy.seed(n),
        integration=lambda fake: {
            "provider_name": "stripe",
            "base_url": fake.proxy.url,
            "entity_mappings": {"customer": "customers"},
            "credentials": {"credential_type": "api_key", "api_key": API_KEY},
        },
        rate_limit=lambda fake: fake.proxy.limit_rate(25, 1.0),
        stop=lambda fake: fake.stop(),
        requests=lambda fake: len(fake.proxy.seen()),
        throttled=lambda fake: len(fake.proxy.throttled_requests),
    )


def _mailchimp() -> Case:
    from tests.support.fake_mailchimp import API_KEY, FakeMailchimp

    return Case(
        key="mailchimp",
        name="mailchimp (members)",
        provider="mailchimp",
        page_size=1_000,
        start=lambda latency: _started(FakeMailchimp(latency=latency)),
        seed=lambda fake, n: fake.seed(n),
        integration=lambda fake: {
            "provider_name": "mailchimp",
            "base_url": f"{fake.url}/3.0",
            "entity_mappings": {"member": "members"},
            "credentials": {"credential_type": "api_key", "api_key": API_KEY},
        },
        rate_limit=lambda fake: fake.limit_rate(5, 1.0),
    )


def _sendgrid() -> Case:
    from tests.support.fake_sendgrid import API_KEY, FakeSendGrid

    return Case(
        key="sendgrid",
        name="sendgrid (bounces)",
        provider="sendgrid",
        page_size=500,
        start=lambda latency: _started(FakeSendGrid(latency=latency)),
        seed=lambda fake, n: fake.seed(n, "bounces"),
        integration=lambda fake: {
            "provider_name": "sendgrid",
            "base_url": fake.url,
            "entity_mappings": {"bounce": "bounces"},
            "credentials": {"credential_type": "api_key", "api_key": API_KEY},
        },
        rate_limit=lambda fake: fake.rate_limit(5, 1.0),
    )


def cases() -> dict[str, Case]:
    """Connector name → case. The fakes are the tests' own (tests/support)."""
    os.environ.setdefault("ALLOW_PRIVATE_NETWORK_SOURCES", "true")  # the fakes listen on 127.0.0.1
    built = [
        _stripe(),
        _hubspot(mapped=False),
        _hubspot(mapped=True),
        # What every integration got before providers declared their limits: 60 a minute.
        _hubspot(
            mapped=False,
            key="hubspot-old-defaults",
            name="hubspot (with associations, the old default 60/min)",
            sync_config={"requests_per_minute": 60, "concurrent_requests": 5},
            baseline=True,
        ),
        _hubspot(
            mapped=True,
            key="hubspot-search-old-defaults",
            name="hubspot (search only, the old default 60/min)",
            sync_config={"requests_per_minute": 60, "concurrent_requests": 5},
            baseline=True,
        ),
        # Another app of the account spends 4 of the 5 searches a second (its 429 run).
        _hubspot(mapped=True, key="hubspot-shared", name="hubspot (search only, 1 search/s left)", other_searches=4),
        _salesforce(),
        _mailchimp(),
        _sendgrid(),
        _rest(),
    ]
    return {case.key: case for case in built}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    available = cases()
    names = [n for n in args.only.split(",") if n] or list(available)
    results = [bench(available[name], args.records, args.latency, args.repeat) for name in names]
    print(json.dumps(results, indent=2, default=str) if args.json else render(results, args.latency))
    ok = all(r["complete"] and r["meets_request_bar"] and not r["unhandled_429"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
