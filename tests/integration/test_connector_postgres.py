"""The PostgreSQL connector on its own: connection checks, identifier rules, queries, mappings,
filters and rejects, against the real server (CHURNGUARD_TEST_POSTGRES_URL)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from churnguard.connectors.base import CheckStatus
from churnguard.errors import ValidationFailedError
from churnguard.models import DataSyncMode, ProviderName
from churnguard.pipeline.core import StreamPipeline
from churnguard.runs import SyncStatus
from tests.support.fake_postgres import password_refusing_server
from tests.support.sync import ORG, credentials, sync


@pytest.fixture
def customers(postgres: Any) -> Any:
    postgres.execute(
        f"""
        CREATE TABLE "{postgres.name}".customers (
            id integer PRIMARY KEY, email_address text, full_name text, profile jsonb, status text,
            updated_at timestamptz
        );
        INSERT INTO "{postgres.name}".customers VALUES
            (1, 'a@example.com', 'Ann', '{{"plan": {{"name": "pro"}}}}', 'active', '2024-01-01T00:00:00Z'),
            (2, 'b@example.com', 'Bob', '{{"plan": {{"name": "free"}}}}', 'churned', '2024-01-02T00:00:00Z'),
            (3, 'c@example.com', 'Cy', '{{"plan": {{"name": "team"}}}}', 'active', NULL),
            (4, 'd@example.com', 'Di', '{{"plan": {{"name": 7}}}}', 'active', '2024-01-03T00:00:00Z');
        """
    )
    return postgres


def register(
    harness: Any,
    db: Any,
    *,
    user: str | None = None,
    password: str = "",
    port: int | None = None,
    mappings: dict[str, str] | None = None,
    name: str = "pg",
    **options: Any,
) -> Any:
    url = db.url
    return harness.register(
        ProviderName.POSTGRESQL,
        f"{url.host}:{port or url.port}",
        credentials(user or url.user, password or url.password, url.database),
        {"customer": f"{db.name}.customers"} if mappings is None else mappings,
        name=name,
        **options,
    )


def check(harness: Any, config: Any) -> Any:
    return harness.engine().test_connection(ORG, config.integration_id)


def test_a_good_connection_checks_ok(harness: Any, customers: Any) -> None:
    result = check(harness, register(harness, customers))
    assert result.ok and result.status is CheckStatus.OK
    (stream,) = result.streams
    assert stream.primary_key == ["id"] and stream.cursor_field == "updated_at"
    assert sorted(stream.sync_modes) == ["full_sync", "incremental"]


def test_a_wrong_port_is_unreachable(harness: Any, customers: Any) -> None:
    result = check(harness, register(harness, customers, port=1))
    assert result.status is CheckStatus.UNREACHABLE and not result.ok
    assert "connection refused" in result.message


def test_a_wrong_password_is_an_authentication_failure(harness: Any, customers: Any) -> None:
    # The local server trusts 127.0.0.1, so a stub that checks passwords stands in for it.
    with password_refusing_server() as port:
        config = register(harness, customers, user="someone", password="wrong-password-1234", port=port)
        result = check(harness, config)
    assert result.status is CheckStatus.AUTHENTICATION_FAILED
    assert "someone" not in result.model_dump_json() and "wrong-password-1234" not in result.model_dump_json()


def test_an_unknown_role_is_an_authentication_failure(harness: Any, customers: Any) -> None:
    user = f"nobody_{secrets.token_hex(4)}"
    result = check(harness, register(harness, customers, user=user))
    assert result.status is CheckStatus.AUTHENTICATION_FAILED and user not in result.message


def test_a_missing_table_is_reported(harness: Any, customers: Any) -> None:
    config = register(
        harness,
        customers,
        mappings={"customer": f"{customers.name}.customers", "invoice": f"{customers.name}.invoices"},
    )
    result = check(harness, config)
    assert result.status is CheckStatus.MISSING_OBJECT
    assert [s.status for s in result.streams] == [CheckStatus.OK, CheckStatus.MISSING_OBJECT]
    assert f"{customers.name}.invoices" in result.streams[1].message


def test_a_role_without_select_lacks_privileges(harness: Any, customers: Any) -> None:
    role = f"cg_reader_{secrets.token_hex(4)}"
    customers.execute(f'CREATE ROLE "{role}" LOGIN; GRANT USAGE ON SCHEMA "{customers.name}" TO "{role}"')
    try:
        result = check(harness, register(harness, customers, user=role))
    finally:
        customers.execute(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')
    assert result.status is CheckStatus.MISSING_PRIVILEGES
    assert role not in result.model_dump_json()


@pytest.mark.parametrize(
    ("mappings", "options", "field"),
    [
        ({"customer": 'customers";DROP'}, {}, "entity_mappings.customer"),
        ({"customer": "public.customers;DELETE"}, {}, "entity_mappings.customer"),
        ({"customer": "a.b.c"}, {}, "entity_mappings.customer"),
        ({"Customer": "customers"}, {}, "entity_mappings.Customer"),
        (
            {"customer": "customers"},
            {"sync_config": {"incremental_field": "updated_at.x"}},
            "sync_config.incremental_field",
        ),
        (
            {},
            {"source_options": {"customer": {"query": "SELECT 1; DROP TABLE x", "primary_key": ["id"]}}},
            "source_options.customer.query",
        ),
        (
            {},
            {"source_options": {"customer": {"query": "DELETE FROM customers", "primary_key": ["id"]}}},
            "source_options.customer.query",
        ),
        (
            {},
            {"source_options": {"customer": {"query": "SELECT * FROM customers"}}},
            "source_options.customer.primary_key",
        ),
        (
            {"customer": "customers"},
            {"sync_config": {"data_filters": {"status": {"$regex": "x"}}}},
            "sync_config.data_filters",
        ),
    ],
)
def test_injection_attempts_and_bad_names_are_rejected_at_registration(
    harness: Any, customers: Any, mappings: dict[str, str], options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationFailedError) as raised:
        register(harness, customers, mappings=mappings, **options)
    assert raised.value.status_code == 422
    assert field in [problem["field"] for problem in raised.value.details["fields"]]
    assert "DROP" not in str(raised.value.details) and "DELETE" not in str(raised.value.details)


def test_a_configured_query_is_synced(harness: Any, customers: Any) -> None:
    query = (
        f'SELECT c.id AS customer_id, c.email_address, c.updated_at FROM "{customers.name}".customers c'
        " WHERE c.email_address LIKE '%@example.com' -- the wrapper must survive this comment"
    )
    config = register(
        harness,
        customers,
        mappings={},
        source_options={"customer": {"query": query, "primary_key": ["customer_id"]}},
    )
    assert check(harness, config).ok
    run = sync(harness.engine(), config.integration_id)
    assert run.status is SyncStatus.SUCCEEDED
    records = harness.lake_records()
    # Ordered by cursor with nulls first, then the key.
    assert [r["record_id"] for r in records] == ["3", "1", "2", "4"]
    assert records[0]["source"] == "query:customer" and records[0]["cursor"] is None


def test_rows_mapped_onto_a_canonical_entity_are_that_entity_validated_by_its_model(
    harness: Any, customers: Any
) -> None:
    """`field_mappings` onto `customer` make each row a canonical customer: its model validates
    it (a plan name that is a number is a reject), filters still name the table's columns."""
    config = register(
        harness,
        customers,
        sync_config={
            "field_mappings": {
                "email_address": "email",
                "full_name": "name",
                "customer:profile.plan.name": "metadata.plan",
                "status": "metadata.status",
            },
            "data_filters": {"status": {"$in": ["active"]}},
        },
    )
    run = sync(harness.engine(), config.integration_id)

    assert run.status is SyncStatus.SUCCEEDED
    assert (run.records_read, run.records_written, run.records_filtered, run.records_rejected) == (4, 2, 1, 1)
    records = {r["record_id"]: r for r in harness.lake_records()}
    assert set(records) == {"1", "3"}
    first = records["1"]
    assert (first["entity"], first["schema_version"]) == ("customer", 2)
    assert {k: v for k, v in first["data"].items() if k != "raw"} == {
        "id": "1",
        "source_ids": {"postgresql": "1"},
        "email": "a@example.com",
        "name": "Ann",
        "metadata": {"plan": "pro", "status": "active"},
    }
    assert first["data"]["raw"]["email_address"] == "a@example.com", "the row as read, under raw"
    (reject,) = harness.lake_records("rejects/")
    assert reject["record_id"] == "4" and "canonical customer" in reject["reason"]
    assert "metadata.plan" in reject["reason"] and "valid string" in reject["reason"]
    assert reject["raw"]["profile"] == {"plan": {"name": 7}}
    assert all(key.startswith("rejects/org=") for key in harness.lake_keys("rejects/"))


def test_rows_mapped_onto_an_entity_the_model_does_not_have_keep_their_fields(harness: Any, customers: Any) -> None:
    config = register(
        harness,
        customers,
        mappings={"member": f"{customers.name}.customers"},
        sync_config={"field_mappings": {"email_address": "email", "profile.plan.name": "plan"}},
    )
    run = sync(harness.engine(), config.integration_id)

    assert (run.records_written, run.records_rejected) == (4, 0)
    records = {r["record_id"]: r for r in harness.lake_records()}
    assert records["4"]["data"] == {"email": "d@example.com", "plan": 7}


def test_rows_postgresql_encodes_match_the_python_encoding(
    harness: Any, postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path (PostgreSQL renders each row's JSON) and the Python path write the same
    records, for every type the fast path takes."""
    postgres.execute(
        f"""
        CREATE TYPE "{postgres.name}".tier AS ENUM ('free', 'pro');
        CREATE TABLE "{postgres.name}".accounts (
            id bigint PRIMARY KEY, name text, code varchar(10), flag char(3), ref uuid, active boolean,
            small smallint, amount numeric(40, 20), ratio double precision, seen timestamptz, local_time timestamp,
            day date, doc jsonb, raw json, blob bytea, tags text[], scores int[], tier "{postgres.name}".tier,
            updated_at timestamptz
        );
        INSERT INTO "{postgres.name}".accounts VALUES
            (1, 'Ann "quoted" \\ back', 'c1', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, 7,
             12345678901234567890.12345678901234567890, 0.1, '2024-03-10 12:34:56.789012+02',
             '2024-03-10 12:34:56.123456', '2024-03-10', '{{"big": 123456789012345678901234567890, "a": [1, null]}}',
             '{{"k":"v"}}', '\\x00ff10', ARRAY['x', 'y,z'], ARRAY[1, 2], 'pro', '2024-03-10 00:00:00+00'),
            (2, E'line\\nbreak \\u00e9\\u4e2d', NULL, NULL, NULL, false, NULL, 'NaN', 'NaN', NULL, NULL, NULL,
             'null', NULL, '', '{{}}', NULL, NULL, '2024-03-11 00:00:00+00'),
            (3, NULL, NULL, NULL, NULL, NULL, NULL, -0.5, 1e300, '2024-03-10 00:00:00+00', '2024-03-10 00:00:00',
             NULL, '[]', '[1, 2.5]', NULL, NULL, '{{}}', 'free', NULL),
            (4, 'x', NULL, NULL, NULL, NULL, NULL, 1, 2, '2024-03-10 10:00:00.789+00', '2024-03-10 10:00:00.1',
             NULL, NULL, NULL, NULL, NULL, NULL, NULL, '2024-03-11 00:00:00.5+00');
        """
    )
    encoded_flags: list[bool] = []
    original = StreamPipeline.process

    def spy(self: StreamPipeline, rows: Any, batch: Any, *args: Any) -> None:
        encoded_flags.append(self.encoded)
        original(self, rows, batch, *args)

    monkeypatch.setattr(StreamPipeline, "process", spy)
    config = register(harness, postgres, mappings={"account": f"{postgres.name}.accounts"})
    results = []
    for fast in (True, False):
        engine = harness.engine(source_encoding=fast)
        run = sync(engine, config.integration_id, mode=DataSyncMode.FULL_SYNC)
        assert run.status is SyncStatus.SUCCEEDED and run.streams[0].stream.encodable
        results.append({r["record_id"]: r for r in harness.lake_records() if r["batch_id"] == run.sync_id})

    assert encoded_flags[0] is True and encoded_flags[-1] is False
    fast_records, python_records = results
    assert sorted(fast_records) == ["1", "2", "3", "4"]
    assert fast_records["4"]["cursor"] == "2024-03-11T00:00:00.500000+00:00"
    assert fast_records["4"]["data"]["seen"] == "2024-03-10T10:00:00.789000+00:00"
    assert fast_records["4"]["data"]["local_time"] == "2024-03-10T10:00:00.100000+00:00"
    for record_id, record in fast_records.items():
        other = python_records[record_id]
        assert record["data"] == other["data"], record_id
        assert (record["cursor"], record["dedupe_key"]) == (other["cursor"], other["dedupe_key"])
    first = fast_records["1"]["data"]
    assert first["amount"] == "12345678901234567890.12345678901234567890"
    assert (
        first["seen"] == "2024-03-10T10:34:56.789012+00:00"
        and first["local_time"] == "2024-03-10T12:34:56.123456+00:00"
    )
    assert first["doc"] == {"big": 123456789012345678901234567890, "a": [1, None]}
    assert first["blob"] == {"$base64": "AP8Q"} and first["tier"] == "pro" and first["tags"] == ["x", "y,z"]
    assert fast_records["2"]["data"]["ratio"] is None and fast_records["2"]["data"]["amount"] == "NaN"
