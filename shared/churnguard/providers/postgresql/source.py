"""PostgreSQL, with psycopg2: server-side cursors, keyset order, faithful types.

What it reads, its limits and quirks: README.md in this folder."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Generator
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from psycopg2 import sql

from churnguard.connectors.base import (
    CheckStatus,
    Page,
    Position,
    SourceError,
    Stream,
    TransientSourceError,
    position_after,
)
from churnguard.connectors.database import DatabaseConnector, encoded_key_and_cursor, table_stream
from churnguard.connectors.tls import ca_file
from churnguard.models import ProviderName, SourceOptions
from churnguard.pipeline.core import ENCODED_DATA
from churnguard.pipeline.encoding import loads_exact

STATEMENT_TIMEOUT_MS = 300_000
CONNECT_TIMEOUT_S = 10
# Past this many rows (by the planner's statistics), progress uses the statistics, not count(*).
EXACT_COUNT_LIMIT = 1_000_000
SSL_MODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})

_AUTH_MESSAGES = re.compile(r"password authentication failed|role \".*\" does not exist|no pg_hba\.conf|authentication")
_MISSING_DATABASE = re.compile(r"database \".*\" does not exist")
_RETRYABLE_STATES = ("57014", "57P01", "57P02", "57P03", "40001", "40P01", "55P03")


class PostgresConnector(DatabaseConnector):
    provider = ProviderName.POSTGRESQL
    # `updated_at` is often now(): the transaction's start, visible only at its commit.
    lookback_seconds = 300

    _conn: Any = None

    def connect_arguments(self, application_name: str, options: str) -> dict[str, Any]:
        """libpq's arguments for this integration's server (the change log's sessions use them
        too): the checked address, the login, TLS."""
        settings = self._settings()
        arguments: dict[str, Any] = {
            # libpq connects to hostaddr and keeps host for TLS verification: no second lookup.
            "host": settings.host,
            "hostaddr": settings.connect_address,
            "port": settings.port,
            "dbname": settings.database,
            "user": settings.username,
            "password": settings.password,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": application_name,
            "options": options,
            "keepalives": 1,
            "keepalives_idle": 30,
        }
        sslmode = settings.options.get("sslmode")
        if sslmode is not None:
            if sslmode not in SSL_MODES:
                raise SourceError(CheckStatus.INVALID_CONFIGURATION, "custom_fields.sslmode is not a libpq sslmode")
            arguments["sslmode"] = sslmode
        if settings.options.get("sslrootcert"):
            arguments["sslrootcert"] = ca_file(settings.options["sslrootcert"])
        return arguments

    def _connection(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = psycopg2.connect(
            **self.connect_arguments("churnguard-sync", f"-c timezone=UTC -c statement_timeout={STATEMENT_TIMEOUT_MS}")
        )
        conn.set_session(readonly=True, autocommit=False)
        psycopg2.extras.register_default_json(conn, loads=loads_exact)
        psycopg2.extras.register_default_jsonb(conn, loads=loads_exact)
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    def _query(self, query: sql.Composable, params: list[Any]) -> list[tuple[Any, ...]]:
        """A short catalog or probe query on a client cursor; ends its transaction."""
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                rows: list[tuple[Any, ...]] = cur.fetchall() if cur.description is not None else []
                return rows
        finally:
            if not conn.closed:
                conn.rollback()

    def _ping(self) -> None:
        self._query(sql.SQL("SELECT 1"), [])

    # ------------------------------------------------------------ discovery

    @staticmethod
    def _table_name(source: str) -> tuple[str, str]:
        schema, _, table = source.rpartition(".")
        return schema or "public", table

    def _discover(
        self, entity: str, source: str | None, options: SourceOptions, wanted: frozenset[str] | None
    ) -> Stream:
        if options.query:
            columns, kinds = self._query_columns(options.query)
            catalog_key: list[str] = []
            name = f"query:{entity}"
        else:
            if source is None:
                raise SourceError(CheckStatus.INVALID_CONFIGURATION, f"entity {entity!r} names no table")
            schema, table = self._table_name(source)
            found = self._query(
                sql.SQL(
                    "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'v', 'm', 'p', 'f')"
                ),
                [schema, table],
            )
            if not found:
                raise SourceError(CheckStatus.MISSING_OBJECT, f"table {schema}.{table} does not exist")
            oid = found[0][0]
            described = self._query(
                sql.SQL(
                    "SELECT a.attname, t.typname, t.typtype, e.typname FROM pg_catalog.pg_attribute a"
                    " JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
                    " LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'"
                    " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
                ),
                [oid],
            )
            columns = [row[0] for row in described]
            kinds = {row[0]: _kind(row[1], row[2], row[3]) for row in described}
            catalog_key = [
                row[0]
                for row in self._query(
                    sql.SQL(
                        "SELECT a.attname FROM pg_catalog.pg_index i"
                        " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)"
                        " JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
                        " WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.ord"
                    ),
                    [oid],
                )
            ]
            name = f"{schema}.{table}"
        stream = table_stream(
            entity,
            name,
            options,
            columns,
            catalog_key,
            self.cursor_field_for(entity),
            wanted,
            lookback_seconds=self.lookback_for(entity),
        )
        return stream.model_copy(update={"column_kinds": kinds, "encodable": _encodable(stream, kinds)})

    def _query_columns(self, query: str) -> tuple[list[str], dict[str, str]]:
        """A query's columns and their kinds, from running it for no rows."""
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("SELECT * FROM ({}\n) AS src LIMIT 0").format(_raw(query)), [])
                described = [(column.name, column.type_code) for column in cur.description]
                cur.execute(
                    "SELECT t.oid, t.typname, t.typtype, e.typname FROM pg_catalog.pg_type t"
                    " LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'"
                    " WHERE t.oid = ANY(%s)",
                    [[oid for _, oid in described]],
                )
                types = {row[0]: _kind(row[1], row[2], row[3]) for row in cur.fetchall()}
        finally:
            if not conn.closed:
                conn.rollback()
        return [name for name, _ in described], {name: types.get(oid, "other") for name, oid in described}

    def _probe(self, stream: Stream) -> None:
        self._query(sql.SQL("SELECT {} FROM {} LIMIT 0").format(_columns(stream), _source(stream)), [])

    # ------------------------------------------------------------ reading

    def _count(self, stream: Stream, position: Position) -> int | None:
        if stream.query is None and position == Position():
            schema, table = self._table_name(stream.source)
            estimate = self._query(
                sql.SQL(
                    "SELECT c.reltuples::bigint FROM pg_catalog.pg_class c"
                    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s"
                ),
                [schema, table],
            )
            if estimate and estimate[0][0] >= EXACT_COUNT_LIMIT:
                return int(estimate[0][0])
        where, params = _where(stream, position)
        rows = self._query(sql.SQL("SELECT count(*) FROM {}{}").format(_source(stream), where), params)
        return int(rows[0][0])

    def _pages(self, stream: Stream, position: Position, page_size: int, encoded: bool) -> Generator[Page, None, None]:
        conn = self._connection()
        where, params = _where(stream, position)
        columns = _encoded_columns(stream) if encoded else _columns(stream)
        query = sql.SQL("SELECT {} FROM {}{} ORDER BY {}").format(columns, _source(stream), where, _order(stream))
        cursor = conn.cursor(name=f"churnguard_{secrets.token_hex(8)}")
        cursor.itersize = page_size
        if encoded:  # every column is rendered JSON text: take it as bytes, skip decoding UTF-8
            psycopg2.extensions.register_type(_TEXT_AS_BYTES, cursor)
        try:
            cursor.execute(query, params)
            names: tuple[str, ...] | None = None
            cursor_field, key = stream.cursor_field, stream.primary_key
            if encoded:
                names = (key[0], *([cursor_field] if cursor_field else []), ENCODED_DATA)
            while rows := cursor.fetchmany(page_size):
                if names is None:
                    names = tuple(column.name for column in cursor.description)
                page = [dict(zip(names, row, strict=True)) for row in rows]
                last = encoded_key_and_cursor(stream, page[-1]) if encoded else page[-1]
                yield Page(page, position_after(last, cursor_field, key))
        finally:
            if not conn.closed:
                try:
                    cursor.close()
                    conn.rollback()
                except psycopg2.Error:
                    self.close()

    # ------------------------------------------------------------ errors

    def translate(self, exc: BaseException) -> SourceError | None:
        if isinstance(exc, psycopg2.InterfaceError):
            return TransientSourceError(CheckStatus.UNREACHABLE, "the connection to PostgreSQL was lost")
        if not isinstance(exc, psycopg2.Error):
            return None
        state = exc.pgcode or ""
        kind, transient, message = _classify(state, "" if state else str(exc), self._address())
        error = TransientSourceError if transient else SourceError
        return error(kind, message, details={"sqlstate": state} if state else None)

    def _address(self) -> str:
        try:
            return self._settings().address
        except SourceError:
            return "the configured address"


# (SQLSTATE prefixes, kind, transient, message); the first match wins.
_SQLSTATE_RULES: tuple[tuple[tuple[str, ...], CheckStatus, bool, str], ...] = (
    (("28",), CheckStatus.AUTHENTICATION_FAILED, False, "PostgreSQL at {address} refused the configured login"),
    (("3D000",), CheckStatus.MISSING_OBJECT, False, "the configured database does not exist"),
    (("42P01",), CheckStatus.MISSING_OBJECT, False, "a configured table does not exist"),
    (("42501",), CheckStatus.MISSING_PRIVILEGES, False, "the configured user may not SELECT from the source"),
    (("08",), CheckStatus.UNREACHABLE, True, "the connection to PostgreSQL at {address} failed (SQLSTATE {state})"),
    (
        ("53", *_RETRYABLE_STATES),
        CheckStatus.ERROR,
        True,
        "PostgreSQL could not complete the read (SQLSTATE {state}); it will be retried",
    ),
    (
        ("42",),
        CheckStatus.INVALID_CONFIGURATION,
        False,
        "PostgreSQL rejected the read (SQLSTATE {state}): check the configured query, table and columns",
    ),
)


def _classify(state: str, text: str, address: str) -> tuple[CheckStatus, bool, str]:
    """Kind, transience and our own message for a psycopg2 error. Without a SQLSTATE the
    connection failed before a session existed and libpq's text is all there is to go on."""
    if not state:
        if _AUTH_MESSAGES.search(text):
            return CheckStatus.AUTHENTICATION_FAILED, False, f"PostgreSQL at {address} refused the configured login"
        if _MISSING_DATABASE.search(text):
            return CheckStatus.MISSING_OBJECT, False, "the configured database does not exist"
        reason = _connection_reason(text)
        return CheckStatus.UNREACHABLE, True, f"could not connect to PostgreSQL at {address} ({reason})"
    for prefixes, kind, transient, message in _SQLSTATE_RULES:
        if state.startswith(prefixes):
            return kind, transient, message.format(address=address, state=state)
    return CheckStatus.ERROR, False, f"PostgreSQL failed the read (SQLSTATE {state})"


def _connection_reason(text: str) -> str:
    lowered = text.lower()
    for needle, reason in (
        ("connection refused", "connection refused"),
        ("timeout expired", "timed out"),
        ("could not translate host name", "unknown host"),
        ("certificate", "TLS certificate rejected"),
        ("ssl", "TLS negotiation failed"),
        ("no route to host", "no route to host"),
        ("network is unreachable", "network unreachable"),
    ):
        if needle in lowered:
            return reason
    return "connection failed"


def _raw(query: str) -> sql.Composable:
    """A configured query, wrapped on its own lines so a trailing comment cannot swallow ours;
    `%` is doubled because the composed statement goes through parameter formatting."""
    return sql.SQL("\n" + query.replace("%", "%%"))


# Column kinds by PostgreSQL type, and how each kind is rendered when PostgreSQL encodes rows
# (`{c}`: the column) so that the JSON is what the Python path writes (pipeline.encoding). A
# type not listed is kind "other", and a stream with one is encoded in Python.
_KINDS: dict[str, str] = {
    **dict.fromkeys(("int2", "int4", "int8", "oid"), "int"),
    **dict.fromkeys(("text", "varchar", "bpchar", "name", "citext", "uuid"), "text"),
    "bool": "bool",
    "numeric": "decimal",
    "float8": "float",
    "timestamptz": "datetime",
    "timestamp": "timestamp",
    "date": "date",
    "json": "json",
    "jsonb": "json",
    "bytea": "bytes",
}
_ARRAY_ELEMENTS = frozenset({"int2", "int4", "int8", "text", "varchar", "bool", "uuid"})
# Each kind's value as JSON text, rendered by PostgreSQL exactly as the Python path writes it
# (`{c}`: the column; NULL stays NULL). Datetimes: PostgreSQL's own rendering, in the session's
# UTC, matches orjson's except that it trims trailing zeros of a fraction, so those values are
# formatted explicitly. Cursors use the same rendering, byte for byte: they go into dedupe keys.
_DATETIME = (
    "CASE WHEN mod(date_part('microseconds', {v})::bigint, 10) = 0"
    " AND mod(date_part('microseconds', {v})::bigint, 1000000) <> 0"
    " THEN to_json(to_char({v} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'))"
    " ELSE to_json({v}) END::text"
)
_JSON: dict[str, str] = {
    "int": "{c}::text",
    "text": "to_json({c})::text",
    "bool": "{c}::text",
    "decimal": "to_json({c}::text)::text",  # exact, as a string
    "float": "CASE WHEN {c} IN ('NaN', 'Infinity', '-Infinity') THEN NULL ELSE to_json({c})::text END",
    "datetime": _DATETIME.format(v="{c}"),
    "timestamp": _DATETIME.format(v="({c} AT TIME ZONE 'UTC')"),  # naive is UTC
    "date": "to_json({c})::text",
    "json": "{c}::text",
    "bytes": "'{{\"$base64\":\"' || translate(encode({c}, 'base64'), E'\\n', '') || '\"}}'",
    "array": "to_json({c})::text",
}
_CURSOR_KINDS = frozenset({"int", "text", "date", "datetime", "timestamp"})
_TEXT_AS_BYTES = psycopg2.extensions.new_type((25,), "CHURNGUARD_TEXT_AS_BYTES", psycopg2.extensions.BYTES)


def _kind(typname: str, typtype: str, element: str | None) -> str:
    if typtype == "e":
        return "text"  # an enum reads as its label
    if element is not None:
        return "array" if element in _ARRAY_ELEMENTS else "other"
    return _KINDS.get(typname, "other")


def _source(stream: Stream) -> sql.Composable:
    """The table or query, always as `src`, which every column reference names."""
    if stream.query is not None:
        return sql.SQL("({}\n) AS src").format(_raw(stream.query))
    schema, table = PostgresConnector._table_name(stream.source)
    return sql.SQL("{} AS src").format(sql.Identifier(schema, table))


def _column(name: str) -> sql.Identifier:
    return sql.Identifier("src", name)


def _columns(stream: Stream) -> sql.Composable:
    if stream.fields is None:
        return sql.SQL("src.*")
    return sql.SQL(", ").join(_column(name) for name in stream.fields)


def _encoded_columns(stream: Stream) -> sql.Composable:
    """The record id, the cursor and the whole row, each as JSON text: everything
    rendered by PostgreSQL (on its own core) as the Python path would write it, so Python
    decodes no value but the last row's key and cursor (for the position). The row's JSON is
    concatenated rather than built with row_to_json, which costs the server twice as much."""
    (key,) = stream.primary_key
    leading = [sql.SQL("to_json({}::text)::text").format(_column(key))]
    if stream.cursor_field is not None:
        template = _JSON[stream.column_kinds[stream.cursor_field]]
        leading.append(sql.SQL(template).format(c=_column(stream.cursor_field)))
    members = []
    for index, (name, kind) in enumerate(stream.column_kinds.items()):
        label = ("{" if index == 0 else ",") + json.dumps(name) + ":"
        members.append(
            sql.SQL("{} || coalesce({}, 'null')").format(
                sql.Literal(label), sql.SQL(_JSON[kind]).format(c=_column(name))
            )
        )
    document = sql.SQL(" || ").join([*members, sql.Literal("}")])
    return sql.SQL("{}, {}").format(sql.SQL(", ").join(leading), document)


def _encodable(stream: Stream, kinds: dict[str, str]) -> bool:
    """Whether PostgreSQL can render this stream's records: every column of a known kind, the
    whole row read, a single-column text or integer key, a cursor of a kind it can render."""
    if stream.fields is not None or "other" in kinds.values() or len(stream.primary_key) != 1:
        return False
    if kinds.get(stream.primary_key[0]) not in {"int", "text"}:
        return False
    return stream.cursor_field is None or kinds.get(stream.cursor_field) in _CURSOR_KINDS


def _order(stream: Stream) -> sql.Composable:
    keys = [_column(name) for name in stream.primary_key]
    if stream.cursor_field is None:
        return sql.SQL(", ").join(keys)
    return sql.SQL(", ").join([sql.SQL("{} NULLS FIRST").format(_column(stream.cursor_field)), *keys])


def _where(stream: Stream, position: Position) -> tuple[sql.Composable, list[Any]]:
    keys = [_column(name) for name in stream.primary_key]
    key_tuple = sql.SQL("({})").format(sql.SQL(", ").join(keys))
    holders = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(keys)))
    cursor = _column(stream.cursor_field) if stream.cursor_field else None
    if cursor is None:
        if position.key is None:
            return sql.SQL(""), []
        return sql.SQL(" WHERE {} > {}").format(key_tuple, holders), list(position.key)
    if position.key is None:
        if position.cursor is None:
            return sql.SQL(""), []
        return sql.SQL(" WHERE {} >= %s").format(cursor), [position.cursor]
    if position.cursor is None:
        return (
            sql.SQL(" WHERE ({c} IS NULL AND {k} > {h}) OR {c} IS NOT NULL").format(c=cursor, k=key_tuple, h=holders),
            list(position.key),
        )
    row = sql.SQL("({})").format(sql.SQL(", ").join([cursor, *keys]))
    row_holders = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * (len(keys) + 1)))
    return sql.SQL(" WHERE {} > {}").format(row, row_holders), [position.cursor, *position.key]
