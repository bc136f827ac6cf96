"""Connectors: one module per provider on one SDK (`base`), found through `registry`.

`resilience` holds the retry policy, rate limiter and circuit breaker every external call goes
through; `identifiers` validates table, collection and field names at registration time without
importing any database driver.
"""
