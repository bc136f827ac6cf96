"""PostgreSQL's log for change data capture: a logical replication slot with pgoutput and a
publication per integration. What it needs from the server and its quirks: README.md here."""

from __future__ import annotations

import logging
import re
import select
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from psycopg2 import sql

from churnguard.connectors.base import CheckStatus, Position, SourceError, Stream
from churnguard.connectors.changes import LogBatch, LoggedChange, LogState, PositionLost, SnapshotStart
from churnguard.connectors.pgoutput import UNCHANGED, Begin, Change, Commit, PgOutputDecoder, Relation, Truncate
from churnguard.pipeline.core import CHANGE_CURSOR, CHANGE_TIME
from churnguard.pipeline.encoding import loads_exact
from churnguard.pipeline.records import Operation
from churnguard.providers.postgresql.source import PostgresConnector

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30.0
FEEDBACK_SECONDS = 10.0
_JSON_TYPES = frozenset({114, 3802})  # json, jsonb: parsed without rounding, as syncs do
# The commonest types, cast without psycopg2's per-value call; the same values its casters give.
_DIRECT_CASTS: dict[int, Callable[[bytes], Any]] = {
    **dict.fromkeys((20, 21, 23, 26), int),  # int8, int2, int4, oid
    **dict.fromkeys((25, 1043, 1042, 19), bytes.decode),  # text, varchar, bpchar, name
    16: lambda value: value == b"t",  # bool
}
_OPERATIONS = {"insert": Operation.UPSERT, "update": Operation.UPSERT, "delete": Operation.DELETE}


def slot_name(integration_id: str) -> str:
    """The slot's (and the publication's) name: lowercase letters, digits and underscores."""
    return "churnguard_" + re.sub(r"[^a-z0-9_]", "_", integration_id.lower())[:50]


def lsn_text(lsn: int) -> str:
    """An LSN as PostgreSQL writes it (`16/B374D848`)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_number(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def change_position(commit_lsn: int, ordinal: int) -> str:
    """A change's position: its transaction's commit LSN, then its place in the transaction.
    Transactions arrive in commit order, so this sorts in the order changes arrive, as text."""
    return f"{commit_lsn:016X}.{ordinal:08X}"


class PostgresChangeLog(SnapshotStart):
    def __init__(
        self, connector: PostgresConnector, integration_id: str, *, heartbeat_seconds: float = HEARTBEAT_SECONDS
    ):
        self._connector = connector
        self._slot = slot_name(integration_id)
        self._heartbeat_seconds = heartbeat_seconds
        self._control: Any = None

    @property
    def slot(self) -> str:
        return self._slot

    # ------------------------------------------------------------------ connections
    def _arguments(self) -> dict[str, Any]:
        return self._connector.connect_arguments("churnguard-cdc", "-c timezone=UTC")

    def _admin(self) -> Any:
        """A read-write session for the publication, the slot's removal and heartbeats."""
        if self._control is None or self._control.closed:
            self._control = psycopg2.connect(**self._arguments())
            self._control.autocommit = True
        return self._control

    def _replication(self) -> Any:
        return psycopg2.connect(**self._arguments(), connection_factory=psycopg2.extras.LogicalReplicationConnection)

    def _rows(self, query: str | sql.Composable, params: list[Any] | tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._admin().cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description is not None else []

    def close(self) -> None:
        if self._control is not None and not self._control.closed:
            self._control.close()
        self._control = None
        self._connector.close()

    # ------------------------------------------------------------------ readiness
    def problems(self, streams: list[Stream]) -> list[str]:
        found: list[str] = []
        (level,) = self._rows("SHOW wal_level")[0]
        if level != "logical":
            found.append(
                f"wal_level is {level}: set it to logical (ALTER SYSTEM SET wal_level = logical and restart;"
                " on Amazon RDS and Aurora set rds.logical_replication = 1 in the parameter group)"
            )
        user, replication, superuser, create = self._rows(
            "SELECT current_user, rolreplication, rolsuper, has_database_privilege(current_database(), 'CREATE')"
            " FROM pg_roles WHERE rolname = current_user"
        )[0]
        if not (replication or superuser):
            found.append(
                f"user {user} may not replicate: ALTER ROLE {user} WITH REPLICATION"
                f" (on Amazon RDS: GRANT rds_replication TO {user})"
            )
        publication = bool(self._rows("SELECT 1 FROM pg_publication WHERE pubname = %s", [self._slot]))
        if not (create or superuser or publication):
            found.append(f"user {user} may not create the publication: GRANT CREATE ON DATABASE … TO {user}")
        slots = self._rows(
            "SELECT count(*), current_setting('max_replication_slots')::int,"
            " bool_or(slot_name = %s) FROM pg_replication_slots",
            [self._slot],
        )[0]
        if not slots[2] and slots[0] >= slots[1]:
            found.append(f"all {slots[1]} replication slots are in use: raise max_replication_slots or free one")
        for stream in streams:
            found += self._table_problems(stream, bool(superuser), publication)
        return found

    def _table_problems(self, stream: Stream, superuser: bool, publication: bool) -> list[str]:
        if stream.query is not None:
            return [f"entity {stream.entity} is read from a query; change data capture reads tables"]
        schema, table = PostgresConnector._table_name(stream.source)
        rows = self._rows(
            "SELECT c.relreplident, pg_has_role(c.relowner, 'USAGE'), has_table_privilege(c.oid, 'SELECT'),"
            " EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),"
            " ARRAY(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0"
            "       AND NOT a.attisdropped AND a.attstorage IN ('x', 'e') ORDER BY a.attnum)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
            [schema, table],
        )
        name = f"{schema}.{table}"
        if not rows:
            return [f"{name} is not a table (change data capture reads tables, not views)"]
        identity, owner, readable, keyed, toasted = rows[0]
        problems = []
        if not readable:
            problems.append(f"the user may not read {name}: GRANT SELECT ON {name} TO …")
        if not (owner or superuser or publication):
            problems.append(
                f"the user does not own {name}, so it cannot add it to a publication: have its owner run"
                f" CREATE PUBLICATION {self._slot} FOR TABLE … with every table of the integration"
            )
        if identity == "n" or (identity == "d" and not keyed):
            problems.append(
                f"{name} identifies no row in its log (no primary key or REPLICA IDENTITY NOTHING):"
                f" ALTER TABLE {name} REPLICA IDENTITY FULL"
            )
        elif toasted and identity != "f":
            problems.append(
                f"ALTER TABLE {name} REPLICA IDENTITY FULL: its columns {', '.join(toasted)} may be stored out of"
                " line (TOAST), and an update that leaves one unchanged carries its value only with a full"
                " replica identity"
            )
        return problems

    # ------------------------------------------------------------------ snapshot
    def snapshot(self, streams: list[Stream], page_size: int) -> Iterator[tuple[Stream, list[dict[str, Any]]]]:
        """Creates the publication and the slot, then reads each table in the snapshot the slot
        exported: exactly the data before the slot's first change, no more, no less."""
        self._publish(streams)
        self._drop_slot()  # what an interrupted snapshot left
        replication = self._replication()
        try:
            with replication.cursor() as cur:
                cur.execute(f"CREATE_REPLICATION_SLOT {self._slot} LOGICAL pgoutput EXPORT_SNAPSHOT")
                _, consistent_point, snapshot, _ = cur.fetchone()
            self._begin_snapshot(change_position(lsn_number(consistent_point), 0))
            # The exported snapshot lives while `replication` stays open and idle.
            for stream in streams:
                yield from ((stream, rows) for rows in self._table_in(stream, snapshot, page_size))
        finally:
            replication.close()

    def _table_in(self, stream: Stream, snapshot: str, page_size: int) -> Iterator[list[dict[str, Any]]]:
        connection = self._connector._connection()
        with connection.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SET TRANSACTION SNAPSHOT %s", [snapshot])
        for page in self._connector._pages(stream, Position(), page_size, encoded=False):
            yield page.rows

    def _publish(self, streams: list[Stream]) -> None:
        """The publication of exactly these tables (created before the slot: pgoutput reads it as
        of each change)."""
        tables = sql.SQL(", ").join(sql.Identifier(*PostgresConnector._table_name(stream.source)) for stream in streams)
        if self._rows("SELECT 1 FROM pg_publication WHERE pubname = %s", [self._slot]):
            self._rows(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(sql.Identifier(self._slot), tables))
        else:
            self._rows(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(sql.Identifier(self._slot), tables))

    # ------------------------------------------------------------------ streaming
    def open(self, streams: list[Stream], after: str | None) -> PostgresSession:
        replication = self._replication()
        cur = replication.cursor()
        try:
            cur.start_replication(
                slot_name=self._slot,
                decode=False,
                options={"proto_version": "1", "publication_names": self._slot},
            )
        except (psycopg2.errors.UndefinedObject, psycopg2.errors.ObjectNotInPrerequisiteState) as exc:
            replication.close()
            raise PositionLost(f"replication slot {self._slot}: {exc.pgerror or exc}".strip()) from None
        return PostgresSession(replication, cur, streams, self._heartbeat, self._heartbeat_seconds)

    def _heartbeat(self) -> None:
        """A message in the WAL (not a change of any table) so that the slot has something to
        move past when nothing we read changes but other databases of the server write."""
        self._rows("SELECT pg_logical_emit_message(false, 'churnguard_heartbeat', '')")

    # ------------------------------------------------------------------ guardian
    def state(self, position: str | None = None) -> LogState:
        """The slot's retained WAL (what the server keeps for us, from the slot's own record;
        `position` is not needed), and how much more it may keep (max_slot_wal_keep_size)."""
        rows = self._rows(
            "SELECT s.wal_status, s.safe_wal_size, pg_current_wal_lsn() - s.restart_lsn,"
            " pg_current_wal_lsn() - '0/0'::pg_lsn, s.confirmed_flush_lsn"
            " FROM pg_replication_slots s WHERE s.slot_name = %s",
            [self._slot],
        )
        if not rows:
            (head,) = self._rows("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0]
            return LogState(
                False, True, None, None, head=int(head), detail=f"replication slot {self._slot} does not exist"
            )
        status, safe, retained, head, confirmed = rows[0]
        lost = status == "lost"
        return LogState(
            exists=True,
            lost=lost,
            retained_bytes=int(retained) if retained is not None else None,
            safe_bytes=int(safe) if safe is not None else None,
            head=int(head),
            detail=f"slot {self._slot}: wal_status {status}, confirmed up to {confirmed}",
        )

    def release(self) -> None:
        self._drop_slot()
        self._rows(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(self._slot)))

    def _drop_slot(self) -> None:
        """Drops the slot, stopping a session still reading it (a turn that was cut off)."""
        for _ in range(10):
            rows = self._rows("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", [self._slot])
            if not rows:
                return
            if rows[0][0] is not None:
                self._rows("SELECT pg_terminate_backend(%s)", [rows[0][0]])
                time.sleep(0.2)
                continue
            try:
                self._rows("SELECT pg_drop_replication_slot(%s)", [self._slot])
                return
            except psycopg2.errors.ObjectInUse:
                time.sleep(0.2)
        raise SourceError(CheckStatus.ERROR, f"replication slot {self._slot} stayed in use and could not be dropped")


class PostgresSession:
    """One replication connection: decodes pgoutput into changes of the integration's tables."""

    def __init__(
        self,
        connection: Any,
        cursor: Any,
        streams: list[Stream],
        heartbeat: Callable[[], None],
        heartbeat_seconds: float,
    ) -> None:
        self._connection = connection
        self._cursor = cursor
        self._decoder = PgOutputDecoder()
        self._streams = {PostgresConnector._table_name(stream.source): stream for stream in streams}
        self._casters: dict[int, tuple[Relation, tuple[str, ...], list[Callable[[bytes], Any]]]] = {}
        self._heartbeat = heartbeat
        self._heartbeat_seconds = heartbeat_seconds
        self._transaction: Begin | None = None
        self._ordinal = 0
        self._unconfirmed = False  # changes were handed out and not yet confirmed
        self._last_message = time.monotonic()
        self._last_feedback = time.monotonic()
        self.truncated: list[str] = []

    def read(self, max_changes: int, max_wait_seconds: float) -> LogBatch:
        batch = LogBatch()
        deadline = time.monotonic() + max_wait_seconds
        read_message = self._cursor.read_message
        while len(batch.changes) < max_changes:
            message = read_message()
            if message is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (batch.changes and self._transaction is None):
                    break
                select.select([self._connection], [], [], min(remaining, 1.0))
                continue
            self._take(self._decoder.decode(message.payload), batch)
        if batch.changes:
            self._unconfirmed = True
            self._last_message = time.monotonic()
        return batch

    def _take(self, decoded: Any, batch: LogBatch) -> None:
        if isinstance(decoded, Change):
            self._ordinal += 1
            stream = self._streams.get((decoded.relation.schema, decoded.relation.name))
            if stream is not None and self._transaction is not None:
                batch.changes.append(self._change(stream, decoded, self._transaction))
        elif isinstance(decoded, Begin):
            self._transaction, self._ordinal = decoded, 0
        elif isinstance(decoded, Commit):
            batch.confirmable = decoded.end_lsn
            self._transaction = None
        elif isinstance(decoded, Truncate):
            self.truncated += [relation.qualified_name for relation in decoded.relations]

    def _change(self, stream: Stream, change: Change, transaction: Begin) -> LoggedChange:
        relation = change.relation
        names, casts = self._casts(relation)
        values = change.merged()
        problem = None
        row: dict[str, Any]
        if change.kind != "delete" and not any(value is UNCHANGED for value in values):  # the common case
            row = {
                name: None if value is None else cast(value)  # type: ignore[arg-type]
                for name, cast, value in zip(names, casts, values, strict=True)
            }
        else:
            row = {}
            full = relation.replica_identity == "f"
            for column, cast, value in zip(relation.columns, casts, values, strict=True):
                if change.kind == "delete" and not (full or column.key):
                    continue
                if value is UNCHANGED:
                    problem = (
                        f"column {column.name} of {relation.qualified_name} was left unchanged out of line (TOAST)"
                        " and the change does not carry its value: set REPLICA IDENTITY FULL on the table"
                    )
                    row[column.name] = None
                else:
                    row[column.name] = None if value is None else cast(value)  # type: ignore[arg-type]
        position = change_position(transaction.final_lsn, self._ordinal)
        row[CHANGE_CURSOR] = position
        row[CHANGE_TIME] = transaction.commit_time
        return LoggedChange(stream, _OPERATIONS[change.kind], row, position, transaction.commit_time, problem)

    def _casts(self, relation: Relation) -> tuple[tuple[str, ...], list[Callable[[bytes], Any]]]:
        """The column names and, per column, text → the value psycopg2 gives a sync (refreshed
        with each Relation message, so an added or dropped column is followed)."""
        cached = self._casters.get(relation.oid)
        if cached is not None and cached[0] is relation:
            return cached[1], cached[2]
        names = tuple(column.name for column in relation.columns)
        casts = [self._cast(column.type_oid) for column in relation.columns]
        self._casters[relation.oid] = (relation, names, casts)
        return names, casts

    def _cast(self, type_oid: int) -> Callable[[bytes], Any]:
        direct = _DIRECT_CASTS.get(type_oid)
        if direct is not None:
            return direct
        if type_oid in _JSON_TYPES:
            return loads_exact
        caster = psycopg2.extensions.string_types.get(type_oid)
        cursor = self._cursor
        if caster is None:
            return lambda value: value.decode()
        return lambda value: caster(value.decode(), cursor)

    def confirm(self, confirmable: Any) -> None:
        # Forced: psycopg2 otherwise sends feedback only once its status interval (10 s) passed,
        # and a turn may end before that.
        self._cursor.send_feedback(flush_lsn=int(confirmable), force=True)
        self._unconfirmed = False
        self._last_feedback = time.monotonic()

    def keep_alive(self) -> None:
        """Answers the server; when nothing is in flight, confirms up to what it has sent (a
        transaction still open on the server commits later, so it is still sent), and after
        `heartbeat_seconds` without a change writes a heartbeat so the slot keeps moving."""
        now = time.monotonic()
        if self._transaction is None and not self._unconfirmed and self._cursor.wal_end:
            if now - self._last_message >= self._heartbeat_seconds:
                try:
                    self._heartbeat()
                except psycopg2.Error as exc:
                    logger.warning("heartbeat failed", extra={"error": type(exc).__name__})
                self._last_message = now
            if now - self._last_feedback >= FEEDBACK_SECONDS:
                self._cursor.send_feedback(flush_lsn=self._cursor.wal_end, force=True)
                self._last_feedback = now
        elif now - self._last_feedback >= FEEDBACK_SECONDS:
            self._cursor.send_feedback(force=True)
            self._last_feedback = now

    def close(self) -> None:
        if not self._connection.closed:
            self._connection.close()
