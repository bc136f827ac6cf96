"""The record pipeline without I/O: encoding rules, mappings, filters, validation and records."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from churnguard.pipeline.core import Batch, StreamContext, StreamPipeline
from churnguard.pipeline.encoding import dumps, encode_duration, loads_exact
from churnguard.pipeline.mapping import FieldMapper, RowFilter, required_fields, scoped
from churnguard.pipeline.records import Record
from churnguard.pipeline.validation import compile_check, schema_for

CONTEXT = StreamContext("org_1", "int_1", "postgresql", "customer", "public.customers", "syn_1", ("id",), "updated_at")


def lines(batch: Batch) -> list[dict[str, Any]]:
    return [json.loads(line) for line in batch.payload().splitlines()]


def test_values_encode_losslessly() -> None:
    encoded = json.loads(
        dumps(
            {
                "decimal": Decimal("12345678901234567890.000000000001"),
                "bytes": b"\x00\xff",
                "view": memoryview(b"ab"),
                "aware": datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
                "naive": datetime(2024, 1, 2, 3, 4, 5),
                "day": date(2024, 1, 2),
                "uuid": UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                "duration": timedelta(days=1, seconds=3, microseconds=500_000),
                "set": {1},
            }
        )
    )
    assert encoded == {
        "decimal": "12345678901234567890.000000000001",
        "bytes": {"$base64": "AP8="},
        "view": {"$base64": "YWI="},
        "aware": "2024-01-02T03:04:05.000006+00:00",
        "naive": "2024-01-02T03:04:05+00:00",
        "day": "2024-01-02",
        "uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "duration": "PT86403.5S",
        "set": [1],
    }
    assert encode_duration(timedelta(seconds=-5)) == "-PT5S"
    with pytest.raises(TypeError, match="object"):
        dumps({"x": object()})


def test_json_from_sources_keeps_numbers_exact() -> None:
    text = '{"big": 123456789012345678901234567890, "pi": 3.14159265358979323846, "small": 1.5, "id": 12}'
    parsed = loads_exact(text)
    assert parsed["small"] == 1.5 and parsed["id"] == 12
    assert dumps(parsed) == b'{"big":123456789012345678901234567890,"pi":3.14159265358979323846,"small":1.5,"id":12}'
    assert loads_exact(b'{"a": [1, 2.5]}') == {"a": [1, 2.5]}


def test_mappings_rename_nest_and_project() -> None:
    mapper = FieldMapper({"email_address": "email", "profile.plan": "plan", "city": "address.city"})
    row = {"email_address": "a@b.c", "profile": {"plan": "pro"}, "city": "Oslo", "ssn": "secret"}
    assert mapper(row) == {"email": "a@b.c", "plan": "pro", "address": {"city": "Oslo"}}
    assert mapper({"email_address": "x"}) == {"email": "x"}  # missing fields are left out
    flat = FieldMapper({"a": "x", "b": "y"})
    assert flat({"a": 1, "b": 2, "c": 3}) == {"x": 1, "y": 2}
    assert flat({"a": 1}) == {"x": 1}
    assert required_fields({"profile.plan": "plan"}, {"status": "active"}) == {"profile", "status"}
    assert required_fields({}, {"status": "active"}) is None


def test_settings_can_be_scoped_to_one_entity() -> None:
    settings = {"email": "email", "customer:full_name": "name", "invoice:total": "amount_due"}
    entities = ["customer", "invoice"]
    assert scoped(settings, "customer", entities) == {"email": "email", "full_name": "name"}
    assert scoped(settings, "invoice", entities) == {"email": "email", "total": "amount_due"}


@pytest.mark.parametrize(
    ("condition", "kept"),
    [
        ("active", [1]),
        (["active", "trial"], [1, 2]),
        ({"$ne": "active"}, [2, 3, 4]),
        ({"$nin": ["active"]}, [2, 3, 4]),
        (None, [4]),
        ({"$exists": False}, [4]),
    ],
)
def test_filters_on_status(condition: Any, kept: list[int]) -> None:
    rows = [{"id": 1, "status": "active"}, {"id": 2, "status": "trial"}, {"id": 3, "status": "churned"}, {"id": 4}]
    keep = RowFilter({"status": condition})
    assert [row["id"] for row in rows if keep(row)] == kept


def test_filters_compare_typed_values_with_string_operands() -> None:
    keep = RowFilter({"updated_at": {"$gte": "2024-02-01T00:00:00+00:00"}, "mrr": {"$gt": "10"}, "meta.n": {"$lt": 5}})
    row = {"updated_at": datetime(2024, 3, 1, tzinfo=UTC), "mrr": Decimal("12.5"), "meta": {"n": 1}}
    assert keep(row)
    assert not keep({**row, "mrr": Decimal(3)})
    assert not keep({**row, "updated_at": datetime(2024, 1, 1, tzinfo=UTC)})
    with pytest.raises(ValueError, match=r"\$regex"):
        RowFilter({"x": {"$regex": "a"}})


def test_schema_checks_are_cheap_type_rules() -> None:
    schema = schema_for("customer")
    assert schema is not None
    check = compile_check(schema)
    assert check({"email": "a@b.c", "mrr": Decimal("1.5"), "created_at": datetime.now(UTC)}) is None
    assert check({"email": None}) is None
    assert check({"email": 5}) == "field 'email' must be str, not int"
    assert check({"mrr": True}) == "field 'mrr' must be int or float or Decimal, not bool"
    assert schema_for("unknown_entity") is None


def test_pipeline_writes_canonical_lines_and_rejects() -> None:
    pipeline = StreamPipeline(CONTEXT, check=compile_check(schema_for("customer")))  # type: ignore[arg-type]
    batch = Batch()
    stamp = datetime(2024, 1, 1, tzinfo=UTC)
    pipeline.process(
        [
            {"id": 1, "email": "a@b.c", "updated_at": stamp},
            {"id": None, "email": "x", "updated_at": stamp},
            {"id": 2, "email": 7, "updated_at": stamp},
            {"id": 3, "email": "c@d.e", "blob": object(), "updated_at": stamp},
        ],
        batch,
    )
    assert (batch.accepted, batch.rejected) == (1, 3)
    (line,) = lines(batch)
    record = Record.model_validate(line)
    assert record.record_id == "1" and record.operation == "upsert" and record.cursor == "2024-01-01T00:00:00+00:00"
    assert record.event_time is None and record.data["email"] == "a@b.c"
    reasons = [json.loads(r)["reason"] for r in batch.rejects_payload().splitlines()]
    assert reasons[0] == "primary key is null or missing"
    assert "email" in reasons[1] and "object" in reasons[2]


def test_dedupe_keys_identify_a_version_of_a_record() -> None:
    def key_of(row: dict[str, Any], context: StreamContext = CONTEXT) -> str:
        batch = Batch()
        StreamPipeline(context).process([row], batch)
        return str(lines(batch)[0]["dedupe_key"])

    stamp = datetime(2024, 1, 1, tzinfo=UTC)
    same = key_of({"id": 1, "updated_at": stamp, "x": 1})
    assert same == key_of({"id": 1, "updated_at": stamp, "x": 2})  # same id and cursor: same version
    assert same != key_of({"id": 1, "updated_at": stamp + timedelta(seconds=1), "x": 1})
    assert same != key_of({"id": 2, "updated_at": stamp, "x": 1})
    other_sync = StreamContext(
        "org_1", "int_1", "postgresql", "customer", "public.customers", "syn_9", ("id",), "updated_at"
    )
    assert same == key_of({"id": 1, "updated_at": stamp, "x": 1}, other_sync)  # not tied to the batch
    other_org = StreamContext(
        "org_2", "int_1", "postgresql", "customer", "public.customers", "syn_1", ("id",), "updated_at"
    )
    assert same != key_of({"id": 1, "updated_at": stamp, "x": 1}, other_org)
    no_cursor = StreamContext("org_1", "int_1", "postgresql", "customer", "t", "syn_2", ("id",))
    assert key_of({"id": 1, "x": 1}, no_cursor) != key_of({"id": 1, "x": 2}, no_cursor)  # by content
    assert key_of({"id": 1, "x": 1}, no_cursor) == key_of({"id": 1, "x": 1}, no_cursor)


def test_composite_keys_are_json_arrays() -> None:
    context = StreamContext("o", "i", "mysql", "deal", "deals", "b", ("region", "id"))
    batch = Batch()
    StreamPipeline(context).process([{"region": "eu", "id": 5}], batch)
    assert lines(batch)[0]["record_id"] == '["eu",5]'


def test_sources_that_know_when_a_change_happened_set_event_time() -> None:
    context = StreamContext(
        "o", "i", "stripe", "customer", "webhook:customer.updated", "b", ("id",), "event_id", "occurred_at"
    )
    batch = Batch()
    row = {"id": "cus_1", "event_id": "evt_1", "occurred_at": datetime(2024, 5, 1, 10, tzinfo=UTC)}
    StreamPipeline(context).process([row, {"id": "cus_2", "event_id": "evt_2"}], batch)
    first, second = lines(batch)
    assert Record.model_validate(first).event_time == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert (first["cursor"], first["data"]["occurred_at"]) == ("evt_1", "2024-05-01T10:00:00+00:00")
    assert second["event_time"] is None
    assert "event_time" not in lines(_one_row_batch(CONTEXT))[0], "sources without event times leave it out"


def _one_row_batch(context: StreamContext) -> Batch:
    batch = Batch()
    StreamPipeline(context).process([{"id": 1, "updated_at": datetime(2024, 1, 1, tzinfo=UTC)}], batch)
    return batch
