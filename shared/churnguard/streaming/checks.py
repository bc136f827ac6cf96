"""Whether a stream's source answers, checked before the stream is created, so a typo in an
address or a wrong password is a 422 at registration rather than a consumer failing later.

Every address is checked by the address guard first and connected to as resolved by it.
"""

from __future__ import annotations

import socket

from churnguard.models import IntegrationCredentials
from churnguard.netguard import BlockedAddressError, allowed_addresses
from churnguard.stream_models import StreamConfiguration, StreamType

CONNECT_TIMEOUT_SECONDS = 3.0


def source_problem(config: StreamConfiguration, credentials: IntegrationCredentials | None) -> str | None:
    """Why the source cannot be read, or None when it answered."""
    try:
        if config.stream_type is StreamType.REDIS_STREAMS:
            return _redis(config, credentials)
        if config.stream_type is StreamType.KAFKA and config.connection_config.bootstrap_servers:
            return _brokers(config.connection_config.bootstrap_servers)
        if config.stream_type is StreamType.WEBSOCKET:
            return _feed(config, credentials)
    except BlockedAddressError as exc:
        return str(exc)
    return None


def _redis(config: StreamConfiguration, credentials: IntegrationCredentials | None) -> str | None:
    from redis.exceptions import AuthenticationError, RedisError

    from churnguard.streaming.consumers import redis_client

    client = redis_client(config, credentials)
    try:
        client.ping()
    except AuthenticationError:
        return "Redis refused the credentials"
    except RedisError as exc:
        return f"Redis did not answer: {type(exc).__name__}"
    finally:
        client.close()
    return None


def _brokers(servers: list[str]) -> str | None:
    """At least one bootstrap server must accept a connection (the mapping finds the rest)."""
    failures = []
    for server in servers:
        host, _, port = server.rpartition(":")
        for address in allowed_addresses(host, int(port)):
            try:
                with socket.create_connection((address, int(port)), timeout=CONNECT_TIMEOUT_SECONDS):
                    return None
            except OSError as exc:
                failures.append(f"{server}: {exc.strerror or type(exc).__name__}")
    return "no bootstrap server accepted a connection (" + "; ".join(failures) + ")"


def _feed(config: StreamConfiguration, credentials: IntegrationCredentials | None) -> str | None:
    """The feed must accept a WebSocket handshake with the configured headers."""
    from websockets.exceptions import InvalidStatus, WebSocketException

    from churnguard.streaming.consumers import connect_feed

    try:
        with connect_feed(config, credentials):
            return None
    except InvalidStatus as exc:
        return f"the feed refused the handshake with HTTP {exc.response.status_code}"
    except (OSError, WebSocketException) as exc:
        return f"the feed did not answer: {type(exc).__name__}"
