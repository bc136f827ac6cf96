"""MySQL and MariaDB, with PyMySQL: unbuffered streaming, keyset order, JSON columns parsed.

- One unbuffered `SSCursor` per read streams `SELECT … ORDER BY cursor, pk…` from the position,
  written as the expanded comparison `c > %s OR (c = %s AND id > %s)`, which MySQL's optimizer
  turns into an index range on (cursor, pk). A read stopped early closes the connection rather
  than draining the rest of the result.
- The session is read-only and in UTC (TIMESTAMP columns arrive as UTC; DATETIME columns are
  taken as UTC). Identifiers are backtick-quoted, every value is a parameter.
- JSON columns (MySQL's JSON type, MariaDB's JSON alias with its json_valid check) are parsed
  without rounding numbers; DECIMAL stays Decimal; BLOB and BINARY are bytes.
- TLS: `custom_fields.ssl_ca` (path or PEM text) turns on verified TLS; `ssl` = true without a CA
  uses TLS without verifying the server (only where the network is trusted).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pymysql
import pymysql.cursors

from churnguard.connectors.base import (
    CheckStatus,
    Page,
    Position,
    SourceError,
    Stream,
    TransientSourceError,
    position_after,
)
from churnguard.connectors.database import (
    DatabaseConnector,
    ca_file,
    flag,
    table_stream,
)
from churnguard.models import ProviderName, SourceOptions
from churnguard.pipeline.encoding import loads_exact

CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 300
EXACT_COUNT_LIMIT = 1_000_000

# (error codes, kind, transient, message); the first match wins.
_ERROR_RULES: tuple[tuple[frozenset[int], CheckStatus, bool, str], ...] = (
    (
        frozenset({1045, 1698, 1251}),
        CheckStatus.AUTHENTICATION_FAILED,
        False,
        "MySQL at {address} refused the configured login",
    ),
    (
        frozenset({1044, 1142, 1143, 1227}),
        CheckStatus.MISSING_PRIVILEGES,
        False,
        "the configured user may not read the source",
    ),
    (frozenset({1049}), CheckStatus.MISSING_OBJECT, False, "the configured database does not exist"),
    (frozenset({1146}), CheckStatus.MISSING_OBJECT, False, "a configured table does not exist"),
    (
        frozenset({2002, 2003, 2005, 2006, 2013, 2055}),
        CheckStatus.UNREACHABLE,
        True,
        "could not reach MySQL at {address} (error {code})",
    ),
    (
        frozenset({1040, 1205, 1213, 1969, 3024}),
        CheckStatus.ERROR,
        True,
        "MySQL could not complete the read (error {code}); it will be retried",
    ),
    (
        frozenset({1054, 1064}),
        CheckStatus.INVALID_CONFIGURATION,
        False,
        "MySQL rejected the read (error {code}): check the configured query, table and columns",
    ),
)


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class MySqlConnector(DatabaseConnector):
    provider = ProviderName.MYSQL

    _conn: Any = None
    _mariadb: bool = False

    def _connection(self) -> Any:
        if self._conn is not None and self._conn.open:
            return self._conn
        settings = self._settings()
        ssl: dict[str, Any] | None = None
        if settings.options.get("ssl_ca"):
            ssl = {"ca": ca_file(settings.options["ssl_ca"])}
        elif flag(settings.options.get("ssl")):
            ssl = {"check_hostname": False}
        conn = pymysql.connect(
            host=settings.host,
            port=settings.port,
            user=settings.username,
            password=settings.password,
            database=settings.database,
            charset="utf8mb4",
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            write_timeout=READ_TIMEOUT_S,
            autocommit=True,
            ssl=ssl,
            program_name="churnguard-sync",
        )
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute("SET SESSION TRANSACTION READ ONLY")
            cur.execute("SELECT VERSION()")
            (version,) = cur.fetchone() or ("",)
        self._mariadb = "mariadb" in str(version).lower()
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None and self._conn.open:
            self._conn.close()
        self._conn = None

    def _query(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._connection().cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())

    def _ping(self) -> None:
        self._query("SELECT 1")

    # ------------------------------------------------------------ discovery

    def _table_name(self, source: str) -> tuple[str, str]:
        database, _, table = source.rpartition(".")
        return database or self._settings().database, table

    def _discover(
        self, entity: str, source: str | None, options: SourceOptions, wanted: frozenset[str] | None
    ) -> Stream:
        conn = self._connection()
        if options.query:
            name, from_clause, catalog_key, json_columns = f"query:{entity}", _wrapped(options.query), [], []
        else:
            if source is None:
                raise SourceError(CheckStatus.INVALID_CONFIGURATION, f"entity {entity!r} names no table")
            database, table = self._table_name(source)
            name, from_clause = f"{database}.{table}", f"{quote(database)}.{quote(table)}"
            catalog_key = [
                row[0]
                for row in self._query(
                    "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = %s"
                    " AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                    (database, table),
                )
            ]
            json_columns = self._json_columns(database, table)
        # Reading no rows proves the table exists and is readable, and names its columns; the
        # catalog alone would hide a table the user has no privilege on.
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {from_clause} LIMIT 0", ())  # noqa: S608 - quoted identifiers
            columns = [column[0] for column in cur.description]
        return table_stream(
            entity, name, options, columns, catalog_key, self.cursor_field_for(entity), wanted, tuple(json_columns)
        )

    def _json_columns(self, database: str, table: str) -> list[str]:
        json_columns = [
            row[0]
            for row in self._query(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s"
                " AND DATA_TYPE = 'json'",
                (database, table),
            )
        ]
        if self._mariadb:  # MariaDB's JSON is LONGTEXT with a json_valid() check
            for (clause,) in self._query(
                "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS"
                " WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s",
                (database, table),
            ):
                text = str(clause).strip()
                if text.startswith("json_valid(`") and text.endswith("`)"):
                    json_columns.append(text[len("json_valid(`") : -2].replace("``", "`"))
        return json_columns

    def _probe(self, stream: Stream) -> None:
        self._query(f"SELECT {_columns(stream)} FROM {self._source(stream)} LIMIT 0")  # noqa: S608

    def _source(self, stream: Stream) -> str:
        if stream.query is not None:
            return _wrapped(stream.query)
        database, table = self._table_name(stream.source)
        return f"{quote(database)}.{quote(table)}"

    # ------------------------------------------------------------ reading

    def _count(self, stream: Stream, position: Position) -> int | None:
        if stream.query is None and position == Position():
            database, table = self._table_name(stream.source)
            rows = self._query(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (database, table),
            )
            if rows and rows[0][0] is not None and int(rows[0][0]) >= EXACT_COUNT_LIMIT:
                return int(rows[0][0])
        where, params = _where(stream, position)
        return int(self._query(f"SELECT COUNT(*) FROM {self._source(stream)}{where}", params)[0][0])  # noqa: S608

    def _pages(self, stream: Stream, position: Position, page_size: int, encoded: bool) -> Generator[Page, None, None]:
        conn = self._connection()
        where, params = _where(stream, position)
        query = f"SELECT {_columns(stream)} FROM {self._source(stream)}{where} ORDER BY {_order(stream)}"  # noqa: S608
        cursor = conn.cursor(pymysql.cursors.SSCursor)
        exhausted = False
        try:
            cursor.execute(query, params)
            names = tuple(column[0] for column in cursor.description)
            cursor_field, key, json_fields = stream.cursor_field, stream.primary_key, stream.json_fields
            while rows := cursor.fetchmany(page_size):
                page = [dict(zip(names, row, strict=True)) for row in rows]
                for field in json_fields:
                    for record in page:
                        if (value := record[field]) is not None:
                            record[field] = loads_exact(value)
                yield Page(page, position_after(page[-1], cursor_field, key))
            exhausted = True
        finally:
            if exhausted:
                cursor.close()
            else:
                _abandon(cursor)
                self.close()

    # ------------------------------------------------------------ errors

    def translate(self, exc: BaseException) -> SourceError | None:
        if isinstance(exc, pymysql.err.InterfaceError):
            return TransientSourceError(CheckStatus.UNREACHABLE, "the connection to MySQL was lost")
        if not isinstance(exc, pymysql.err.MySQLError):
            return None
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        details = {"mysql_error": code}
        for codes, kind, transient, message in _ERROR_RULES:
            if code in codes:
                error = TransientSourceError if transient else SourceError
                return error(kind, message.format(address=self._address(), code=code), details=details)
        if isinstance(exc, pymysql.err.ProgrammingError | pymysql.err.InternalError):
            return SourceError(
                CheckStatus.INVALID_CONFIGURATION,
                f"MySQL rejected the read (error {code}): check the configured query, table and columns",
                details=details,
            )
        return SourceError(CheckStatus.ERROR, f"MySQL failed the read (error {code})", details=details)

    def _address(self) -> str:
        try:
            return self._settings().address
        except SourceError:
            return "the configured address"


def _abandon(cursor: Any) -> None:
    """Stops a read midway without draining the rest of a large unbuffered result (what
    closing the cursor would do): the result is marked finished, then the connection closed.
    PyMySQL has no public call for this; `unbuffered_active` is what its own cleanup checks."""
    result = getattr(cursor, "_result", None)
    if result is not None:
        result.unbuffered_active = False


def _wrapped(query: str) -> str:
    """A configured query as a derived table; `%` doubled for PyMySQL's parameter formatting."""
    return "(\n" + query.replace("%", "%%") + "\n) AS src"


def _columns(stream: Stream) -> str:
    return "*" if stream.fields is None else ", ".join(quote(name) for name in stream.fields)


def _order(stream: Stream) -> str:
    names = ([stream.cursor_field] if stream.cursor_field else []) + list(stream.primary_key)
    return ", ".join(quote(name) for name in names)


def _after(columns: list[str], values: list[Any]) -> tuple[str, list[Any]]:
    """(c1, c2, …) > (v1, v2, …) spelled out, so MySQL uses an index range on the columns."""
    head, value = quote(columns[0]), values[0]
    if len(columns) == 1:
        return f"{head} > %s", [value]
    rest, rest_values = _after(columns[1:], values[1:])
    return f"({head} > %s OR ({head} = %s AND ({rest})))", [value, value, *rest_values]


def _where(stream: Stream, position: Position) -> tuple[str, tuple[Any, ...]]:
    key = list(stream.primary_key)
    if stream.cursor_field is None:
        if position.key is None:
            return "", ()
        clause, values = _after(key, list(position.key))
        return f" WHERE {clause}", tuple(values)
    cursor = quote(stream.cursor_field)
    if position.key is None:
        if position.cursor is None:
            return "", ()
        return f" WHERE {cursor} >= %s", (position.cursor,)
    if position.cursor is None:
        clause, values = _after(key, list(position.key))
        return f" WHERE ({cursor} IS NULL AND {clause}) OR {cursor} IS NOT NULL", tuple(values)
    clause, values = _after([stream.cursor_field, *key], [position.cursor, *position.key])
    return f" WHERE {clause}", tuple(values)
