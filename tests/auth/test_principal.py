"""auth.principal: what a verified key may do, and when a key is no longer usable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from authproxy.auth.principal import Principal, VerifyFailedError, check_usable
from authproxy.keys.record import KeyRecord

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def record(**fields) -> KeyRecord:
    values = {
        "id": "abcdefghijkl",
        "name": "alice",
        "created_at": NOW,
        "scopes": ("inference", "models:read"),
        "models": ("llama3.2",),
    }
    return KeyRecord(**{**values, **fields})


def test_a_principal_has_its_keys_rights() -> None:
    """Without a JWT the principal holds the key's scopes and its one model list."""
    principal = Principal.of(record(), "bearer")
    assert principal == Principal(
        "abcdefghijkl",
        "alice",
        "bearer",
        frozenset({"inference", "models:read"}),
        (("llama3.2",),),
    )


def test_a_jwt_only_narrows() -> None:
    """A JWT's scopes are intersected with the key's; its models add a second list."""
    principal = Principal.of(
        record(), "jwt", frozenset({"inference", "admin"}), ("llama*",)
    )
    assert principal.scopes == frozenset({"inference"})
    assert principal.model_rules == (("llama3.2",), ("llama*",))


def test_a_key_without_an_allow_list_has_no_model_rules() -> None:
    """No model list on the key or the JWT: no rule, so every model is allowed."""
    assert Principal.of(record(models=()), "basic").model_rules == ()


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"disabled": True}, "key_disabled"),
        ({"expires_at": NOW}, "key_expired"),
        ({"expires_at": NOW - timedelta(seconds=1)}, "key_expired"),
        ({"disabled": True, "expires_at": NOW}, "key_disabled"),
        ({"disabled": True, "revoked_at": NOW}, "key_revoked"),
    ],
    ids=["disabled", "expires-now", "expired", "both", "revoked"],
)
def test_unusable_keys_are_refused_with_a_reason(fields, reason: str) -> None:
    """A revoked, disabled or expired key fails with a reason and its id."""
    with pytest.raises(VerifyFailedError) as info:
        check_usable(record(**fields), NOW)
    assert (info.value.reason, info.value.key_id) == (reason, "abcdefghijkl")


def test_a_key_is_usable_until_it_expires() -> None:
    """Up to the instant before expires_at the key is usable."""
    check_usable(record(expires_at=NOW + timedelta(seconds=1)), NOW)
    check_usable(record(), NOW)
    assert record().usable_at(NOW) is True
