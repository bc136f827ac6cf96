"""MySQL and MariaDB, with PyMySQL: unbuffered streaming, keyset order, JSON columns parsed.

What it reads, its limits and quirks: README.md in this folder."""

from __future__ import annotations

import re
from collections.abc import Callable, Generator
from typing import Any, NamedTuple

import orjson
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
    encoded_key_and_cursor,
    flag,
    table_stream,
)
from churnguard.connectors.tls import ca_file
from churnguard.models import ProviderName, SourceOptions
from churnguard.pipeline.core import ENCODED_DATA
from churnguard.pipeline.encoding import DUMPS_OPTIONS, loads_exact

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
    # `updated_at` set by the application (or NOW()) at its transaction's start, visible at commit.
    lookback_seconds = 300

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
            # The checked address, unless a CA is given: PyMySQL verifies the certificate against
            # the host it was asked to connect to, which must then be the name.
            host=settings.host if ssl and "ca" in ssl else settings.connect_address,
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
        kinds: dict[str, str] = {}
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
            kinds = self._column_kinds(database, table, frozenset(json_columns))
        # Reading no rows proves the table exists and is readable, and names its columns; the
        # catalog alone would hide a table the user has no privilege on.
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {from_clause} LIMIT 0", ())  # noqa: S608 - quoted identifiers
            columns = [column[0] for column in cur.description]
        stream = table_stream(
            entity,
            name,
            options,
            columns,
            catalog_key,
            self.cursor_field_for(entity),
            wanted,
            tuple(json_columns),
            lookback_seconds=self.lookback_for(entity),
        )
        encodable = self._mariadb and list(kinds) == columns and _encodable(stream, kinds)
        return stream.model_copy(update={"column_kinds": kinds, "encodable": encodable})

    def _column_kinds(self, database: str, table: str, json_columns: frozenset[str]) -> dict[str, str]:
        """Each column's kind (pipeline.validation.KIND_TYPES), in the table's column order."""
        return {
            name: "json" if name in json_columns else column.kind for name, column in self._catalog(database, table)
        }

    def _catalog(self, database: str, table: str) -> list[tuple[str, _Column]]:
        return [
            (name, _Column(_kind(str(data_type), str(column_type), charset), charset, scale, nullable == "YES"))
            for name, data_type, column_type, charset, scale, nullable in self._query(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, NUMERIC_SCALE, IS_NULLABLE"
                " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s"
                " ORDER BY ORDINAL_POSITION",
                (database, table),
            )
        ]

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
        columns, rows_of = (
            _encoded_columns(stream, dict(self._catalog(*self._table_name(stream.source))))
            if encoded
            else (_columns(stream), None)
        )
        query = f"SELECT {columns} FROM {self._source(stream)}{where} ORDER BY {_order(stream)}"  # noqa: S608
        cursor = conn.cursor(pymysql.cursors.SSCursor)
        exhausted = False
        try:
            cursor.execute(query, params)
            names = tuple(column[0] for column in cursor.description)
            cursor_field, key, json_fields = stream.cursor_field, stream.primary_key, stream.json_fields
            if rows_of is not None:
                while rendered := _fetch_rendered(cursor, page_size):
                    page = rows_of(rendered)
                    yield Page(page, position_after(encoded_key_and_cursor(stream, page[-1]), cursor_field, key))
            else:
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


def _fetch_rendered(cursor: Any, limit: int) -> list[bytes]:
    """Up to `limit` rows of an encoded read (one column, never NULL) as bytes.

    PyMySQL spends more Python per row than the rest of the fast path together, so rows that
    are whole in its read buffer are taken from there: a row packet is a 4-byte header (length,
    sequence number) and one length-prefixed string. Anything else, a packet not yet buffered,
    the end of the result, an error, a row of 64 KB or more, goes through PyMySQL's own reading
    (`fetchone`), which also keeps its timeouts and error translation. Relies on PyMySQL's
    `_rfile` (a BufferedReader) and `_next_seq_id`; PyMySQL is pinned and the tests run this."""
    rows: list[bytes] = []
    while len(rows) < limit:
        result = cursor._result
        if result is not None and result.unbuffered_active:
            _take_buffered(result.connection, rows, limit)
            if len(rows) >= limit:
                break
        row = cursor.fetchone()
        if row is None:
            break
        rows.append(row[0] if isinstance(row[0], bytes) else row[0].encode())  # PyMySQL decodes text
    return rows


def _take_buffered(conn: Any, rows: list[bytes], limit: int) -> None:
    """Appends the row packets whole in the read buffer (up to `limit` rows) and consumes them."""
    try:
        buffer = conn._rfile.peek(1)  # what is buffered; one read of the socket when nothing is
    except OSError:
        return  # PyMySQL's own read raises it as the error it is
    sequence, position, end = conn._next_seq_id, 0, len(buffer)
    while len(rows) < limit and position + 5 <= end:
        length = buffer[position] | buffer[position + 1] << 8 | buffer[position + 2] << 16
        packet_end = position + 4 + length
        if buffer[position + 3] != sequence or packet_end > end:
            break
        size = buffer[position + 4]
        start = position + 5
        if size == 0xFC and length >= 3:  # a 2-byte length
            size, start = buffer[position + 5] | buffer[position + 6] << 8, position + 7
        elif size >= 0xFB:  # NULL, a longer length, EOF or an error packet: PyMySQL's
            break
        if start + size != packet_end:
            break
        rows.append(buffer[start:packet_end])
        position, sequence = packet_end, (sequence + 1) % 256
    if position:
        conn._rfile.read(position)  # buffered already: no socket read
        conn._next_seq_id = sequence


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


class _Column(NamedTuple):
    """What the catalog says of a column, as far as rendering its values goes."""

    kind: str
    charset: str | None
    scale: int | None
    nullable: bool


# How MariaDB renders each column kind as the JSON text the Python path writes for the value
# PyMySQL reads (`{c}`: the column, `%%`: a literal % in PyMySQL's formatting); NULL stays NULL.
# - decimal: str(Decimal) of the column's text, which is exponent notation below 1e-6 (and for a
#   zero with more than 6 decimals): `0.00000012` is "1.2E-7", `0.0000000` is "0E-7";
# - timestamp (DATETIME, TIMESTAMP, naive and taken as UTC): orjson's ISO form, microseconds only
#   when not zero; a date PyMySQL cannot make a datetime of (zero, invalid or year 0, exactly the
#   values where date arithmetic gives NULL) arrives as the server's text, so it is written so
#   (digits and punctuation: nothing to escape);
# - date: the server's text is the ISO date, and also what PyMySQL keeps of a date it cannot read;
# - text: JSON_QUOTE, which escapes as orjson does except for upper-case hex in the escapes of
#   some control characters (fixed in Python, `_lowered`);
# - json: selected raw and re-encoded in Python (`_encoded_columns`).
# Where the catalog proves a simpler form right (`_value`), that is used instead.
_SCALE = "IF(LOCATE('.', {c}) = 0, 0, LENGTH({c}) - LOCATE('.', {c}))"
_DIGITS = "TRIM(LEADING '0' FROM SUBSTRING_INDEX(ABS({c}), '.', -1))"
_TIMESTAMP = (
    "IF({c} + INTERVAL 0 SECOND IS NULL, CAST({c} AS CHAR), DATE_FORMAT({c},"
    " IF(MICROSECOND({c}) = 0, '%%Y-%%m-%%dT%%H:%%i:%%s+00:00', '%%Y-%%m-%%dT%%H:%%i:%%s.%%f+00:00')))"
)
_JSON: dict[str, str] = {
    "int": "{c}",
    "decimal": (
        "CASE WHEN ABS({c}) >= 0.000001 THEN CONCAT('\"', {c}, '\"')"
        f" WHEN {{c}} = 0 THEN IF({_SCALE} > 6, CONCAT('\"0E-', {_SCALE}, '\"'), CONCAT('\"', {{c}}, '\"'))"
        f" ELSE CONCAT('\"', IF({{c}} < 0, '-', ''), LEFT({_DIGITS}, 1), IF(LENGTH({_DIGITS}) > 1,"
        f" CONCAT('.', SUBSTRING({_DIGITS}, 2)), ''), 'E', LENGTH({_DIGITS}) - 1 - {_SCALE}, '\"') END"
    ),
    "text": "JSON_QUOTE(CONVERT({c} USING utf8mb4))",
    "bytes": "CONCAT('{{\"$base64\":\"', REPLACE(TO_BASE64({c}), CHAR(10), ''), '\"}}')",
    "timestamp": "CONCAT('\"', " + _TIMESTAMP + ", '\"')",
    "date": "CONCAT('\"', {c}, '\"')",
    "json": "CONVERT({c} USING utf8mb4)",
}
# Kinds whose JSON is the expression's text in quotes, nothing to escape (see `_value`).
_UNESCAPED = {"timestamp": _TIMESTAMP, "date": "{c}"}
_CURSOR_KINDS = frozenset({"int", "text", "date", "timestamp"})
_INT_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "bigint"})
_TEXT_TYPES = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set"})
_BINARY_TYPES = frozenset({"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"})
_UTF8 = frozenset({"utf8mb4", "utf8mb3", "utf8", "ascii"})  # bytes already UTF-8: no CONVERT
_UPPER_ESCAPE = re.compile(rb"\\(?:\\|u00[01][A-F])")
# Cuts an encoded row into its record id, cursor and JSON column values: JSON_QUOTE escapes NUL
# and MariaDB's json_valid() refuses it, so it occurs nowhere else in a rendered row.
_CUT = b"\x00"
# loads_exact takes its exact (slow) parser only for a run of 16 or more digits and points; this
# finds such a run as its regular expression does, several times faster, and spares the call.
_NUMBER_CHARACTERS = bytes(0x30 if byte in b"0123456789." else 0x20 for byte in range(256))
_LONG_RUN = b"0" * 16


def _kind(data_type: str, column_type: str, charset: str | None) -> str:
    """A column's kind from the catalog; "other" for one MariaDB cannot render exactly."""
    data_type = data_type.lower()
    if data_type in _INT_TYPES:
        return "other" if "zerofill" in column_type.lower() else "int"
    if data_type in {"decimal", "numeric"}:
        return "decimal"
    if data_type in _TEXT_TYPES:
        return "bytes" if charset in {None, "binary"} else "text"
    if data_type in _BINARY_TYPES:
        return "bytes"
    if data_type in {"datetime", "timestamp"}:
        return "timestamp"
    return "date" if data_type == "date" else "other"


def _encodable(stream: Stream, kinds: dict[str, str]) -> bool:
    """Whether MariaDB can render this stream's records: a table read whole, every column of a
    kind it renders, a single-column text or integer key, a cursor of a kind it renders."""
    if stream.query is not None or stream.fields is not None or len(stream.primary_key) != 1:
        return False
    if any(kind not in _JSON for kind in kinds.values()):
        return False
    if kinds.get(stream.primary_key[0]) not in {"int", "text"}:
        return False
    return stream.cursor_field is None or kinds.get(stream.cursor_field) in _CURSOR_KINDS


def _value(name: str, kind: str, column: _Column | None) -> list[str | bytes]:
    """One column's value as SQL pieces (expressions, and bytes for constants). The catalog, read
    again for each read, may prove a cheaper form right: no CONVERT of UTF-8 text or JSON, no
    exponent case for a scale of at most 6, no COALESCE for NOT NULL; kinds are checked first, so
    a table altered since discovery gets the general form."""
    c = quote(name).replace("%", "%%")
    known = column is not None and column.kind == ("text" if kind == "json" else kind)  # MariaDB: JSON is text
    nullable = not known or column is None or column.nullable
    utf8 = known and column is not None and column.charset in _UTF8
    inner = _UNESCAPED.get(kind)
    if kind == "decimal" and known and column is not None and (column.scale or 0) <= 6:
        inner = "{c}"
    if inner is not None:
        if not nullable:  # the quotes join the constants around the value
            return [b'"', inner.format(c=c), b'"']
        expression = f"CONCAT('\"', {inner.format(c=c)}, '\"')"
    elif kind in {"text", "json"} and utf8:
        expression = f"JSON_QUOTE({c})" if kind == "text" else c
    else:
        expression = _JSON[kind].format(c=c)
    return [f"COALESCE({expression}, 'null')"] if nullable else [expression]


def _sql(pieces: list[str | bytes]) -> str:
    """CONCAT of the pieces, runs of constant bytes as one hex literal (no charset, collation or
    escaping applies to them). The result is UTF-8 on the wire either way (its text pieces are
    UTF-8, and the session's results are utf8mb4); no CAST to binary, which costs the server."""
    merged: list[str] = []
    constant = b""
    for piece in pieces:
        if isinstance(piece, bytes):
            constant += piece
            continue
        if constant:
            merged.append(f"X'{constant.hex()}'")
            constant = b""
        merged.append(piece)
    if constant:
        merged.append(f"X'{constant.hex()}'")
    return f"CONCAT({', '.join(merged)})"


def _encoded_columns(
    stream: Stream, catalog: dict[str, _Column]
) -> tuple[str, Callable[[list[bytes]], list[dict[str, Any]]]]:
    """The select list of an encoded read and the function turning its rows into ENCODED_DATA
    rows. MariaDB renders each row as one binary string, the row's JSON with the key, the cursor
    and each JSON column's raw text cut out by NUL bytes: one column per row is what costs
    PyMySQL least, and the key and cursor are rendered once. Python puts the record id and cursor
    aside, re-encodes JSON values as the Python path does (MariaDB keeps a JSON column's text as
    inserted, `2.50` and spaces included) and joins the pieces."""
    (key,) = stream.primary_key
    cursor_field = stream.cursor_field
    pieces: list[str | bytes] = []
    cut: list[str] = []  # the columns cut out, in order
    for index, (name, kind) in enumerate(stream.column_kinds.items()):
        pieces.append((b"{" if index == 0 else b",") + orjson.dumps(name) + b":")
        value = _value(name, kind, catalog.get(name))
        if kind == "json" or name in {key, cursor_field}:
            cut.append(name)
            pieces += [_CUT, *value, _CUT]
        else:
            pieces += value
    pieces.append(b"}")
    count = 1 + 2 * len(cut)
    key_at = 1 + 2 * cut.index(key)
    quote_key = stream.column_kinds[key] == "int"
    cursor_at = None if cursor_field is None else 1 + 2 * cut.index(cursor_field)
    json_at = [1 + 2 * at for at, name in enumerate(cut) if stream.column_kinds[name] == "json"]
    source, cursor_name = stream.source, cursor_field or ""

    def rows_of(rows: list[bytes]) -> list[dict[str, Any]]:
        page: list[dict[str, Any]] = []
        append, split, loads, dumps, options = page.append, bytes.split, orjson.loads, orjson.dumps, DUMPS_OPTIONS
        numbers, long_run, cut, data = _NUMBER_CHARACTERS, _LONG_RUN, _CUT, ENCODED_DATA
        for rendered in rows:
            parts = split(_lowered(rendered) if b"\\" in rendered else rendered, cut)  # memchr first
            if len(parts) != count:
                raise SourceError(CheckStatus.ERROR, f"a JSON column of {source} holds text that is not JSON")
            for at in json_at:
                text = parts[at]
                parts[at] = dumps(
                    loads_exact(text) if long_run in text.translate(numbers) else loads(text), option=options
                )
            rendered_id = parts[key_at]
            record_id = None if rendered_id == b"null" else b'"' + rendered_id + b'"' if quote_key else rendered_id
            if cursor_at is None:
                append({key: record_id, data: b"".join(parts)})
            else:
                cursor = parts[cursor_at]
                append({key: record_id, cursor_name: None if cursor == b"null" else cursor, data: b"".join(parts)})
        return page

    return _sql(pieces), rows_of


def _lowered(rendered: bytes) -> bytes:
    """JSON_QUOTE's upper-case hex escapes of control characters in orjson's lower case; escaped
    backslashes are matched as pairs, so a backslash followed by the text `u001A` is left alone."""
    if b"\\u00" not in rendered:
        return rendered
    return _UPPER_ESCAPE.sub(lambda match: match.group(0).lower(), rendered)
