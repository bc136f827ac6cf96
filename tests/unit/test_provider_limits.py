"""Each provider's documented limits are its integrations' default pace; an integration's
requests_per_minute and concurrent_requests override them (issue 10: a global 60 a minute made
every SaaS sync crawl)."""

from __future__ import annotations

import pytest

from churnguard.models import ProviderName, SyncConfiguration
from churnguard.providers.registry import connector_class, supported_providers
from churnguard.resilience import RateLimiter

DOCUMENTED = {
    ProviderName.HUBSPOT: (600, 5),  # 100 per 10 s per private app
    ProviderName.STRIPE: (1_500, 5),  # 25 reads a second in test mode, 100 live
    ProviderName.SALESFORCE: (3_000, 5),
    ProviderName.MAILCHIMP: (6_000, 10),  # 10 simultaneous connections
    ProviderName.SENDGRID: (600, 5),
    ProviderName.CUSTOM: (60, 5),
}


@pytest.mark.parametrize("provider", sorted(supported_providers(), key=str))
def test_every_connector_declares_its_providers_limits_and_where_they_come_from(provider: ProviderName) -> None:
    limits = connector_class(provider).limits
    assert limits.requests_per_minute >= 1 and limits.concurrent_requests >= 1 and limits.source
    if provider in DOCUMENTED:
        assert (limits.requests_per_minute, limits.concurrent_requests) == DOCUMENTED[provider]


def test_an_integration_without_overrides_is_paced_by_its_provider_not_a_global_sixty() -> None:
    config = SyncConfiguration()
    assert config.requests_per_minute is None and config.concurrent_requests is None
    limiter = RateLimiter.from_sync_config(config, connector_class(ProviderName.HUBSPOT).limits)
    assert limiter._rate == pytest.approx(10.0), "600 a minute"


def test_an_integrations_overrides_win_over_the_provider() -> None:
    config = SyncConfiguration(requests_per_minute=120, concurrent_requests=1)
    limiter = RateLimiter.from_sync_config(config, connector_class(ProviderName.STRIPE).limits)
    assert limiter._rate == pytest.approx(2.0) and limiter._capacity == 1.0
