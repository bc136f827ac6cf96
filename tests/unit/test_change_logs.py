"""The pure parts of change data capture: pgoutput decoding, positions that sort in log order,
and the names the capture gives what it creates on a server."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest

from churnguard.connectors.pgoutput import (
    UNCHANGED,
    Begin,
    Change,
    Commit,
    DecodingError,
    PgOutputDecoder,
    Relation,
    Truncate,
)
from churnguard.providers.mongodb.changes import _position_time, time_position, token_position
from churnguard.providers.mysql.changes import parse_position, position_text, replica_server_id
from churnguard.providers.postgresql.changes import change_position, lsn_number, lsn_text, slot_name

MICROS_2024 = int((datetime(2024, 5, 1, 12, tzinfo=UTC) - datetime(2000, 1, 1, tzinfo=UTC)).total_seconds() * 1e6)


def relation_message(oid: int = 16385, identity: bytes = b"f") -> bytes:
    columns = [(1, "id", 20), (0, "body", 25), (0, "plan", 25)]
    body = b"".join(
        struct.pack(">b", flags) + name.encode() + b"\0" + struct.pack(">Ii", type_oid, -1)
        for flags, name, type_oid in columns
    )
    return b"R" + struct.pack(">I", oid) + b"public\0docs\0" + identity + struct.pack(">h", len(columns)) + body


def tuple_data(*values: bytes | str | None) -> bytes:
    out = struct.pack(">h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value == "u":
            out += b"u"
        else:
            assert isinstance(value, bytes)
            out += b"t" + struct.pack(">i", len(value)) + value
    return out


def test_a_transaction_decodes_to_begin_relation_changes_and_commit() -> None:
    decoder = PgOutputDecoder()
    begin = decoder.decode(b"B" + struct.pack(">QqI", 0x16B3748, MICROS_2024, 731))
    relation = decoder.decode(relation_message())
    insert = decoder.decode(b"I" + struct.pack(">I", 16385) + b"N" + tuple_data(b"1", b"hello", None))
    commit = decoder.decode(b"C" + struct.pack(">bQQq", 0, 0x16B3748, 0x16B3780, MICROS_2024))

    assert begin == Begin(0x16B3748, datetime(2024, 5, 1, 12, tzinfo=UTC), 731)
    assert isinstance(relation, Relation) and relation.qualified_name == "public.docs"
    assert [(c.name, c.type_oid, c.key) for c in relation.columns] == [
        ("id", 20, True),
        ("body", 25, False),
        ("plan", 25, False),
    ]
    assert relation.replica_identity == "f"
    assert isinstance(insert, Change) and insert.kind == "insert" and insert.new == (b"1", b"hello", None)
    assert commit == Commit(0x16B3748, 0x16B3780, datetime(2024, 5, 1, 12, tzinfo=UTC))


def test_an_unchanged_toasted_value_comes_from_the_old_row_or_stays_unchanged() -> None:
    decoder = PgOutputDecoder()
    decoder.decode(relation_message())
    with_old = decoder.decode(
        b"U"
        + struct.pack(">I", 16385)
        + b"O"
        + tuple_data(b"1", b"long body", b"free")
        + b"N"
        + tuple_data(b"1", "u", b"pro")
    )
    without_old = decoder.decode(b"U" + struct.pack(">I", 16385) + b"N" + tuple_data(b"1", "u", b"team"))
    delete = decoder.decode(b"D" + struct.pack(">I", 16385) + b"K" + tuple_data(b"1", None, None))

    assert isinstance(with_old, Change) and with_old.merged() == (b"1", b"long body", b"pro")
    assert isinstance(without_old, Change) and without_old.merged() == (b"1", UNCHANGED, b"team")
    assert isinstance(delete, Change) and delete.kind == "delete" and delete.merged() == (b"1", None, None)


def test_a_relation_message_replaces_the_columns_and_truncates_name_their_tables() -> None:
    decoder = PgOutputDecoder()
    decoder.decode(relation_message())
    first = decoder.relations[16385]
    decoder.decode(relation_message(identity=b"d"))
    truncate = decoder.decode(b"T" + struct.pack(">ib", 1, 0) + struct.pack(">I", 16385))

    assert decoder.relations[16385] is not first and decoder.relations[16385].replica_identity == "d"
    assert isinstance(truncate, Truncate) and [r.qualified_name for r in truncate.relations] == ["public.docs"]
    assert decoder.decode(b"M" + b"\0" * 8) is None  # a logical message (our heartbeat)


def test_what_the_decoder_cannot_read_is_a_typed_error() -> None:
    decoder = PgOutputDecoder()
    with pytest.raises(DecodingError, match="before its Relation"):
        decoder.decode(b"I" + struct.pack(">I", 99) + b"N" + tuple_data(b"1"))
    decoder.decode(relation_message())
    with pytest.raises(DecodingError, match="binary"):
        decoder.decode(b"I" + struct.pack(">I", 16385) + b"N" + struct.pack(">h", 1) + b"b")
    with pytest.raises(DecodingError, match="unknown"):
        decoder.decode(b"Z")


def test_positions_sort_as_text_in_log_order() -> None:
    postgres = [change_position(0x1_0000_0000, 2), change_position(0xFF, 9), change_position(0x1_0000_0000, 10)]
    assert sorted(postgres) == [postgres[1], postgres[0], postgres[2]]
    assert lsn_number(lsn_text(0x16_B374_D848)) == 0x16_B374_D848 and lsn_text(0x16_B374_D848) == "16/B374D848"
    mysql = [position_text(3, 120, 2), position_text(2, 9_000_000, 1), position_text(3, 120, 11)]
    assert sorted(mysql) == [mysql[1], mysql[0], mysql[2]]
    assert parse_position(mysql[2]) == (3, 120, 11)


def test_names_on_the_server_are_safe_and_stable() -> None:
    assert slot_name("int_0123456789abcdef0123") == "churnguard_int_0123456789abcdef0123"
    assert slot_name("Int-X;drop") == "churnguard_int_x_drop"
    assert replica_server_id("int_a") == replica_server_id("int_a") != replica_server_id("int_b")
    assert 1_000_000 <= replica_server_id("int_a") < 2**32


def test_mongodb_positions_are_resume_tokens_and_a_start_time_in_their_form() -> None:
    from bson import Timestamp

    start = time_position(Timestamp(1_700_000_000, 7))
    # Real tokens: the same type byte and cluster time, then the event's own key.
    at_start = token_position({"_data": "826553F1000000000" + "72B022C0100296E5A1004ABCDEF"})
    later = token_position({"_data": "826553F1000000000" + "82B022C0100296E5A1004ABCDEF"})
    earlier = token_position({"_data": "826553F0FF000000012B022C0100296E5A1004ABCDEF"})
    assert start == "826553F10000000007"
    assert sorted([later, start, earlier, at_start]) == [earlier, start, at_start, later]
    assert _position_time(start) == 1_700_000_000 == _position_time(later)
