"""PostgreSQL's `pgoutput` logical decoding messages (protocol version 1), decoded.

The server sends a transaction as Begin, then Relation messages (a table's columns, before its
first change in a session and again after its definition changed), Insert/Update/Delete/Truncate,
then Commit. Column values arrive in the type's text form, which `providers.postgresql.changes` turns into Python
values with psycopg2's own casters, so a change carries the same values as a batch sync of the
row. An unchanged TOASTed column arrives as UNCHANGED, never as a value: see `Change.merged`.

Reference: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from struct import Struct

POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class Unchanged:
    """An unchanged TOASTed value the server did not send."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = Unchanged()
TupleValue = bytes | None | Unchanged

_INT16 = Struct(">h")
_INT32 = Struct(">i")
_UINT32 = Struct(">I")
_BEGIN = Struct(">QqI")  # final LSN, commit time, xid
_COMMIT = Struct(">bQQq")  # flags, commit LSN, end LSN, commit time
_COLUMN_TAIL = Struct(">Ii")  # type oid, type modifier


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    key: bool


@dataclass(frozen=True)
class Relation:
    oid: int
    schema: str
    name: str
    replica_identity: str  # d(efault), n(othing), f(ull), i(ndex)
    columns: tuple[Column, ...]

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    commit_time: datetime
    xid: int


@dataclass(frozen=True)
class Commit:
    commit_lsn: int
    end_lsn: int
    commit_time: datetime


@dataclass(frozen=True)
class Change:
    """An insert, update or delete. `new` is the row after (inserts, updates); `old` is the key
    (or, with REPLICA IDENTITY FULL, the whole row) before, where the server sent it."""

    relation: Relation
    kind: str  # insert | update | delete
    new: tuple[TupleValue, ...] | None
    old: tuple[TupleValue, ...] | None

    def merged(self) -> tuple[TupleValue, ...]:
        """The row this change leaves (a delete: what identifies the row), with each unchanged
        TOASTed value taken from the old row where the server sent one; a value still UNCHANGED
        has no source in the change (see providers.postgresql.changes, which refuses to write it)."""
        if self.new is None:
            return self.old or ()
        if self.old is None or not any(value is UNCHANGED for value in self.new):
            return self.new
        return tuple(old if new is UNCHANGED else new for new, old in zip(self.new, self.old, strict=True))


@dataclass(frozen=True)
class Truncate:
    relations: tuple[Relation, ...]


Message = Begin | Commit | Relation | Change | Truncate


class DecodingError(Exception):
    """A message this decoder cannot read: the server speaks another protocol version."""


def _time(micros: int) -> datetime:
    return POSTGRES_EPOCH + timedelta(microseconds=micros)


def _string(data: bytes, offset: int) -> tuple[str, int]:
    end = data.index(0, offset)
    return data[offset:end].decode(), end + 1


class PgOutputDecoder:
    """Decodes one session's messages; remembers the relations it was told about."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}

    def decode(self, data: bytes) -> Message | None:
        """The message in `data`, or None for those CDC has no use for (origin, type, logical
        messages such as our own heartbeats)."""
        tag = data[0]
        if tag in b"IUD":
            return self._change(tag, data)
        if tag == ord("B"):
            final_lsn, micros, xid = _BEGIN.unpack_from(data, 1)
            return Begin(final_lsn, _time(micros), xid)
        if tag == ord("C"):
            _, commit_lsn, end_lsn, micros = _COMMIT.unpack_from(data, 1)
            return Commit(commit_lsn, end_lsn, _time(micros))
        if tag == ord("R"):
            relation = self._relation(data)
            self.relations[relation.oid] = relation
            return relation
        if tag == ord("T"):
            (count,) = _INT32.unpack_from(data, 1)
            oids = Struct(f">{count}I").unpack_from(data, 6)
            return Truncate(tuple(self._known(oid) for oid in oids))
        if tag in b"OYMS":
            return None
        raise DecodingError(f"unknown pgoutput message {chr(tag)!r}")

    def _known(self, oid: int) -> Relation:
        relation = self.relations.get(oid)
        if relation is None:
            raise DecodingError(f"a change of relation {oid} arrived before its Relation message")
        return relation

    @staticmethod
    def _relation(data: bytes) -> Relation:
        (oid,) = _UINT32.unpack_from(data, 1)
        schema, offset = _string(data, 5)
        name, offset = _string(data, offset)
        identity = chr(data[offset])
        (count,) = _INT16.unpack_from(data, offset + 1)
        offset += 3
        columns = []
        for _ in range(count):
            flags = data[offset]
            column, offset = _string(data, offset + 1)
            type_oid, _ = _COLUMN_TAIL.unpack_from(data, offset)
            offset += 8
            columns.append(Column(column, type_oid, bool(flags & 1)))
        return Relation(oid, schema, name, identity, tuple(columns))

    def _change(self, tag: int, data: bytes) -> Change:
        (oid,) = _UINT32.unpack_from(data, 1)
        relation = self._known(oid)
        offset = 5
        old = new = None
        if tag == ord("I"):
            new, offset = _tuple(data, offset + 1)
            return Change(relation, "insert", new, None)
        if tag == ord("U"):
            if data[offset] in b"KO":
                old, offset = _tuple(data, offset + 1)
            new, offset = _tuple(data, offset + 1)  # after its 'N'
            return Change(relation, "update", new, old)
        old, offset = _tuple(data, offset + 1)  # after its 'K' or 'O'
        return Change(relation, "delete", None, old)


def _tuple(data: bytes, offset: int) -> tuple[tuple[TupleValue, ...], int]:
    (count,) = _INT16.unpack_from(data, offset)
    offset += 2
    values: list[TupleValue] = []
    append = values.append
    unpack = _INT32.unpack_from
    for _ in range(count):
        kind = data[offset]
        if kind == 116:  # 't': text
            (length,) = unpack(data, offset + 1)
            start = offset + 5
            offset = start + length
            append(data[start:offset])
        elif kind == 110:  # 'n': null
            append(None)
            offset += 1
        elif kind == 117:  # 'u': unchanged TOASTed value
            append(UNCHANGED)
            offset += 1
        else:
            raise DecodingError(f"column value kind {chr(kind)!r} (binary transfer is not requested)")
    return tuple(values), offset
