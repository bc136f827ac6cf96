"""MySQL's and MariaDB's binary log for change data capture, read with mysql-replication as a
replica would. What it needs from the server and its quirks: README.md here."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from hashlib import blake2b
from typing import Any

import pymysql

from churnguard.connectors.base import CheckStatus, Position, SourceError, Stream
from churnguard.connectors.changes import LogBatch, LoggedChange, LogState, PositionLost, SnapshotStart
from churnguard.pipeline.core import CHANGE_CURSOR, CHANGE_TIME
from churnguard.pipeline.encoding import loads_exact
from churnguard.pipeline.records import Operation
from churnguard.providers.mysql.source import CONNECT_TIMEOUT_S, MySqlConnector

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0  # the server's heartbeat while idle: how often a read looks at its deadline
_LOG_UNAVAILABLE = 1236  # ER_MASTER_FATAL_ERROR_READING_BINLOG: e.g. the file was purged
_FILE_NUMBER = re.compile(r"^(.*)\.(\d+)$")
_DDL = re.compile(r"^\s*(ALTER|CREATE|DROP|RENAME|TRUNCATE)\b", re.IGNORECASE)
_TRUNCATE = re.compile(r"^\s*TRUNCATE\s+(?:TABLE\s+)?`?(?:([^`.\s]+)`?\.`?)?([^`\s;]+)`?", re.IGNORECASE)
_REPLICATION_GRANTS = ("REPLICATION SLAVE", "REPLICATION REPLICA", "ALL PRIVILEGES ON *.*", "SUPER")
_MONITOR_GRANTS = ("REPLICATION CLIENT", "BINLOG MONITOR", "ALL PRIVILEGES ON *.*", "SUPER")


def position_text(file_number: int, transaction_start: int, ordinal: int) -> str:
    """A change's position: the binary log file's number, where its transaction starts in it,
    then its place in the transaction; as text that sorts in log order."""
    return f"{file_number:08d}.{transaction_start:012d}.{ordinal:08d}"


def parse_position(text: str) -> tuple[int, int, int]:
    number, start, ordinal = text.split(".")
    return int(number), int(start), int(ordinal)


def replica_server_id(integration_id: str) -> int:
    """A server id of our own per integration (a replica's must differ from every other's)."""
    return 1_000_000 + int.from_bytes(blake2b(integration_id.encode(), digest_size=4).digest()) % 1_000_000_000


class MySqlChangeLog(SnapshotStart):
    def __init__(self, connector: MySqlConnector, integration_id: str) -> None:
        self._connector = connector
        self._server_id = replica_server_id(integration_id)

    def _rows(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._connector._query(query, params)

    def _settings(self) -> dict[str, Any]:
        settings = self._connector._settings()
        return {
            "host": settings.connect_address,
            "port": settings.port,
            "user": settings.username,
            "password": settings.password,
            "connect_timeout": CONNECT_TIMEOUT_S,
        }

    def close(self) -> None:
        self._connector.close()

    # ------------------------------------------------------------------ readiness
    def problems(self, streams: list[Stream]) -> list[str]:
        found: list[str] = []
        (log_bin, binlog_format, row_image) = self._rows("SELECT @@log_bin, @@binlog_format, @@binlog_row_image")[0]
        if not int(log_bin):
            found.append("the binary log is off: start the server with log_bin (on Amazon RDS: automated backups on)")
        if str(binlog_format).upper() != "ROW":
            found.append(
                f"binlog_format is {binlog_format}: SET GLOBAL binlog_format = 'ROW' (and in its configuration)"
            )
        if str(row_image).upper() != "FULL":
            found.append(f"binlog_row_image is {row_image}: SET GLOBAL binlog_row_image = 'FULL'")
        metadata = self._variable("binlog_row_metadata")
        if metadata is None or metadata.upper() != "FULL":
            found.append(
                "binlog_row_metadata is not FULL: SET GLOBAL binlog_row_metadata = 'FULL' (each change then"
                " names its columns, so a column added or dropped is followed; MySQL 8.0.1+, MariaDB 10.5+)"
            )
        grants = " ".join(str(row[0]).upper() for row in self._rows("SHOW GRANTS"))
        user = self._connector._settings().username
        if not any(grant in grants for grant in _REPLICATION_GRANTS):
            found.append(f"user {user} may not read the binary log: GRANT REPLICATION SLAVE ON *.* TO {user}")
        if not any(grant in grants for grant in _MONITOR_GRANTS):
            found.append(
                f"user {user} may not list the binary logs: GRANT BINLOG MONITOR ON *.* TO {user}"
                " (MySQL: REPLICATION CLIENT)"
            )
        found += [
            f"entity {stream.entity} is read from a query; change data capture reads tables"
            for stream in streams
            if stream.query is not None
        ]
        return found

    def _variable(self, name: str) -> str | None:
        rows = self._rows("SHOW GLOBAL VARIABLES LIKE %s", (name,))
        return str(rows[0][1]) if rows else None

    # ------------------------------------------------------------------ snapshot
    def snapshot(self, streams: list[Stream], page_size: int) -> Iterator[tuple[Stream, list[dict[str, Any]]]]:
        """Reads every table in one consistent snapshot whose binary log position is known
        exactly: MariaDB reports it for the snapshot itself (binlog_snapshot_file/position);
        MySQL needs a brief global read lock (FLUSH TABLES WITH READ LOCK, the RELOAD privilege)
        while the snapshot starts."""
        connection = self._connector._connection()
        with connection.cursor() as cur:
            if self._connector._mariadb:
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
                status = {str(name).lower(): str(value) for name, value in cur.fetchall()}
                file, offset = status["binlog_snapshot_file"], int(status["binlog_snapshot_position"])
            else:
                cur.execute("FLUSH TABLES WITH READ LOCK")
                try:
                    cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    cur.execute("SHOW MASTER STATUS")
                    file, offset = cur.fetchone()[:2]
                finally:
                    cur.execute("UNLOCK TABLES")
        self._begin_snapshot(position_text(_file_number(file), int(offset), 0))
        try:
            for stream in streams:
                for page in self._connector._pages(stream, Position(), page_size, encoded=False):
                    yield stream, page.rows
        finally:
            if connection.open:
                connection.rollback()

    # ------------------------------------------------------------------ streaming
    def open(self, streams: list[Stream], after: str | None) -> MySqlSession:
        from pymysqlreplication import BinLogStreamReader
        from pymysqlreplication.event import (
            GtidEvent,
            HeartbeatLogEvent,
            MariadbGtidEvent,
            QueryEvent,
            RotateEvent,
            XidEvent,
        )
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

        if after is None:
            raise SourceError(CheckStatus.ERROR, "no position to read the binary log from")
        number, start, _ = parse_position(after)
        tables = {self._connector._table_name(stream.source): stream for stream in streams}
        reader = BinLogStreamReader(
            connection_settings=self._settings(),
            server_id=self._server_id,
            resume_stream=True,
            blocking=True,
            log_file=f"{self._base_name()}.{number:06d}",
            log_pos=start,
            only_events=[
                WriteRowsEvent,
                UpdateRowsEvent,
                DeleteRowsEvent,
                XidEvent,
                QueryEvent,
                GtidEvent,
                MariadbGtidEvent,
                RotateEvent,
                HeartbeatLogEvent,
            ],
            only_schemas=sorted({database for database, _ in tables}),
            slave_heartbeat=HEARTBEAT_SECONDS,
            # The classic dump by file and position, MariaDB included: mysql-replication's MariaDB
            # dump ignores the file and position and starts where the GTID state it is given says.
            is_mariadb=False,
            enable_logging=False,
        )
        return MySqlSession(reader, tables)

    def _base_name(self) -> str:
        (name, *_), *_ = self._rows("SHOW BINARY LOGS")
        match = _FILE_NUMBER.match(str(name))
        if match is None:
            raise SourceError(CheckStatus.ERROR, f"binary log {name} is not named <base>.<number>")
        return match.group(1)

    # ------------------------------------------------------------------ guardian
    def state(self, position: str | None) -> LogState:
        """The binary log after our position (what the server holds that we have not read) and,
        where logs expire, how long until the file holding our position does."""
        logs = [(str(name), int(size)) for name, size, *_ in self._rows("SHOW BINARY LOGS")]
        if position is None:
            return LogState(True, False, None, None, detail="no position yet")
        number, start, _ = parse_position(position)
        numbered = [(_file_number(name), name, size) for name, size in logs]
        ours = [entry for entry in numbered if entry[0] == number]
        if not ours:
            oldest = numbered[0][1] if numbered else "none"
            return LogState(
                True,
                True,
                None,
                None,
                detail=f"binary log {number:06d} holding our position was purged (the oldest left is {oldest})",
            )
        retained = sum(size for file_number, _, size in numbered if file_number >= number) - start
        seconds_left = None
        expiry = self._expiry_seconds()
        if expiry:
            created = self._created_at(ours[0][1])
            if created is not None:
                seconds_left = max(0.0, created + expiry - time.time())
        return LogState(
            True,
            False,
            max(0, retained),
            None,
            seconds_left=seconds_left,
            detail=f"binary log {ours[0][1]} at {start}; logs expire after {expiry or 'never'} s",
        )

    def _expiry_seconds(self) -> int:
        seconds = self._variable("binlog_expire_logs_seconds")
        if seconds is not None and int(seconds):
            return int(seconds)
        days = self._variable("expire_logs_days")
        return int(float(days) * 86_400) if days else 0

    def _created_at(self, file: str) -> float | None:
        """When a binary log file was started: its format description event's time."""
        from pymysqlreplication import BinLogStreamReader
        from pymysqlreplication.event import FormatDescriptionEvent

        reader = BinLogStreamReader(
            connection_settings=self._settings(),
            server_id=self._server_id + 1,
            resume_stream=True,
            # Not blocking=False: MariaDB ends such a dump in a way mysql-replication takes for a
            # lost connection, and reconnects for ever. The event asked for is the file's first.
            blocking=True,
            log_file=file,
            log_pos=4,
            only_events=[FormatDescriptionEvent],
            enable_logging=False,
        )
        try:
            event = reader.fetchone()
            return float(event.timestamp) if event is not None and event.timestamp else None
        finally:
            reader.close()

    def release(self) -> None:
        """The server keeps nothing for us (no slot): its logs expire on their own schedule."""


class MySqlSession:
    """One replica connection: row events of the integration's tables become changes."""

    def __init__(self, reader: Any, tables: dict[tuple[str, str], Stream]) -> None:
        self._reader = reader
        self._tables = tables
        self._in_transaction = False
        self._transaction_start = (0, 0)
        self._ordinal = 0
        self.truncated: list[str] = []
        # Rows of the last event beyond what the last batch could take.
        self._carried: LogBatch = LogBatch()

    def read(self, max_changes: int, max_wait_seconds: float) -> LogBatch:
        from pymysqlreplication.event import GtidEvent, HeartbeatLogEvent, MariadbGtidEvent, QueryEvent, XidEvent

        batch, self._carried = self._carried, LogBatch()
        deadline = time.monotonic() + max_wait_seconds
        reader = self._reader
        while len(batch.changes) < max_changes:
            before = (_file_number(reader.log_file), reader.log_pos) if reader.log_file else (0, 0)
            try:
                event = reader.fetchone()
            except pymysql.err.OperationalError as exc:
                if exc.args and exc.args[0] == _LOG_UNAVAILABLE:
                    raise PositionLost(
                        f"the server cannot send the binary log from our position: {exc.args[-1]}"
                    ) from None
                raise
            if event is None:
                break
            if isinstance(event, GtidEvent | MariadbGtidEvent):
                self._begin(before)
            elif isinstance(event, QueryEvent):
                self._query(event, before, batch)
            elif isinstance(event, XidEvent):
                self._in_transaction = False
                batch.confirmable = (reader.log_file, reader.log_pos)
            elif hasattr(event, "rows"):
                self._rows(event, batch)
            # Under load no heartbeat comes: a batch then fills up or meets its deadline.
            if time.monotonic() >= deadline or (isinstance(event, HeartbeatLogEvent) and batch.changes):
                break
        if len(batch.changes) > max_changes:  # a rows event holds hundreds: the rest waits
            self._carried = LogBatch(batch.changes[max_changes:], batch.confirmable)
            batch = LogBatch(batch.changes[:max_changes])
        return batch

    def _begin(self, before: tuple[int, int]) -> None:
        if not self._in_transaction:
            self._in_transaction, self._transaction_start, self._ordinal = True, before, 0

    def _query(self, event: Any, before: tuple[int, int], batch: LogBatch) -> None:
        query = str(event.query).strip()
        if query.upper() == "BEGIN":
            self._begin(before)
        elif query.upper() == "COMMIT":
            self._in_transaction = False
            batch.confirmable = (self._reader.log_file, self._reader.log_pos)
        elif _DDL.match(query):
            # A statement of its own, outside any transaction; schema changes need nothing more:
            # each row event names its columns (binlog_row_metadata FULL).
            self._in_transaction = False
            truncated = _TRUNCATE.match(query)
            if truncated is not None:
                schema = event.schema.decode() if isinstance(event.schema, bytes) else str(event.schema)
                database = truncated.group(1) or schema
                if (database, truncated.group(2)) in self._tables:
                    self.truncated.append(f"{database}.{truncated.group(2)}")

    def _rows(self, event: Any, batch: LogBatch) -> None:
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent

        stream = self._tables.get((event.schema, event.table))
        if stream is None:
            self._ordinal += len(event.rows)
            return
        deleting = isinstance(event, DeleteRowsEvent)
        updating = isinstance(event, UpdateRowsEvent)
        at = datetime.fromtimestamp(event.timestamp, UTC)
        number, start = self._transaction_start
        for row in event.rows:
            self._ordinal += 1
            values = dict(row["after_values"] if updating else row["values"])
            for field in stream.json_fields:
                if isinstance(values.get(field), str):
                    values[field] = loads_exact(values[field])
            position = position_text(number, start, self._ordinal)
            values[CHANGE_CURSOR] = position
            values[CHANGE_TIME] = at
            operation = Operation.DELETE if deleting else Operation.UPSERT
            batch.changes.append(LoggedChange(stream, operation, values, position, at))

    def confirm(self, confirmable: Any) -> None:
        """Nothing to tell: the server keeps its logs for its own retention, not for us."""

    def keep_alive(self) -> None:
        """The server's heartbeats keep the connection alive; nothing to send."""

    def close(self) -> None:
        self._reader.close()


def _file_number(name: str) -> int:
    match = _FILE_NUMBER.match(name)
    if match is None:
        raise SourceError(CheckStatus.ERROR, f"binary log {name} is not named <base>.<number>")
    return int(match.group(2))
