"""Registration-time checks of the names a database integration will put into queries, and of
the address any integration's `base_url` names.

An address literal (in any spelling: 169.254.169.254, 2852039166, [::ffff:169.254.169.254]) that
sources may not reach is refused here, with no DNS lookup; a host name is checked when the
connector connects, against the addresses it resolves to then (see `netguard`).

Connectors quote every identifier (psycopg2.sql, backticks) and pass every value as a parameter,
so a hostile name cannot change a query. These rules make such a name fail early and clearly, at
registration, with a 422 naming the field, instead of at the first sync. No driver is imported.

- entity: lower-case letters, digits and `_`, starting with a letter;
- PostgreSQL table: `table` or `schema.table`, each part letters, digits, `_` or `$`, not
  starting with a digit or `$`, at most 63 characters (the unquoted-identifier alphabet; names
  are used case-sensitively, exactly as written);
- MySQL table: `table` or `database.table`, each part letters, digits, `_` or `$`, at most 64;
- MongoDB collection: letters, digits, `_`, `-` and `.`, not starting with `system.`;
- column and field names (cursor, primary key): one name of the same alphabets, no dots;
- a query (PostgreSQL, MySQL only) is one SELECT or WITH statement, no `;`, and needs
  `primary_key`. The session that runs it is read-only.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from churnguard import netguard
from churnguard.errors import ValidationFailedError
from churnguard.models import DATABASE_PROVIDERS, IntegrationSettings, ProviderName
from churnguard.pipeline.mapping import RowFilter, scoped

ENTITY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_PG_PART = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
_MY_PART = r"[A-Za-z0-9_$]{1,64}"
PATTERNS: dict[ProviderName, tuple[re.Pattern[str], re.Pattern[str], str]] = {
    # provider: (source name, column/field name, what the source is called)
    ProviderName.POSTGRESQL: (
        re.compile(rf"^({_PG_PART}\.)?{_PG_PART}$"),
        re.compile(rf"^{_PG_PART}$"),
        "a table name (table or schema.table: letters, digits, _ and $)",
    ),
    ProviderName.MYSQL: (
        re.compile(rf"^({_MY_PART}\.)?{_MY_PART}$"),
        re.compile(rf"^{_MY_PART}$"),
        "a table name (table or database.table: letters, digits, _ and $)",
    ),
    ProviderName.MONGODB: (
        re.compile(r"^(?!system\.)[A-Za-z0-9_-][A-Za-z0-9_.-]{0,119}$"),
        re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"),
        "a collection name (letters, digits, _, - and ., not system.*)",
    ),
}
_QUERY_START = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)
_COLUMN = "a column or field name (letters, digits and _, no dots)"
_ENTITY_RULE = "entity names are lower-case snake_case"


def source_problems(settings: IntegrationSettings) -> list[dict[str, str]]:
    """Every problem with the names and filters of `settings`, as {field, message}; the
    messages never repeat the offending value."""
    problems = _filter_problems(settings) + _address_problems(settings)
    if settings.provider_name in DATABASE_PROVIDERS:
        problems += _name_problems(settings)
        problems += _option_problems(settings)
    return problems


def _address_problems(settings: IntegrationSettings) -> list[dict[str, str]]:
    if not settings.base_url:
        return []
    if settings.provider_name in DATABASE_PROVIDERS:
        host = settings.base_url.rpartition(":")[0]
    else:
        host = urlsplit(settings.base_url).hostname or ""
    reason = netguard.refusal_for_host(host)
    if reason is None:
        return []
    advice = "" if netguard.private_networks_allowed() else "; private networks need AllowPrivateNetworkSources"
    return [{"field": "base_url", "message": f"sources may not connect to {reason}{advice}"}]


def _filter_problems(settings: IntegrationSettings) -> list[dict[str, str]]:
    problems = []
    entities = [*settings.entity_mappings, *settings.source_options]
    for entity in dict.fromkeys(entities or [""]):
        try:
            RowFilter(scoped(settings.sync_config.data_filters, entity, entities))
        except ValueError as exc:
            problems.append({"field": "sync_config.data_filters", "message": str(exc)})
            break
    return problems


def _name_problems(settings: IntegrationSettings) -> list[dict[str, str]]:
    source, column, source_kind = PATTERNS[settings.provider_name]
    problems = []
    for entity, name in settings.entity_mappings.items():
        if not ENTITY.match(entity):
            problems.append({"field": f"entity_mappings.{entity}", "message": _ENTITY_RULE})
        if not source.match(name):
            problems.append({"field": f"entity_mappings.{entity}", "message": f"must be {source_kind}"})
    if not column.match(settings.sync_config.incremental_field):
        problems.append({"field": "sync_config.incremental_field", "message": f"must be {_COLUMN}"})
    return problems


def _option_problems(settings: IntegrationSettings) -> list[dict[str, str]]:
    column = PATTERNS[settings.provider_name][1]
    problems = []
    for entity, options in settings.source_options.items():
        where = f"source_options.{entity}"
        if not ENTITY.match(entity):
            problems.append({"field": where, "message": _ENTITY_RULE})
        if options.cursor_field is not None and not column.match(options.cursor_field):
            problems.append({"field": f"{where}.cursor_field", "message": f"must be {_COLUMN}"})
        problems += [
            {"field": f"{where}.primary_key.{index}", "message": f"must be {_COLUMN}"}
            for index, key in enumerate(options.primary_key or [])
            if not column.match(key)
        ]
        if options.query is None:
            if entity not in settings.entity_mappings:
                problems.append({"field": where, "message": "needs an entity_mappings source or a query"})
            continue
        if settings.provider_name is ProviderName.MONGODB:
            problems.append({"field": f"{where}.query", "message": "queries are for PostgreSQL and MySQL"})
            continue
        if not _QUERY_START.match(options.query) or ";" in options.query:
            problems.append(
                {"field": f"{where}.query", "message": "must be a single SELECT or WITH statement without ';'"}
            )
        if not options.primary_key:
            problems.append({"field": f"{where}.primary_key", "message": "a query needs its primary key"})
    return problems


def validate_source_settings(settings: IntegrationSettings) -> None:
    """Raises ValidationFailedError (422) listing every bad name; the API and engine call this
    when an integration is created or changed."""
    problems = source_problems(settings)
    if problems:
        raise ValidationFailedError("the integration's source settings are not valid", {"fields": problems})
