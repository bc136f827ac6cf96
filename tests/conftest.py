"""Fixtures every kind of test uses: the Stripe emulator, shared by integration and end-to-end
tests in one session (localstripe can be started on one event loop only)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def emulator() -> Iterator[Any]:
    """localstripe, once per session: its application is a module-level singleton that can be
    started on one event loop only."""
    from tests.support.fake_stripe import LocalStripe, patched_localstripe

    with patched_localstripe():
        local = LocalStripe().start()
        try:
            yield local
        finally:
            local.stop()


@pytest.fixture
def stripe_api(emulator: Any) -> Iterator[Any]:
    from tests.support.fake_stripe import StripeProxy

    emulator.reset()
    proxy = StripeProxy(emulator)
    with proxy:
        yield proxy


@pytest.fixture
def client(stripe_api: Any) -> Any:
    """A Stripe SDK client of the proxied emulator."""
    import stripe

    from tests.support.fake_stripe import API_KEY

    return stripe.StripeClient(API_KEY, base_addresses={"api": stripe_api.url}, max_network_retries=0)
