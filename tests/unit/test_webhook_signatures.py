"""Signature schemes against signatures the providers' own code made, and against forgeries."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import pytest

from churnguard.inbound import signatures
from churnguard.inbound.signatures import SignatureError
from churnguard.providers.hubspot import webhook as hubspot_webhook
from churnguard.providers.sendgrid import webhook as sendgrid_webhook
from churnguard.providers.stripe import webhook as stripe_webhook
from tests.support.webhooks import (
    HUBSPOT_SECRET,
    STANDARD_SECRET,
    STRIPE_SECRET,
    SendGridKeys,
    hubspot_v3_headers,
    standard_headers,
    stripe_event,
    stripe_header,
)

NOW = time.time()
BODY = stripe_event("evt_1", "customer.updated", {"id": "cus_1", "object": "customer"})


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


# ---------------------------------------------------------------- Stripe


def test_stripe_accepts_the_sdks_signature_and_the_sdk_accepts_what_we_accept() -> None:
    import stripe

    header = stripe_header(BODY)
    stripe_webhook.verify_signature(BODY, header, [STRIPE_SECRET], time.time())
    assert stripe.Webhook.construct_event(BODY.decode(), header, STRIPE_SECRET).id == "evt_1"


def test_stripe_accepts_any_of_several_v1_signatures_and_either_secret_during_rotation() -> None:
    old = "whsec_old_" + "o" * 30
    header = stripe_header(BODY, old)
    extra = stripe_header(BODY, "whsec_unrelated_" + "u" * 24).split(",")[1]
    stripe_webhook.verify_signature(BODY, f"{header},{extra}", [STRIPE_SECRET, old], time.time())
    with pytest.raises(SignatureError):
        stripe_webhook.verify_signature(BODY, header, [STRIPE_SECRET], time.time())


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda body, header: (body + b" ", header), "no Stripe signature matches"),
        (lambda body, header: (body.replace(b"cus_1", b"cus_2"), header), "no Stripe signature matches"),
        (lambda body, header: (body, None), "missing"),
        (lambda body, header: (body, header.split(",")[0]), "no v1 signature"),
        (lambda body, header: (body, header.replace("t=", "t=x")), "malformed"),
        (lambda body, header: (body, "t=1," + "v1=" + "0" * 64), "outside the tolerance"),
        (lambda body, header: (body, header + "," + "x" * 5000), "missing"),
    ],
)
def test_stripe_refuses_tampering_replay_and_junk(mutate: object, reason: str) -> None:
    body, header = mutate(BODY, stripe_header(BODY))  # type: ignore[operator]
    with pytest.raises(SignatureError, match=reason):
        stripe_webhook.verify_signature(body, header, [STRIPE_SECRET], time.time())


@pytest.mark.parametrize("timestamp", ["²", "١٢٣", "12³", "+1", " ", "1" * 17, "0x10"])
def test_a_timestamp_of_non_ascii_digits_is_a_signature_error_not_a_crash(timestamp: str) -> None:
    """str.isdigit() accepts superscripts and other scripts' digits, which int() then refuses."""
    with pytest.raises(SignatureError, match="timestamp"):
        stripe_webhook.verify_signature(BODY, f"t={timestamp},v1=00", [STRIPE_SECRET], NOW)
    headers = {**standard_headers(BODY), "webhook-timestamp": timestamp}
    with pytest.raises(SignatureError, match="timestamp"):
        signatures.verify_standard_webhooks(BODY, lower(headers), [STANDARD_SECRET], NOW)
    hubspot = {
        **lower(hubspot_v3_headers(BODY, "https://hooks.example.com/x")),
        "x-hubspot-request-timestamp": timestamp,
    }
    with pytest.raises(SignatureError, match="timestamp"):
        hubspot_webhook.verify_signature(
            BODY,
            hubspot,
            method="POST",
            uri="https://hooks.example.com/x",
            secrets=[HUBSPOT_SECRET],
            now=NOW,
            allow_legacy=False,
        )


def test_stripe_refuses_a_replay_outside_the_tolerance_with_a_valid_signature() -> None:
    old = int(time.time()) - 301
    with pytest.raises(SignatureError, match="tolerance"):
        stripe_webhook.verify_signature(BODY, stripe_header(BODY, timestamp=old), [STRIPE_SECRET], time.time())
    stripe_webhook.verify_signature(BODY, stripe_header(BODY, timestamp=old + 2), [STRIPE_SECRET], time.time())


def test_stripe_refuses_the_wrong_secret() -> None:
    with pytest.raises(SignatureError):
        stripe_webhook.verify_signature(
            BODY, stripe_header(BODY, "whsec_wrong_" + "w" * 30), [STRIPE_SECRET], time.time()
        )


# ---------------------------------------------------------------- Standard Webhooks


def test_standard_webhooks_library_signatures_verify_and_ours_pass_the_library() -> None:
    from standardwebhooks.webhooks import Webhook

    headers = standard_headers(BODY)
    signatures.verify_standard_webhooks(BODY, headers, [STANDARD_SECRET], time.time())
    assert Webhook(STANDARD_SECRET).verify(BODY, headers)["id"] == "evt_1"


def test_standard_webhooks_accepts_several_signatures_for_rotation() -> None:
    other = "whsec_" + base64.b64encode(b"another-key-of-thirty-two-bytes!").decode()
    headers = standard_headers(BODY, other)
    headers["webhook-signature"] = f"v1,AAAA {headers['webhook-signature']}"
    signatures.verify_standard_webhooks(BODY, headers, [STANDARD_SECRET, other], time.time())
    with pytest.raises(SignatureError):
        signatures.verify_standard_webhooks(BODY, headers, [STANDARD_SECRET], time.time())


def test_standard_webhooks_refuses_stale_tampered_and_unsigned() -> None:
    stale = standard_headers(BODY, at=time.time() - 600)
    with pytest.raises(SignatureError, match="tolerance"):
        signatures.verify_standard_webhooks(BODY, stale, [STANDARD_SECRET], time.time())
    with pytest.raises(SignatureError):
        signatures.verify_standard_webhooks(BODY[:-1], standard_headers(BODY), [STANDARD_SECRET], time.time())
    with pytest.raises(SignatureError, match="missing"):
        signatures.verify_standard_webhooks(BODY, {}, [STANDARD_SECRET], time.time())
    swapped = standard_headers(BODY)
    swapped["webhook-id"] = "msg_other"
    with pytest.raises(SignatureError):
        signatures.verify_standard_webhooks(BODY, swapped, [STANDARD_SECRET], time.time())


# ---------------------------------------------------------------- HubSpot

URI = "https://hooks.example.com/webhooks/hubspot/org_a"
HUBSPOT_BODY = json.dumps([{"eventId": 1, "subscriptionType": "contact.creation", "objectId": 5}]).encode()


def test_hubspot_v3() -> None:
    headers = lower(hubspot_v3_headers(HUBSPOT_BODY, URI))
    hubspot_webhook.verify_signature(
        HUBSPOT_BODY, headers, method="POST", uri=URI, secrets=[HUBSPOT_SECRET], now=time.time(), allow_legacy=False
    )
    with pytest.raises(SignatureError):
        hubspot_webhook.verify_signature(
            HUBSPOT_BODY,
            headers,
            method="POST",
            uri=URI + "?x=1",
            secrets=[HUBSPOT_SECRET],
            now=time.time(),
            allow_legacy=False,
        )
    stale = lower(hubspot_v3_headers(HUBSPOT_BODY, URI, at_ms=int((time.time() - 301) * 1000)))
    with pytest.raises(SignatureError, match="tolerance"):
        hubspot_webhook.verify_signature(
            HUBSPOT_BODY, stale, method="POST", uri=URI, secrets=[HUBSPOT_SECRET], now=time.time(), allow_legacy=False
        )


def test_hubspot_legacy_signatures_only_when_the_endpoint_opts_in() -> None:
    v1 = hashlib.sha256(HUBSPOT_SECRET.encode() + HUBSPOT_BODY).hexdigest()
    v2 = hashlib.sha256(HUBSPOT_SECRET.encode() + b"POST" + URI.encode() + HUBSPOT_BODY).hexdigest()
    common = {"method": "POST", "uri": URI, "secrets": [HUBSPOT_SECRET], "now": time.time()}
    with pytest.raises(SignatureError, match="v3 signatures only"):
        hubspot_webhook.verify_signature(HUBSPOT_BODY, {"x-hubspot-signature": v1}, allow_legacy=False, **common)  # type: ignore[arg-type]
    hubspot_webhook.verify_signature(HUBSPOT_BODY, {"x-hubspot-signature": v1}, allow_legacy=True, **common)  # type: ignore[arg-type]
    hubspot_webhook.verify_signature(
        HUBSPOT_BODY,
        {"x-hubspot-signature": v2, "x-hubspot-signature-version": "v2"},
        allow_legacy=True,
        **common,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------- SendGrid


def test_sendgrid_ecdsa() -> None:
    keys = SendGridKeys.generate()
    body = json.dumps([{"sg_event_id": "e1", "event": "open", "email": "a@example.com"}]).encode()
    sendgrid_webhook.verify_signature(body, lower(keys.headers(body)), keys.public_key_b64, time.time())
    with pytest.raises(SignatureError):
        sendgrid_webhook.verify_signature(body + b" ", lower(keys.headers(body)), keys.public_key_b64, time.time())
    with pytest.raises(SignatureError):
        sendgrid_webhook.verify_signature(
            body, lower(keys.headers(body)), SendGridKeys.generate().public_key_b64, time.time()
        )
    with pytest.raises(SignatureError, match="tolerance"):
        sendgrid_webhook.verify_signature(
            body, lower(keys.headers(body, at=int(time.time()) - 3600)), keys.public_key_b64, time.time()
        )


def test_sendgrid_keys_must_be_p256() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    sendgrid_webhook.check_public_key(SendGridKeys.generate().public_key_b64)
    p384 = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    for bad in (base64.b64encode(p384).decode(), "not a key", "AAAA"):
        with pytest.raises(ValueError, match="P-256"):
            sendgrid_webhook.check_public_key(bad)


# ---------------------------------------------------------------- tokens and custom HMAC


def test_token_and_hmac_header() -> None:
    signatures.verify_token("secret-token-value", ["other", "secret-token-value"])
    for presented in (None, "", "secret-token-valuE"):
        with pytest.raises(SignatureError):
            signatures.verify_token(presented, ["secret-token-value"])
    import hmac as std_hmac

    digest = std_hmac.new(b"k" * 20, BODY, hashlib.sha256).digest()
    signatures.verify_hmac_header(BODY, "sha256=" + digest.hex(), ["k" * 20], encoding="hex", prefix="sha256=")
    signatures.verify_hmac_header(BODY, base64.b64encode(digest).decode(), ["k" * 20], encoding="base64")
    with pytest.raises(SignatureError):
        signatures.verify_hmac_header(BODY, digest.hex(), ["k" * 20], encoding="hex", prefix="sha256=")


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_hubspot_signatures_made_by_hubspots_own_client_verify(version: str) -> None:
    """Cross-check with hubspot-api-client's signature utility, not only our own helper."""
    from hubspot.utils.signature import Signature

    timestamp = str(int(time.time() * 1000))
    signature = Signature.get_signature(
        client_secret=HUBSPOT_SECRET,
        request_body=HUBSPOT_BODY.decode(),
        signature_version=version,
        http_uri=URI,
        http_method="POST",
        timestamp=timestamp,
    )
    if version == "v3":
        headers = {"x-hubspot-signature-v3": signature, "x-hubspot-request-timestamp": timestamp}
    else:
        headers = {"x-hubspot-signature": signature, "x-hubspot-signature-version": version}
    hubspot_webhook.verify_signature(
        HUBSPOT_BODY, headers, method="POST", uri=URI, secrets=[HUBSPOT_SECRET], now=time.time(), allow_legacy=True
    )
    ours = lower(hubspot_v3_headers(HUBSPOT_BODY, URI, at_ms=int(timestamp)))
    assert Signature.is_valid(
        signature=ours["x-hubspot-signature-v3"],
        client_secret=HUBSPOT_SECRET,
        request_body=HUBSPOT_BODY.decode(),
        http_uri=URI,
        http_method="POST",
        signature_version="v3",
        timestamp=timestamp,
    )
