"""What the database connectors share: the address, login and TLS options of an integration.

As the seed configures them: `base_url` is `host:port`, credentials are `basic_auth` (username,
password) with `custom_fields.database`; further `custom_fields` carry driver options such as
TLS for managed databases. A CA bundle may be given as a path or as the PEM text itself (RDS and
Atlas publish theirs), which is written once to a private temporary file.

The host is resolved and checked by `netguard` before any connection: link-local and metadata
addresses never, private ones only where the deployment allows them. Drivers connect to the
address that was checked where they can (see each connector).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson

from churnguard import netguard
from churnguard.connectors.base import CheckStatus, Connector, SourceError, Stream
from churnguard.models import DataSyncMode, IntegrationConfiguration, IntegrationCredentials, SourceOptions


@dataclass(frozen=True)
class DatabaseSettings:
    host: str
    port: int
    database: str
    username: str = field(repr=False)
    password: str = field(repr=False)
    options: dict[str, str] = field(repr=False, default_factory=dict)
    # The address the guard allowed, to connect to instead of resolving `host` again.
    connect_address: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def database_settings(
    config: IntegrationConfiguration, credentials: IntegrationCredentials, *, database_required: bool = True
) -> DatabaseSettings:
    host, _, port = config.base_url.rpartition(":")
    if not host or not port.isdigit():
        raise SourceError(CheckStatus.INVALID_CONFIGURATION, "base_url must be host:port for a database")
    custom = {key: value.get_secret_value() for key, value in credentials.custom_fields.items()}
    database = custom.pop("database", "")
    if database_required and not database:
        raise SourceError(
            CheckStatus.INVALID_CONFIGURATION, "credentials need custom_fields.database, the database to read"
        )
    host, port_number = host.strip("[]"), int(port)
    try:
        addresses = netguard.allowed_addresses(host, port_number)
    except netguard.BlockedAddressError as exc:
        raise SourceError(CheckStatus.INVALID_CONFIGURATION, f"base_url {exc}") from None
    return DatabaseSettings(
        host=host,
        port=port_number,
        connect_address=addresses[0],
        database=database,
        username=credentials.username.get_secret_value() if credentials.username else "",
        password=credentials.password.get_secret_value() if credentials.password else "",
        options=custom,
    )


def flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on", "required", "require"}


def table_stream(
    entity: str,
    name: str,
    options: SourceOptions,
    columns: list[str],
    catalog_key: list[str],
    cursor_field: str,
    wanted: frozenset[str] | None,
    json_fields: tuple[str, ...] = (),
    *,
    lookback_seconds: int = 0,
) -> Stream:
    """The stream of a table or query, with the rules PostgreSQL and MySQL share."""
    key = tuple(options.primary_key or catalog_key)
    if not key:
        raise SourceError(
            CheckStatus.INVALID_CONFIGURATION,
            f"{name} has no primary key; set source_options.{entity}.primary_key",
        )
    missing = [column for column in key if column not in columns]
    if missing:
        raise SourceError(CheckStatus.INVALID_CONFIGURATION, f"{name} has no column named {missing[0]!r}")
    cursor = cursor_field if cursor_field in columns else None
    if cursor is None and options.cursor_field:
        raise SourceError(CheckStatus.INVALID_CONFIGURATION, f"{name} has no column named {cursor_field!r}")
    fields = None
    if wanted is not None:
        keep = wanted | set(key) | ({cursor} if cursor else set())
        fields = tuple(column for column in columns if column in keep)
    modes = {DataSyncMode.FULL_SYNC} | ({DataSyncMode.INCREMENTAL} if cursor else set())
    return Stream(
        entity=entity,
        source=name,
        primary_key=key,
        cursor_field=cursor,
        sync_modes=frozenset(modes),
        query=options.query,
        fields=fields,
        json_fields=tuple(f for f in json_fields if fields is None or f in fields),
        lookback_seconds=lookback_seconds if cursor else 0,
    )


class DatabaseConnector(Connector):
    """A connector to a database configured the seed's way: host:port, basic_auth, custom_fields."""

    reads_in_cursor_order = True
    _database_settings: DatabaseSettings | None = None

    def key_and_cursor(self, stream: Stream, row: dict[str, Any], encoded: bool) -> tuple[tuple[Any, ...], Any]:
        if not encoded:
            return super().key_and_cursor(stream, row, encoded)
        typed = encoded_key_and_cursor(stream, row)
        return (typed[stream.primary_key[0]],), typed.get(stream.cursor_field) if stream.cursor_field else None

    def _settings(self) -> DatabaseSettings:
        """Read and checked once per connector: the host is resolved here, not per query."""
        if self._database_settings is None:
            self._database_settings = database_settings(self.config, self.credentials)
        return self._database_settings


def encoded_key_and_cursor(stream: Stream, row: dict[str, Any]) -> dict[str, Any]:
    """An encoded row's key and cursor as the values the Python path reads (for the position)."""
    key, cursor_field = stream.primary_key[0], stream.cursor_field
    record_id = orjson.loads(row[key])
    typed: dict[str, Any] = {key: int(record_id) if stream.column_kinds[key] == "int" else record_id}
    if cursor_field is not None:
        rendered = row[cursor_field]
        value = None if rendered is None else orjson.loads(rendered)
        kind = stream.column_kinds[cursor_field]
        try:
            if value is not None and kind in {"datetime", "timestamp"}:
                value = datetime.fromisoformat(value)
                value = value.replace(tzinfo=None) if kind == "timestamp" else value
            elif value is not None and kind == "date":
                value = date.fromisoformat(value)
        except ValueError:
            pass  # a date MariaDB keeps as the server's text (zero or invalid), as the Python path does
        typed[cursor_field] = value
    return typed
