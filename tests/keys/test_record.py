"""keys.record: names, scopes, model lists and limits a record may hold."""

from __future__ import annotations

import pytest

from authproxy.errors import KeyStoreError
from authproxy.keys.record import (
    fingerprint,
    validate_limits,
    validate_models,
    validate_scopes,
)
from authproxy.keys.store import (
    validate_name,
)


class TestTokens:
    @pytest.mark.parametrize(
        "name", ["", "-x", "a b", "a:b", "x" * 65, "ap_abcdefghijkl_" + "a" * 43]
    )
    def test_bad_names(self, name: str) -> None:
        """Names must be safe Basic usernames and never look like tokens."""
        with pytest.raises(KeyStoreError, match="invalid key name"):
            validate_name(name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, {}),
        ({}, {}),
        ({"requests_per_minute": 60, "concurrent": 0}, {"requests_per_minute": 60}),
        (
            {"tokens_per_day": None, "tokens_per_month": 10**15},
            {"tokens_per_month": 10**15},
        ),
    ],
    ids=["none", "empty", "zero-is-unlimited", "max"],
)
def test_limits_keep_what_is_set(value, expected) -> None:
    """0 and null mean unlimited; a record with no limit is falsy."""
    limits = validate_limits(value)
    assert limits.as_dict() == expected
    assert bool(limits) is bool(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1], "limits: expected a mapping"),
        ({"rpm": 1}, "limits.rpm: unknown limit"),
        ({"concurrent": True}, "limits.concurrent: expected a positive integer"),
        ({"concurrent": 1.0}, "limits.concurrent: expected a positive integer"),
        ({"concurrent": -1}, "limits.concurrent: expected a positive integer"),
        ({"concurrent": 10**15 + 1}, "at most 1000000000000000"),
    ],
    ids=["not-mapping", "unknown", "bool", "float", "negative", "huge"],
)
def test_bad_limits_name_the_limit(value, message: str) -> None:
    """Booleans, floats, negatives and huge numbers are not limits."""
    with pytest.raises(KeyStoreError, match=message):
        validate_limits(value)


def test_scopes_and_models_are_checked_and_deduplicated() -> None:
    """Known scopes and sane model patterns pass once each; anything else fails."""
    assert validate_scopes(["inference", "inference", "admin"]) == (
        "inference",
        "admin",
    )
    assert validate_models(["llama3.2", "qwen3:*", "llama3.2"]) == (
        "llama3.2",
        "qwen3:*",
    )
    with pytest.raises(KeyStoreError, match="unknown scope 'root'"):
        validate_scopes(["root"])
    with pytest.raises(KeyStoreError, match="expected a list of scope names"):
        validate_scopes("inference")
    with pytest.raises(KeyStoreError, match="expected a list of model names"):
        validate_models(["bad model"])


def test_a_fingerprint_is_32_bits_of_the_secrets_hash() -> None:
    """Eight hex digits of SHA-256, different for different secrets."""
    assert fingerprint("a") == "ca978112"  # sha256("a") starts ca978112ca1bbdca...
    assert fingerprint("b") != fingerprint("a")
