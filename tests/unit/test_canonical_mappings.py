"""Each provider's canonical mapping, pinned field by field: one object of every kind a provider
maps, and exactly the canonical data it becomes (with `raw` off). The parity tests prove the sync
and webhook paths agree; these say what they agree on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from churnguard.providers.hubspot import canonical as hubspot
from churnguard.providers.mailchimp import canonical as mailchimp
from churnguard.providers.salesforce import canonical as salesforce
from churnguard.providers.sendgrid import canonical as sendgrid
from churnguard.providers.stripe import canonical as stripe

CASES = [
    pytest.param(
        lambda: stripe.canonical(
            {
                "id": "cus_1",
                "object": "customer",
                "email": "ann@example.com",
                "name": "Ann",
                "phone": None,
                "currency": "eur",
                "balance": -1250,
                "delinquent": False,
                "created": 1704067200,
                "metadata": {"tier": "gold", "seats": 5},
            },
            raw=False,
        ),
        {
            "id": "cus_1",
            "source_ids": {"stripe": "cus_1"},
            "email": "ann@example.com",
            "name": "Ann",
            "currency": "EUR",
            "balance_minor": -1250,
            "delinquent": False,
            "created_at": "2024-01-01T00:00:00Z",
            "metadata": {"tier": "gold", "seats": "5"},
        },
        id="stripe-customer",
    ),
    pytest.param(
        lambda: stripe.canonical(
            {
                "id": "ch_1",
                "object": "charge",
                "customer": {"id": "cus_1", "object": "customer"},
                "invoice": "in_1",
                "status": "succeeded",
                "currency": "usd",
                "amount": 4999,
                "amount_refunded": 1000,
                "paid": True,
                "refunded": False,
                "failure_code": None,
                "created": 1704067200,
            },
            raw=False,
        ),
        {
            "id": "ch_1",
            "source_ids": {"stripe": "ch_1"},
            "customer_id": "cus_1",
            "invoice_id": "in_1",
            "status": "succeeded",
            "currency": "USD",
            "amount_minor": 4999,
            "amount_refunded_minor": 1000,
            "paid": True,
            "refunded": False,
            "created_at": "2024-01-01T00:00:00Z",
        },
        id="stripe-charge",
    ),
    pytest.param(
        lambda: stripe.canonical(
            {
                "id": "re_1",
                "object": "refund",
                "charge": "ch_1",
                "status": "succeeded",
                "currency": "jpy",
                "amount": 500,
                "reason": "requested_by_customer",
                "created": 1704067260,
            },
            raw=False,
        ),
        {
            "id": "re_1",
            "source_ids": {"stripe": "re_1"},
            "payment_id": "ch_1",
            "status": "succeeded",
            "currency": "JPY",
            "amount_minor": 500,
            "reason": "requested_by_customer",
            "created_at": "2024-01-01T00:01:00Z",
        },
        id="stripe-refund",
    ),
    pytest.param(
        lambda: stripe.canonical(
            {
                "id": "prod_1",
                "object": "product",
                "name": "Team",
                "description": None,
                "active": True,
                "created": 1704067200,
            },
            raw=False,
        ),
        {
            "id": "prod_1",
            "source_ids": {"stripe": "prod_1"},
            "name": "Team",
            "active": True,
            "created_at": "2024-01-01T00:00:00Z",
        },
        id="stripe-product",
    ),
    pytest.param(
        lambda: stripe.canonical(
            {
                "id": "price_1",
                "object": "price",
                "product": "prod_1",
                "active": True,
                "currency": "usd",
                "unit_amount": 12000,
                "recurring": {"interval": "year", "interval_count": 1, "usage_type": "licensed"},
                "billing_scheme": "per_unit",
            },
            raw=False,
        ),
        {
            "id": "price_1",
            "source_ids": {"stripe": "price_1"},
            "product_id": "prod_1",
            "active": True,
            "currency": "USD",
            "unit_amount_minor": 12000,
            "type": "recurring",
            "interval": "year",
            "interval_count": 1,
            "usage_type": "licensed",
            "billing_scheme": "per_unit",
        },
        id="stripe-price",
    ),
    pytest.param(
        lambda: stripe.canonical(
            {
                "id": "plan_1",
                "object": "plan",
                "product": "prod_1",
                "active": True,
                "currency": "usd",
                "amount": 1500,
                "interval": "month",
                "interval_count": 3,
                "usage_type": "licensed",
                "billing_scheme": "per_unit",
            },
            raw=False,
        ),
        {
            "id": "plan_1",
            "source_ids": {"stripe": "plan_1"},
            "product_id": "prod_1",
            "active": True,
            "currency": "USD",
            "unit_amount_minor": 1500,
            "type": "recurring",
            "interval": "month",
            "interval_count": 3,
            "usage_type": "licensed",
            "billing_scheme": "per_unit",
        },
        id="stripe-plan",
    ),
    pytest.param(
        lambda: stripe.canonical(
            {
                "id": "TENTH",
                "object": "coupon",
                "name": "Ten",
                "percent_off": 12.5,
                "amount_off": None,
                "currency": None,
                "duration": "repeating",
                "duration_in_months": 6,
                "valid": True,
            },
            raw=False,
        ),
        {
            "id": "TENTH",
            "source_ids": {"stripe": "TENTH"},
            "name": "Ten",
            "percent_off": "12.5",
            "duration": "repeating",
            "duration_in_months": 6,
            "valid": True,
        },
        id="stripe-coupon",
    ),
    pytest.param(
        lambda: hubspot.canonical(
            "contacts",
            {
                "id": "101",
                "email": "bo@example.com",
                "firstname": "Bo",
                "lastname": "Lee",
                "phone": "+1 555",
                "jobtitle": "CTO",
                "associatedcompanyid": None,
                "lifecyclestage": "customer",
                "hubspot_owner_id": "9",
                "createdAt": "2024-01-01T10:00:00.000Z",
                "updatedAt": "2024-02-01T10:00:00.000Z",
                "associations": {"companies": ["501", "502"]},
            },
            raw=False,
        ),
        {
            "id": "101",
            "source_ids": {"hubspot": "101"},
            "email": "bo@example.com",
            "first_name": "Bo",
            "last_name": "Lee",
            "name": "Bo Lee",
            "phone": "+1 555",
            "title": "CTO",
            "company_id": "501",
            "owner_id": "9",
            "lifecycle_stage": "customer",
            "created_at": "2024-01-01T10:00:00Z",
            "updated_at": "2024-02-01T10:00:00Z",
        },
        id="hubspot-contacts",
    ),
    pytest.param(
        lambda: hubspot.canonical(
            "companies",
            {
                "id": "501",
                "name": "Acme",
                "domain": "acme.example",
                "industry": "SOFTWARE",
                "numberofemployees": "42",
                "annualrevenue": "1250000.5",
                "createdate": "2024-01-01T10:00:00Z",
                "hs_lastmodifieddate": "1706781600000",
            },
            raw=False,
        ),
        {
            "id": "501",
            "source_ids": {"hubspot": "501"},
            "name": "Acme",
            "domain": "acme.example",
            "industry": "SOFTWARE",
            "employees": 42,
            "annual_revenue_minor": 125000050,
            "created_at": "2024-01-01T10:00:00Z",
            "updated_at": "2024-02-01T10:00:00Z",
        },
        id="hubspot-companies",
    ),
    pytest.param(
        lambda: hubspot.canonical(
            "deals",
            {
                "id": "701",
                "dealname": "Renewal",
                "dealstage": "closedwon",
                "amount": "1250.50",
                "deal_currency_code": "eur",
                "closedate": "2024-03-31T00:00:00Z",
                "hs_is_closed": "true",
                "hs_is_closed_won": True,
                "associations": {"companies": ["501"], "contacts": []},
            },
            raw=False,
        ),
        {
            "id": "701",
            "source_ids": {"hubspot": "701"},
            "name": "Renewal",
            "stage": "closedwon",
            "amount_minor": 125050,
            "currency": "EUR",
            "close_at": "2024-03-31T00:00:00Z",
            "is_closed": True,
            "is_won": True,
            "company_id": "501",
        },
        id="hubspot-deals",
    ),
    pytest.param(
        lambda: hubspot.canonical(
            "tickets",
            {
                "id": "801",
                "subject": "Login broken",
                "hs_pipeline_stage": "4",
                "hs_ticket_priority": "HIGH",
                "hs_is_closed": "false",
                "closed_date": None,
                "associations": {"companies": ["501"], "contacts": ["101"]},
            },
            raw=False,
        ),
        {
            "id": "801",
            "source_ids": {"hubspot": "801"},
            "subject": "Login broken",
            "status": "4",
            "priority": "HIGH",
            "is_closed": False,
            "company_id": "501",
            "contact_id": "101",
        },
        id="hubspot-tickets",
    ),
    pytest.param(
        lambda: hubspot.canonical(
            "owners",
            {"id": "9", "email": "owner@example.com", "firstName": "Oz", "lastName": "Ng", "archived": False},
            raw=False,
        ),
        {"id": "9", "source_ids": {"hubspot": "9"}, "email": "owner@example.com", "name": "Oz Ng", "active": True},
        id="hubspot-owners",
    ),
    pytest.param(
        lambda: salesforce.canonical(
            "Account",
            {
                "Id": "001A",
                "Name": "Acme",
                "Website": "https://www.acme.example/about",
                "Industry": "Software",
                "NumberOfEmployees": 42,
                "AnnualRevenue": 1250000.5,
                "CurrencyIsoCode": "EUR",
                "OwnerId": "005A",
                "CreatedDate": "2024-01-01T10:00:00.000+0000",
                "LastModifiedDate": "2024-02-01T10:00:00.000+0000",
            },
            raw=False,
        ),
        {
            "id": "001A",
            "source_ids": {"salesforce": "001A"},
            "name": "Acme",
            "domain": "acme.example",
            "industry": "Software",
            "employees": 42,
            "annual_revenue_minor": 125000050,
            "currency": "EUR",
            "owner_id": "005A",
            "created_at": "2024-01-01T10:00:00Z",
            "updated_at": "2024-02-01T10:00:00Z",
        },
        id="salesforce-Account",
    ),
    pytest.param(
        lambda: salesforce.canonical(
            "Contact",
            {
                "Id": "003A",
                "FirstName": "Bo",
                "LastName": "Lee",
                "Name": "Bo Lee",
                "Email": "bo@example.com",
                "Phone": None,
                "Title": "CTO",
                "AccountId": "001A",
            },
            raw=False,
        ),
        {
            "id": "003A",
            "source_ids": {"salesforce": "003A"},
            "email": "bo@example.com",
            "first_name": "Bo",
            "last_name": "Lee",
            "name": "Bo Lee",
            "title": "CTO",
            "company_id": "001A",
        },
        id="salesforce-Contact",
    ),
    pytest.param(
        lambda: salesforce.canonical(
            "Lead",
            {
                "Id": "00QA",
                "FirstName": None,
                "LastName": "Kim",
                "Email": "kim@example.com",
                "Company": "Kim Co",
                "Status": "Open - Not Contacted",
                "IsConverted": "false",
            },
            raw=False,
        ),
        {
            "id": "00QA",
            "source_ids": {"salesforce": "00QA"},
            "email": "kim@example.com",
            "last_name": "Kim",
            "name": "Kim",
            "company_name": "Kim Co",
            "status": "Open - Not Contacted",
            "converted": False,
        },
        id="salesforce-Lead",
    ),
    pytest.param(
        lambda: salesforce.canonical(
            "Opportunity",
            {
                "Id": "006A",
                "Name": "Renewal",
                "StageName": "Closed Won",
                "Amount": "1250.5",
                "CloseDate": "2024-03-31",
                "IsClosed": True,
                "IsWon": True,
                "AccountId": "001A",
            },
            raw=False,
        ),
        {
            "id": "006A",
            "source_ids": {"salesforce": "006A"},
            "name": "Renewal",
            "stage": "Closed Won",
            "amount_minor": 125050,
            "close_at": "2024-03-31T00:00:00Z",
            "is_closed": True,
            "is_won": True,
            "company_id": "001A",
        },
        id="salesforce-Opportunity",
    ),
    pytest.param(
        lambda: salesforce.canonical(
            "Case",
            {
                "Id": "500A",
                "Subject": "Login broken",
                "Status": "Closed",
                "Priority": "High",
                "IsClosed": True,
                "AccountId": "001A",
                "ContactId": "003A",
                "ClosedDate": "2024-02-02T08:30:00.000Z",
            },
            raw=False,
        ),
        {
            "id": "500A",
            "source_ids": {"salesforce": "500A"},
            "subject": "Login broken",
            "status": "Closed",
            "priority": "High",
            "is_closed": True,
            "company_id": "001A",
            "contact_id": "003A",
            "closed_at": "2024-02-02T08:30:00Z",
        },
        id="salesforce-Case",
    ),
    pytest.param(
        lambda: salesforce.canonical(
            "Task",
            {
                "Id": "00TA",
                "Subject": "Call",
                "Status": "Completed",
                "Priority": "Normal",
                "ActivityDate": "2024-02-03",
                "WhatId": "006A",
                "OwnerId": "005A",
            },
            raw=False,
        ),
        {
            "id": "00TA",
            "source_ids": {"salesforce": "00TA"},
            "subject": "Call",
            "status": "Completed",
            "priority": "Normal",
            "due_at": "2024-02-03T00:00:00Z",
            "owner_id": "005A",
            "related_id": "006A",
        },
        id="salesforce-Task",
    ),
    pytest.param(
        lambda: mailchimp.canonical(
            "members",
            {
                "id": "b8b0a4c2f6d1d3d4a7f9e3b0c1a2d3e4",
                "list_id": "L1",
                "email_address": "Ann@Example.com",
                "status": "subscribed",
                "merge_fields": {"FNAME": "Ann", "LNAME": ""},
            },
            raw=False,
        ),
        {
            "id": "L1/b8b0a4c2f6d1d3d4a7f9e3b0c1a2d3e4",
            "source_ids": {"mailchimp": "L1/b8b0a4c2f6d1d3d4a7f9e3b0c1a2d3e4"},
            "list_id": "L1",
            "member_id": "b8b0a4c2f6d1d3d4a7f9e3b0c1a2d3e4",
            "email": "Ann@Example.com",
            "status": "subscribed",
            "first_name": "Ann",
        },
        id="mailchimp-members",
    ),
    pytest.param(
        lambda: mailchimp.canonical(
            "email_activity",
            {
                "id": "act_1",
                "action": "click",
                "email": "ann@example.com",
                "occurred_at": "2024-01-05T09:00:00+00:00",
                "campaign_id": "C1",
                "list_id": "L1",
                "url": "https://example.com/x",
                "reason": None,
            },
            raw=False,
        ),
        {
            "id": "act_1",
            "source_ids": {"mailchimp": "act_1"},
            "type": "click",
            "email": "ann@example.com",
            "occurred_at": "2024-01-05T09:00:00Z",
            "campaign_id": "C1",
            "list_id": "L1",
            "url": "https://example.com/x",
        },
        id="mailchimp-email_activity",
    ),
    pytest.param(
        lambda: mailchimp.canonical(
            "campaigns",
            {
                "id": "C1",
                "status": "sent",
                "settings": {"title": "January", "subject_line": "News"},
                "recipients": {"list_id": "L1"},
                "send_time": "2024-01-05T08:00:00+00:00",
            },
            raw=False,
        ),
        {
            "id": "C1",
            "source_ids": {"mailchimp": "C1"},
            "name": "January",
            "subject": "News",
            "status": "sent",
            "list_id": "L1",
            "sent_at": "2024-01-05T08:00:00Z",
        },
        id="mailchimp-campaigns",
    ),
    pytest.param(
        lambda: sendgrid.canonical(
            "bounces",
            {"email": "Ann@Example.com", "created": 1704067200, "reason": "550 unknown user", "status": "5.1.1"},
            raw=False,
        ),
        {
            "id": "bounce:ann@example.com:1704067200",
            "source_ids": {"sendgrid": "bounce:ann@example.com:1704067200"},
            "type": "bounce",
            "email": "Ann@Example.com",
            "occurred_at": "2024-01-01T00:00:00Z",
            "reason": "550 unknown user",
            "status": "5.1.1",
        },
        id="sendgrid-bounces",
    ),
    pytest.param(
        lambda: sendgrid.webhook_event(
            "open",
            {"email": "ann@example.com", "timestamp": 1704067200, "sg_message_id": "m1", "url": None},
            "sg_evt_1",
        ).model_dump(mode="json", exclude_none=True),
        {
            "id": "sg_evt_1",
            "source_ids": {"sendgrid": "sg_evt_1"},
            "type": "open",
            "email": "ann@example.com",
            "occurred_at": "2024-01-01T00:00:00Z",
            "message_id": "m1",
        },
        id="sendgrid-webhook-open",
    ),
    pytest.param(
        lambda: sendgrid.webhook_event(
            "bounce",
            {
                "email": "Ann@Example.com",
                "timestamp": 1704067200,
                "type": "blocked",
                "reason": "blocked",
                "status": "5.0.0",
            },
            "sg_evt_2",
        ).model_dump(mode="json", exclude_none=True),
        {
            "id": "block:ann@example.com:1704067200",
            "source_ids": {"sendgrid": "block:ann@example.com:1704067200"},
            "type": "block",
            "email": "Ann@Example.com",
            "occurred_at": "2024-01-01T00:00:00Z",
            "reason": "blocked",
            "status": "5.0.0",
        },
        id="sendgrid-webhook-blocked-bounce",
    ),
]


@pytest.mark.parametrize(("mapped", "expected"), CASES)
def test_each_provider_object_maps_onto_its_canonical_entity_field_by_field(
    mapped: Callable[[], dict[str, Any]], expected: dict[str, Any]
) -> None:
    assert mapped() == expected


def test_raw_keeps_the_provider_object_as_it_came() -> None:
    obj = {"id": "prod_9", "object": "product", "name": "Solo", "active": False, "created": 1704067200}
    assert stripe.canonical(obj)["raw"] == obj
    assert "raw" not in stripe.canonical(obj, raw=False)


def test_objects_without_a_canonical_entity_are_refused_not_guessed() -> None:
    with pytest.raises(ValueError, match="no canonical entity"):
        hubspot.canonical("quotes", {"id": "1"})
    with pytest.raises(ValueError, match="no canonical entity"):
        salesforce.canonical("Invoice__c", {"Id": "a0X"})
    with pytest.raises(ValueError, match="no canonical entity"):
        mailchimp.canonical("lists", {"id": "L1"})
    with pytest.raises(ValueError, match="needs an email"):
        sendgrid.canonical("bounces", {"created": 1704067200})
