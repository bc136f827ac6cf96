"""API key shape, hashing and the Authorization header parsing the authorizer relies on."""

from __future__ import annotations

import pytest

from churnguard.auth import bearer_token, generate_api_key, hash_api_key, new_key_id


def test_generated_keys_have_the_documented_shape_and_are_unique() -> None:
    keys = {generate_api_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith("cg_") and len(key) == 46
        assert bearer_token(f"Bearer {key}") == key


def test_hash_is_stable_and_not_the_key() -> None:
    key = generate_api_key()
    assert hash_api_key(key) == hash_api_key(key)
    assert key not in hash_api_key(key)
    assert len(hash_api_key(key)) == 64


def test_key_ids_are_short_and_opaque() -> None:
    key_id = new_key_id()
    assert key_id.startswith("key_") and len(key_id) == 16


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwdw==", "Bearer cg_short", "Bearer sk_live_abc", "cg_" + "a" * 43],
)
def test_malformed_authorization_headers_yield_no_token(header: str | None) -> None:
    assert bearer_token(header) is None


def test_scheme_is_case_insensitive() -> None:
    key = generate_api_key()
    assert bearer_token(f"bearer {key}") == key
    assert bearer_token(f"  BEARER   {key}  ") == key
